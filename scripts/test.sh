#!/usr/bin/env bash
# Set up, then run the whole test suite (unit tests, and lab tests with real namespaces as root).
# Two phases, one exit status:
#   1. every test not marked `serial`, in PODPATH_TEST_WORKERS pytest-xdist workers (default: CPUs + 1,
#      at most 8: lab tests mostly wait on the kernel and on their namespaces' processes, so one worker
#      per core leaves the cores idle). `--dist loadfile` keeps a module, and its module-scoped lab,
#      in one worker. PODPATH_TEST_WORKERS=0 runs this phase in this process, as plain pytest did.
#   2. the tests marked `serial` (they assert machine-wide state, e.g. what `podpath cleanup` sweeps,
#      or that no other podpath runs), in this process, with nothing else of ours running.
# Arguments go to both phases (`scripts/test.sh -q`, `scripts/test.sh tests/lab/test_probes.py`);
# a `-m EXPR` of yours is combined with each phase's (`-m lab` runs lab tests in both), and `-n N`
# overrides the workers of the parallel phase.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cpus=$(nproc 2>/dev/null || echo 1)
workers=${PODPATH_TEST_WORKERS:-$(( cpus + 1 > 8 ? 8 : cpus + 1 ))}
if ! [[ $workers =~ ^[0-9]+$ ]]; then
  echo "test: PODPATH_TEST_WORKERS=$workers is not a number of workers; use e.g. 3, or 0 for none" >&2
  exit 2
fi

# a -m of the caller's, taken out of the arguments and and-ed with each phase's marker
args=() user_m=""
while [ $# -gt 0 ]; do
  case $1 in
    -m) [ $# -ge 2 ] || { echo "test: -m needs a marker expression" >&2; exit 2; }; user_m=$2; shift 2 ;;
    -m*) user_m=${1#-m}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
phase() { if [ -n "$user_m" ]; then echo "($user_m) and ($1)"; else echo "$1"; fi; }

set +e
.venv/bin/python -m pytest -n "$workers" --dist loadfile -m "$(phase "not serial")" ${args[@]+"${args[@]}"}
rc_parallel=$?
.venv/bin/python -m pytest -m "$(phase serial)" ${args[@]+"${args[@]}"} -n 0
rc_serial=$?
set -e

# 5 = this phase selected no tests: fine for one phase (a run of unit tests has no serial ones),
# a failure when neither phase ran anything.
if [ $rc_parallel -eq 5 ] && [ $rc_serial -eq 5 ]; then
  echo "test: pytest collected no tests — that is a failure, not a pass" >&2
  exit 1
fi
[ $rc_parallel -eq 5 ] && rc_parallel=0
[ $rc_serial -eq 5 ] && rc_serial=0
if [ $rc_parallel -ne 0 ]; then
  echo "test: the parallel phase failed (exit $rc_parallel)" >&2
  exit $rc_parallel
fi
if [ $rc_serial -ne 0 ]; then
  echo "test: the serial phase failed (exit $rc_serial)" >&2
fi
exit $rc_serial
