"""A stand-in for `podpath agent` that speaks no protocol: the lab transport tests run it in place of
the real agent, with the contract's command line (`agent --port P --node-name N --kubeconfig F
--pid-file F`). It binds 127.0.0.1:P only, writes its pid once listening, and on each connection
says "<node name>\\n" (so a test knows which node's namespace it reached), then echoes every byte.
Each accepted connection is logged, and so is its end: tests read the log to see that the relay
closed its side.
"""

import argparse
import os
import signal
import socket
import sys
import threading


def serve(conn: socket.socket, node: str) -> None:
    with conn:
        conn.sendall(f"{node}\n".encode())
        while data := conn.recv(65536):
            conn.sendall(data)
    print("closed", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["agent"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--node-name", required=True)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--pid-file", required=True)
    args = ap.parse_args()
    if not os.path.exists(args.kubeconfig):
        sys.exit(f"no kubeconfig at {args.kubeconfig}")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv = socket.create_server(("127.0.0.1", args.port), reuse_port=False)
    tmp = args.pid_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pid_file)
    print(f"listening on 127.0.0.1:{args.port} as {args.node_name}", flush=True)
    while True:
        conn, _ = srv.accept()
        print("accepted", flush=True)
        threading.Thread(target=serve, args=(conn, args.node_name), daemon=True).start()


if __name__ == "__main__":
    main()
