"""Build hook: a podpath wheel carries its compiled CO-RE objects, so a node needs no clang.

Everything else about the package is in pyproject.toml. Before the wheel's files are collected,
`make -C bpf` (re)builds the BPF objects from bpf/*.bpf.c; a missing object, or a make that fails
because it had to rebuild one, fails the build with one line saying what to install. Editable
installs (`pip install -e`, scripts/setup.sh) skip the hook: setup.sh runs `make -C bpf` itself,
after the Debian packages, and the objects stay in the checkout where podpath finds them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BPF = Path(__file__).resolve().parent / "bpf"
TEST_ONLY = ("filter_check",)  # tests/lab/test_filter_superset.py's probe of the filter, not podpath's
# Sources built twice (bpf/Makefile's AGENT_OBJS): `podpath agent`'s build, filter in .data
AGENT_VARIANTS = ("tc", "trace")


def shipped_objects() -> list[str]:
    """The object names the wheel must hold: one per bpf/*.bpf.c except the test-only ones, and
    the agent's build of the trace probes."""
    names = [src.name.removesuffix(".bpf.c") for src in BPF.glob("*.bpf.c")]
    return sorted([f"{n}.bpf.o" for n in names if n not in TEST_ONLY] +
                  [f"{n}.agent.bpf.o" for n in AGENT_VARIANTS if n in names])


def make_bpf() -> None:
    objects = shipped_objects()
    if not objects:
        raise SystemExit(f"podpath build: no BPF sources in {BPF}: build from a podpath checkout or sdist")
    if shutil.which("make") is None:
        missing = [o for o in objects if not (BPF / o).exists()]
        if missing:
            raise SystemExit(f"podpath build: {', '.join(missing)} not built and `make` is not installed: "
                             "install make, clang, llvm, bpftool (scripts/setup.sh) and build again")
        return  # prebuilt objects (an sdist made after `make -C bpf`): ship them as they are
    done = subprocess.run(["make", "-s", "-C", str(BPF), *objects], capture_output=True, text=True)
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())[-300:]
        raise SystemExit(f"podpath build: `make -C bpf` failed ({why}): the wheel must carry the compiled "
                         "BPF objects; install clang, llvm, bpftool and libbpf-dev (scripts/setup.sh) and build again")
    missing = [o for o in objects if not (BPF / o).exists()]
    if missing:
        raise SystemExit(f"podpath build: `make -C bpf` left {', '.join(missing)} unbuilt; see bpf/Makefile")


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        if not self.editable_mode:
            make_bpf()
            # build/lib is reused between builds: a module deleted from the checkout would ship again
            shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithBpf})
