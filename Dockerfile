# podpath's image (the agent DaemonSet in deploy/, or a one-off `podpath` on a node): Debian slim,
# libbpf1, and the podpath wheel, which carries the compiled CO-RE BPF objects. No compiler, no
# kernel headers: the objects relocate against the node's own BTF (/sys/kernel/btf) at load time.
# Build the wheel first, where clang is (scripts/setup.sh installs it), then the image:
#   make -C bpf && .venv/bin/python -m build --wheel
#   docker build -t ghcr.io/podpath/podpath:0.1.0 .
FROM debian:bookworm-slim

ARG PODPATH_VERSION=0.1.0

# libbpf1 loads the objects; iptables (iptables-nft-save, iptables-legacy-save) and nftables (nft)
# read the node's rules; iproute2 runs the fix commands podpath prints. Debian's stable security
# updates are wanted, so versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libbpf1 iptables nftables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY dist/podpath-${PODPATH_VERSION}-py3-none-any.whl /tmp/
RUN python3 -m venv /opt/podpath \
 && /opt/podpath/bin/pip install --no-cache-dir /tmp/podpath-${PODPATH_VERSION}-py3-none-any.whl \
 && rm /tmp/podpath-${PODPATH_VERSION}-py3-none-any.whl

# /tmp is the one writable place in the DaemonSet (readOnlyRootFilesystem): matplotlib's cache goes there.
ENV PATH=/opt/podpath/bin:$PATH \
    MPLCONFIGDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1

# root: loading BPF, setns() into pod namespaces and raw sockets need capabilities, and Kubernetes
# grants added capabilities to uid 0 only (no ambient capabilities). docs/deploy.md has the list.
# hadolint ignore=DL3002
USER 0
CMD ["podpath", "agent", "--port", "4244"]
