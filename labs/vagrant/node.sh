#!/usr/bin/env bash
# Every Vagrant lab node: what kubeadm needs (no swap, overlay and br_netfilter, forwarding),
# containerd with the systemd cgroup driver, kubelet/kubeadm/kubectl from the Kubernetes package
# repository (pkgs.k8s.io), the IPVS tools and modules, and podpath itself from the host's wheel
# (for `podpath lab fault inject NAME --here` and node-side diagnosis). Idempotent.
set -euo pipefail
: "${K8S_MINOR:?}" "${KUBE_PROXY_MODE:?}" "${PODPATH_WHEEL:?}"
export DEBIAN_FRONTEND=noninteractive

swapoff -a
sed -i '/\sswap\s/s/^/#/' /etc/fstab

modules=(overlay br_netfilter)
if [ "$KUBE_PROXY_MODE" = ipvs ]; then
  modules+=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack)
fi
printf '%s\n' "${modules[@]}" > /etc/modules-load.d/podpath-lab.conf
for m in "${modules[@]}"; do modprobe "$m"; done
cat > /etc/sysctl.d/90-podpath-lab.conf <<'SYSCTL'
net.bridge.bridge-nf-call-iptables = 1
net.ipv4.ip_forward = 1
SYSCTL
sysctl --system >/dev/null

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  containerd ca-certificates curl gpg conntrack ipset ipvsadm iptables iproute2 iputils-ping \
  python3 python3-venv libbpf1 buildah >/dev/null

# containerd: the systemd cgroup driver (kubelet's default) and kubeadm's pause image
mkdir -p /etc/containerd
containerd config default > /etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
systemctl restart containerd

if ! command -v kubeadm >/dev/null; then
  mkdir -p /etc/apt/keyrings
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/$K8S_MINOR/deb/Release.key" \
    | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/$K8S_MINOR/deb/ /" \
    > /etc/apt/sources.list.d/kubernetes.list
  apt-get update -qq
  apt-get install -y -qq kubelet kubeadm kubectl >/dev/null
  apt-mark hold kubelet kubeadm kubectl >/dev/null
fi
pause=$(kubeadm config images list 2>/dev/null | grep /pause: || true)
if [ -n "$pause" ]; then
  sed -i "s|sandbox_image = .*|sandbox_image = \"$pause\"|" /etc/containerd/config.toml
  systemctl restart containerd
fi
systemctl enable kubelet >/dev/null 2>&1

# podpath on the node, from the wheel built on the host (its dependencies from PyPI)
if [ ! -x /opt/podpath/bin/python ]; then
  python3 -m venv /opt/podpath
fi
/opt/podpath/bin/pip install -q --force-reinstall --no-deps "$PODPATH_WHEEL"
/opt/podpath/bin/pip install -q "$PODPATH_WHEEL"
ln -sf /opt/podpath/bin/podpath /usr/local/bin/podpath
echo "node: $(hostname) ready for kubeadm (kube-proxy mode $KUBE_PROXY_MODE); podpath $(podpath --version 2>/dev/null || echo installed)"
