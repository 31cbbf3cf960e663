#!/usr/bin/env bash
# Delete the podpath kind lab (fine if it is not there). The CNI plugin directory is kept for the
# next scripts/kind-up.sh; `rm -r kind/.cni-bin` removes it.
set -euo pipefail
CLUSTER=${KIND_CLUSTER:-podpath}
command -v kind >/dev/null || { echo "kind-down: kind is not installed" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER"
else
  echo "kind-down: no kind cluster '$CLUSTER'; nothing to delete"
fi
