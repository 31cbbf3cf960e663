"""`podpath lab traffic`: steady background flows inside the lab, so a watch has something to see
and an intermittent fault something to break. Every packet leaves from a lab pod's namespace to a
lab address (a Service or a pod): nothing reaches the root namespace or the outside.

    with Traffic(lab, rate=200) as t:   # DNS queries pod-a -> 10.96.0.10, pings pod-a -> pod-b
        time.sleep(10)
    t.sent                               # {"dns": n, ...}
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from ..netns import run_in
from .topology import DNS_SERVICE_IP, pod

FLOWS = {
    # name: (from pod, to address, UDP port): a DNS A query for kubernetes.default each time
    "dns": ("pod-a", DNS_SERVICE_IP, 53),
    "pod-udp": ("pod-a2", pod("pod-b").ip, 9),  # pod to pod across nodes (nobody listens: a NO_SOCKET drop each)
}


def _query(qid: int) -> bytes:
    name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
    return struct.pack("!HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)


class Traffic:
    def __init__(self, lab, *, rate: float = 100.0, flows=("dns",)) -> None:
        self.lab, self.rate, self.flows = lab, rate, tuple(flows)
        self.sent = dict.fromkeys(self.flows, 0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, name: str) -> None:
        src, dst, port = FLOWS[name]
        sock = run_in(self.lab.netns(src), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.setblocking(False)
        gap = 1.0 / self.rate
        nxt = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    sock.sendto(_query(self.sent[name]), (dst, port))
                    self.sent[name] += 1
                except OSError:
                    pass
                try:
                    while True:
                        sock.recv(2048)  # answers (and ICMP errors) are read and thrown away
                except OSError:
                    pass
                nxt += gap
                time.sleep(max(0.0, nxt - time.monotonic()))
        finally:
            sock.close()

    def start(self) -> "Traffic":
        for f in self.flows:
            t = threading.Thread(target=self._run, args=(f,), daemon=True, name=f"lab-traffic-{f}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
