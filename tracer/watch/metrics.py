"""`--prometheus ADDR`: podpath_drops_total{node,reason,device,namespace} for scraping."""

from __future__ import annotations

from ..errors import UsageError


class Prometheus:
    def __init__(self, addr: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, start_http_server

        host, _, port = addr.rpartition(":")
        if not port.isdigit():
            raise UsageError(f"--prometheus {addr!r} is not HOST:PORT; give e.g. --prometheus 127.0.0.1:9465")
        self.registry = CollectorRegistry()
        self.drops = Counter("podpath_drops", "Packets freed by the kernel as drops (kfree_skb), counted exactly",
                             ["node", "reason", "device", "namespace"], registry=self.registry)
        try:
            self.server, self.thread = start_http_server(int(port), host or "0.0.0.0", registry=self.registry)
        except OSError as e:
            raise UsageError(f"cannot listen on {addr} for --prometheus: {e.strerror}; pick a free port") from None

    def add(self, cols: dict, n: int) -> None:
        self.drops.labels(cols["node_name"], cols["drop_reason_desc"], cols["interface"] or "",
                          cols["namespace"] or cols["pod_name"] or "").inc(n)

    def close(self) -> None:
        self.server.shutdown()
