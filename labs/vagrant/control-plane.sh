#!/usr/bin/env bash
# node-a: kubeadm init (pod network 10.244.0.0/16, kube-proxy in KUBE_PROXY_MODE), flannel
# VXLAN bound to the private network, the podpath agent DaemonSet (deploy/) and the lab's pods.
set -euo pipefail
: "${NODE_NAME:?}" "${NODE_IP:?}" "${KUBE_PROXY_MODE:?}" "${FLANNEL_VERSION:?}" "${KUBEADM_TOKEN:?}"
export KUBECONFIG=/etc/kubernetes/admin.conf

if [ ! -f "$KUBECONFIG" ]; then
  cat > /root/kubeadm.yaml <<KUBEADM
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: "$KUBEADM_TOKEN"
    ttl: 24h0m0s
localAPIEndpoint:
  advertiseAddress: $NODE_IP
nodeRegistration:
  name: $NODE_NAME
  taints: []  # node-a runs the lab's pods too
  kubeletExtraArgs:
    - name: node-ip  # the private network, not the NAT interface every Vagrant box has first
      value: $NODE_IP
    - name: node-labels
      value: podpath.io/lab-node=$NODE_NAME
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: $KUBE_PROXY_MODE
KUBEADM
  kubeadm init --config /root/kubeadm.yaml
fi
mkdir -p /home/vagrant/.kube
cp /etc/kubernetes/admin.conf /home/vagrant/.kube/config
chown -R vagrant: /home/vagrant/.kube

# flannel must use the private network: without --iface it picks the default route's interface,
# the NAT one, whose address is the same 10.0.2.15 on every node (the classic Vagrant pitfall).
iface=$(ip -o -4 addr show | awk -v ip="$NODE_IP" 'index($4, ip "/") == 1 {print $2}')
[ -n "$iface" ] || { echo "control-plane: no interface holds $NODE_IP" >&2; exit 1; }
curl -fsSL "https://github.com/flannel-io/flannel/releases/download/$FLANNEL_VERSION/kube-flannel.yml" \
  | sed -E "s|^( *)- --kube-subnet-mgr$|&\n\1- --iface=$iface|" > /root/kube-flannel.yml
grep -q -- "--iface=$iface" /root/kube-flannel.yml || { echo "control-plane: could not add --iface to flannel's args" >&2; exit 1; }
kubectl apply -f /root/kube-flannel.yml
kubectl -n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=300s

kubectl apply -f /vagrant/deploy/
kubectl apply -f /vagrant/labs/workloads.yaml
kubectl wait --for=condition=Ready pod/pod-a pod/pod-a2 --timeout=300s
echo "control-plane: up (kube-proxy: $KUBE_PROXY_MODE); pod-b runs once node-b has joined"
