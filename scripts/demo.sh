#!/usr/bin/env bash
# The main job on the embedded default: build the netns lab, break it, follow a real packet with
# eBPF and let podpath say where and why it dies. Run as root on a Debian machine; everything it
# builds is removed at the end. FAULT=<name> picks another fault (podpath lab fault list).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PP=.venv/bin/podpath
LAB=${LAB:-demo}
FAULT=${FAULT:-forward-drop}

trap '$PP lab down --name "$LAB" >/dev/null 2>&1 || true' EXIT
$PP lab up --name "$LAB"
echo
echo "== healthy lab: podpath trace pod-a pod-b"
$PP trace pod-a pod-b --lab "$LAB" || true
echo
echo "== inject fault '$FAULT'"
$PP lab fault inject "$FAULT" --name "$LAB"
FLOW=$($PP lab fault list -o json | .venv/bin/python -c "
import json, sys
f = next(x for x in json.load(sys.stdin) if x['name'] == '$FAULT')['flow']
print(f['src'], f['dst'], *(['--proto', f['proto']] if f['proto'] else []),
      *(['--port', str(f['port'])] if f['port'] else []), *(['--size', str(f['size'])] if f['size'] else []))")
echo
echo "== podpath trace $FLOW"
set +e
# shellcheck disable=SC2086
$PP trace $FLOW --lab "$LAB"
rc=$?
echo
echo "== the same answer from snapshots alone: podpath diagnose $FLOW"
# shellcheck disable=SC2086
$PP diagnose $FLOW --lab "$LAB"
set -e
echo
echo "(trace exit code $rc: 0 only when the packet was delivered)"
