#!/usr/bin/env bash
# Set up podpath on a Debian machine, as root: system packages, a virtualenv with the Python
# dependencies, and the BPF objects. Idempotent and quiet when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 iptables nftables conntrack dnsmasq-base iputils-ping   # the lab and the snapshots
  clang llvm libbpf-dev libbpf1 bpftool                            # building and loading BPF (tracer)
  iperf3 python3 python3-venv python3-pip                          # benchmarks, the virtualenv
  chromium                                                         # renders `podpath report --html` in its test
  vagrant shellcheck                                               # the Vagrant and kind labs' files, checked (not booted)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and builds network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# kubectl talks to the lab's stand-in API server in tests; Debian ships it as kubernetes-client.
# A kubectl already on PATH (from upstream, snap, ...) is kept.
if ! command -v kubectl >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null | grep -q "ok installed" || missing+=(kubernetes-client)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.podpath-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || echo "setup: pip could not upgrade itself; going on" >&2
  if ! .venv/bin/pip install -q -e '.[test]' > .venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "setup: pip install -e '.[test]' failed (above)" >&2
    exit 1
  fi
  # every dependency must import, or the install did not work: fail here, not in the first test
  .venv/bin/python -c 'import podpath.cli.main, pyroute2, typer, rich, kubernetes, pandas, pyarrow, matplotlib, dns
import aiohttp, cryptography, prometheus_client, pytest, hypothesis, kubernetes_validate, xdist'

  echo "$want" > "$stamp"
fi

if [ -f bpf/Makefile ]; then
  make -s -C bpf
fi
if [ -f tests/bpf/Makefile ]; then  # foreign programs the lab tests attach (tests/lab/test_programs.py)
  make -s -C tests/bpf
fi
