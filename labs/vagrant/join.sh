#!/usr/bin/env bash
# node-b: join node-a with the bootstrap token the Vagrantfile gave both nodes. The providers may
# bring the nodes up in parallel (libvirt does), so it retries until node-a's API answers.
set -euo pipefail
: "${NODE_NAME:?}" "${NODE_IP:?}" "${CONTROL_PLANE_IP:?}" "${KUBEADM_TOKEN:?}"

if [ -f /etc/kubernetes/kubelet.conf ]; then
  echo "join: $NODE_NAME has joined already"
  exit 0
fi
cat > /root/join.yaml <<JOIN
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: $CONTROL_PLANE_IP:6443
    token: "$KUBEADM_TOKEN"
    # a lab on a host-only network: the CA's hash cannot reach this node before it joins
    unsafeSkipCAVerification: true
nodeRegistration:
  name: $NODE_NAME
  kubeletExtraArgs:
    - name: node-ip
      value: $NODE_IP
    - name: node-labels
      value: podpath.io/lab-node=$NODE_NAME
JOIN
for _ in $(seq 60); do
  if kubeadm join --config /root/join.yaml; then
    echo "join: $NODE_NAME joined $CONTROL_PLANE_IP"
    exit 0
  fi
  kubeadm reset -f >/dev/null 2>&1 || true
  sleep 10
done
echo "join: node-a's API server at $CONTROL_PLANE_IP:6443 did not take $NODE_NAME within 10 minutes" >&2
exit 1
