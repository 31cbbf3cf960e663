#!/usr/bin/env bash
# Set up, then run the whole test suite (unit tests, and lab tests with real namespaces as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test: pytest collected no tests — that is a failure, not a pass" >&2
  exit 1
fi
exit $rc
