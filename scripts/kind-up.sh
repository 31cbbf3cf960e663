#!/usr/bin/env bash
# Bring up the podpath kind lab: two kind nodes, flannel VXLAN, kube-proxy in KUBE_PROXY_MODE,
# the podpath agent DaemonSet (deploy/, image built from the wheel in dist/) and the lab's pods.
#
#   python -m build --wheel                 # dist/podpath-<version>-py3-none-any.whl (README, Labs)
#   KUBE_PROXY_MODE=ipvs scripts/kind-up.sh # iptables (default) | ipvs | nftables
#   scripts/kind-fault.sh node-b inject forward-drop
#   scripts/kind-down.sh
#
# Needs docker, kind, kubectl and curl on a laptop; takes minutes. Never booted on the machine this
# was written on (no container engine there): see README, "Labs", for what has been validated.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-podpath}
KUBE_PROXY_MODE=${KUBE_PROXY_MODE:-iptables}
FLANNEL_VERSION=${FLANNEL_VERSION:-v0.28.1}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
CNI_BIN=${CNI_BIN:-$PWD/kind/.cni-bin}

die() { echo "kind-up: $*" >&2; exit 1; }

case "$KUBE_PROXY_MODE" in
  iptables|ipvs|nftables) ;;
  *) die "KUBE_PROXY_MODE must be iptables, ipvs or nftables (got '$KUBE_PROXY_MODE')" ;;
esac

# render_config prints kind/cluster.yaml with its placeholders filled in (tests call it alone).
render_config() {
  sed -e "s|@KUBE_PROXY_MODE@|$KUBE_PROXY_MODE|" -e "s|@CNI_BIN@|$CNI_BIN|" kind/cluster.yaml
}
if [ "${1:-}" = "--render-config" ]; then
  render_config
  exit 0
fi

for tool in docker kind kubectl curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed; install it and retry"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
wheel=dist/podpath-$version-py3-none-any.whl
[ -f "$wheel" ] || die "$wheel is missing: build it with \`.venv/bin/python -m build --wheel\` (scripts/setup.sh first)"
[ -f deploy/30-agent-daemonset.yaml ] || die "deploy/ (the agent DaemonSet) is missing from this checkout"
image=ghcr.io/podpath/podpath:$version

# The CNI plugins kind's node image lacks (bridge; flannel's own plugin comes from its DaemonSet's
# init container), in a host directory every node mounts at /opt/cni/bin, like flannel's e2e.
if [ ! -x "$CNI_BIN/bridge" ]; then
  mkdir -p "$CNI_BIN"
  arch=$(uname -m); case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  curl -fsSL "https://github.com/containernetworking/plugins/releases/download/$CNI_PLUGINS_VERSION/cni-plugins-linux-$arch-$CNI_PLUGINS_VERSION.tgz" \
    | tar -xz -C "$CNI_BIN"
fi

config=$(mktemp)
trap 'rm -f "$config"' EXIT
render_config > "$config"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config "$config"
ctx=kind-$CLUSTER
k() { kubectl --context "$ctx" "$@"; }

# The lab's pods run on both nodes, node-a being the control plane.
k taint nodes --all node-role.kubernetes.io/control-plane- 2>/dev/null || true

k apply -f "https://github.com/flannel-io/flannel/releases/download/$FLANNEL_VERSION/kube-flannel.yml"
k -n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=180s
k wait --for=condition=Ready nodes --all --timeout=180s

docker build -t "$image" .
kind load docker-image --name "$CLUSTER" "$image"
k apply -f deploy/
k -n podpath rollout status daemonset/podpath-agent --timeout=180s

k apply -f labs/workloads.yaml
k wait --for=condition=Ready pod/pod-a pod/pod-a2 pod/pod-b --timeout=180s
echo "kind-up: cluster '$CLUSTER' is up (kube-proxy: $KUBE_PROXY_MODE); kubectl --context $ctx get pods -o wide"
echo "kind-up: break it with scripts/kind-fault.sh node-b inject forward-drop (podpath lab fault list)"
