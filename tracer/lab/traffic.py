"""`podpath lab traffic`: steady background flows inside the lab, so a watch has something to see
and an intermittent fault something to break. Every packet leaves from a lab pod's namespace to a
lab address (a Service or a pod): nothing reaches the root namespace or the outside.

    with Traffic(lab, rate=200) as t:   # DNS queries pod-a -> 10.96.0.10, pings pod-a -> pod-b
        time.sleep(10)
    t.sent                               # {"dns": n, ...}
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

from ..netns import run_in
from .topology import DNS_SERVICE_IP, pod


@dataclass(frozen=True)
class Flow:
    src: str  # the pod it leaves from
    dst: str  # a lab address
    port: int  # UDP
    size: int = 0  # pad each datagram to this many payload bytes (0: just the DNS query)
    fresh: bool = False  # a new socket (a new source port, a new conntrack entry) for every datagram
    df: bool = False  # Don't Fragment: a path MTU drop is a drop, never a fragment
    # an A and an AAAA query at the same instant from one new socket, by two threads on two CPUs,
    # as glibc's resolver sends them: the two packets race to insert the same conntrack entry
    parallel: bool = False


FLOWS = {
    # each datagram is a DNS A query for kubernetes.default (padded when `size` says so)
    "dns": Flow("pod-a", DNS_SERVICE_IP, 53),
    # one resolver per query, as short-lived clients do: a new conntrack entry each time
    "dns-new": Flow("pod-a", DNS_SERVICE_IP, 53, fresh=True),
    # pod to pod across nodes (nobody listens: a NO_SOCKET drop each)
    "pod-udp": Flow("pod-a2", pod("pod-b").ip, 9),
    # large DF datagrams across the overlay (1428-byte packets: fit flannel's 1450 MTU, and no less)
    "pod-udp-large": Flow("pod-a2", pod("pod-b").ip, 9, size=1400, df=True),
    # the conntrack insert race behind 5-second DNS delays (each lookup is two datagrams)
    "dns-parallel": Flow("pod-a", DNS_SERVICE_IP, 53, parallel=True),
}

_IP_MTU_DISCOVER, _IP_PMTUDISC_PROBE = 10, 3  # <linux/in.h>


QTYPE_A, QTYPE_AAAA = 1, 28


def _query(qid: int, qtype: int = QTYPE_A) -> bytes:
    name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
    return struct.pack("!HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


class Traffic:
    def __init__(self, lab, *, rate: float = 100.0, flows=("dns",)) -> None:
        self.lab, self.rate, self.flows = lab, rate, tuple(flows)
        self.sent = dict.fromkeys(self.flows, 0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _socket(f: Flow) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        if f.df:  # DF always, whatever path MTU the kernel learnt (IP_PMTUDISC_PROBE)
            s.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_PROBE)
        return s

    def _run(self, name: str) -> None:
        # the whole loop runs in a thread inside the pod's namespace, so fresh sockets are opened there
        if FLOWS[name].parallel:
            self._parallel(name)
        else:
            run_in(self.lab.netns(FLOWS[name].src), lambda: self._loop(name))

    def _parallel(self, name: str) -> None:
        """Two threads in the pod, pinned to two CPUs: each round, one new socket; both send at a
        barrier (A from one, AAAA from the other); the first reads its answers a round later, and closes it."""
        f = FLOWS[name]
        cpus = sorted(os.sched_getaffinity(0))
        bar = threading.Barrier(2)
        box: dict = {}
        gap = 1.0 / self.rate

        def side(i: int) -> None:
            if len(cpus) > 1:
                os.sched_setaffinity(0, {cpus[i]})  # this thread only
            n, nxt = 0, time.monotonic()
            try:
                while True:
                    if i == 0:
                        box["stop"] = self._stop.is_set()
                        box["sock"] = None if box["stop"] else self._socket(f)
                    bar.wait(5)
                    if box["stop"]:
                        return
                    try:
                        box["sock"].sendto(_query(n, (QTYPE_A, QTYPE_AAAA)[i]), (f.dst, f.port))
                        box[i] = box.get(i, 0) + 1
                    except OSError:
                        pass
                    bar.wait(5)
                    if i == 0:
                        # the previous round's socket had a round's time for its answers: read, close
                        prev, box["prev"] = box.get("prev"), box["sock"]
                        if prev is not None:
                            try:
                                while True:
                                    prev.recv(2048)
                            except OSError:
                                pass
                            prev.close()
                        self.sent[name] = box.get(0, 0) + box.get(1, 0)
                        n += 1
                        nxt += gap
                        time.sleep(max(0.0, nxt - time.monotonic()))
            except threading.BrokenBarrierError:
                return
            finally:
                bar.abort()
                if i == 0 and box.get("prev") is not None:
                    box["prev"].close()
        other = threading.Thread(target=lambda: run_in(self.lab.netns(f.src), lambda: side(1)), daemon=True)
        other.start()
        run_in(self.lab.netns(f.src), lambda: side(0))
        other.join(5)

    def _loop(self, name: str) -> None:
        f = FLOWS[name]
        sock = self._socket(f)
        gap = 1.0 / self.rate
        nxt = time.monotonic()
        try:
            while not self._stop.is_set():
                q = _query(self.sent[name])
                try:
                    sock.sendto(q.ljust(f.size, b"\0"), (f.dst, f.port))
                    self.sent[name] += 1
                except OSError:
                    pass
                try:
                    while True:
                        sock.recv(2048)  # answers (and ICMP errors) are read and thrown away
                except OSError:
                    pass
                if f.fresh:
                    sock.close()
                    sock = self._socket(f)
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
