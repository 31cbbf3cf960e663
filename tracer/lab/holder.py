"""A pod's holder process, like a pause container: `holder.py NAME PIDFILE`.

Started as `ip netns exec cni-<uuid> python -I -S holder.py ...`, so it keeps the mount namespace
in which /etc/netns/cni-<uuid>/{hostname,resolv.conf} cover /etc: /proc/<pid>/root/etc/hostname
reads the pod name, as kubelet's does. Writes PIDFILE, then sleeps until SIGTERM. Standard library
only.
"""

import os
import signal
import sys


def main() -> None:
    pidfile = sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.replace(pidfile + ".tmp", pidfile)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
