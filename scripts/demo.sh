#!/usr/bin/env bash
# The main job on the embedded default: build the netns lab, break it, and let podpath say where
# and why. Run as root on a Debian machine; everything it builds is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PP=.venv/bin/podpath
LAB=${LAB:-demo}
FAULT=${FAULT:-fdb-wrong-dst}

trap '$PP lab down --name "$LAB" >/dev/null 2>&1 || true' EXIT
$PP lab up --name "$LAB"
echo
echo "== healthy lab: pod-a → pod-b"
$PP diagnose pod-a pod-b --lab "$LAB" || true
echo
echo "== inject fault '$FAULT'"
$PP lab fault inject "$FAULT" --name "$LAB"
echo
echo "== podpath diagnose pod-a pod-b"
set +e
$PP diagnose pod-a pod-b --lab "$LAB"
rc=$?
set -e
echo
echo "(diagnose exit code $rc: non-zero means it found errors)"
