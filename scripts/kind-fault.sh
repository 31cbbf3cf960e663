#!/usr/bin/env bash
# Inject or clear a catalog fault on one kind node, the way `--here` runs on any lab node:
# podpath runs on the host inside the node container's network namespace (nsenter -n), finds that
# node's flannel state and pods itself, and enters pods with nsenter. Root on the host, podpath
# installed there (the wheel); faults never go through the agent.
#
#   scripts/kind-fault.sh node-b inject forward-drop
#   scripts/kind-fault.sh node-b clear forward-drop
#   scripts/kind-fault.sh node-a inject rp-filter-strict --param pod-a=10.244.0.5 --dry-run
set -euo pipefail

CLUSTER=${KIND_CLUSTER:-podpath}
PODPATH=${PODPATH:-podpath}
if [ $# -lt 3 ]; then
  echo "usage: $0 node-a|node-b inject|clear FAULT [--param ROLE=VALUE ...] [--dry-run]" >&2
  exit 2
fi
role=$1 action=$2 fault=$3
shift 3
case "$role" in node-a|node-b) ;; *) echo "kind-fault: the node is node-a or node-b (got '$role')" >&2; exit 2 ;; esac
case "$action" in inject|clear) ;; *) echo "kind-fault: the action is inject or clear (got '$action')" >&2; exit 2 ;; esac

node=$(kubectl --context "kind-$CLUSTER" get nodes -l "podpath.io/lab-node=$role" -o jsonpath='{.items[0].metadata.name}')
[ -n "$node" ] || { echo "kind-fault: no node labelled podpath.io/lab-node=$role; is the kind lab up?" >&2; exit 1; }
pid=$(docker inspect -f '{{.State.Pid}}' "$node")
exec nsenter -t "$pid" -n "$PODPATH" lab fault "$action" "$fault" --here "$@"
