"""The lab's web server (run as a script inside pod-a2 and pod-b): `webserver.py IP PORT NAME PIDFILE`.

Answers every request with `HTTP/1.0 200 OK` and the pod's name as the body, so a client can tell
which endpoint a ClusterIP connection reached. Writes PIDFILE once listening. Standard library only
(it runs with `python -I -S`).
"""

import os
import socket
import sys
import threading


def serve(c: socket.socket, reply: bytes) -> None:
    try:
        c.settimeout(0.5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        c.sendall(reply)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        c.close()


def main() -> None:
    ip, port, name, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(128)
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.replace(pidfile + ".tmp", pidfile)
    body = (name + "\n").encode()
    reply = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
             % len(body)) + body
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            continue
        threading.Thread(target=serve, args=(c, reply), daemon=True).start()


if __name__ == "__main__":
    main()
