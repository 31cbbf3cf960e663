"""The `podpath` command: wires one file per command into one typer app.

Errors: library code raises podpath.tracer.errors.PodpathError subclasses; `main()` turns them,
and the argument parser's own complaints, into one line on stderr and the class's exit code, here
and nowhere else.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer >= 0.20 carries its own click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_exc

from podpath.tracer.errors import PodpathError, UsageError

app = typer.Typer(
    name="podpath",
    help="Where and why does a packet die between two pods? Snapshots, a path model, and eBPF.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each command lives in its own module and exposes `register(app)`.
    from podpath.cli import agent, cleanup, diagnose, dns, doctor, lab, report, snapshot, trace, watch

    for module in (lab, snapshot, diagnose, trace, dns, doctor, cleanup, watch, report, agent):
        module.register(app)


def _one_line(e: click_exc.UsageError) -> str:
    """click's usage error as podpath's one line: the problem, and where to read the fix."""
    msg = " ".join(e.format_message().split()).rstrip(".")
    cmd = e.ctx.command_path if e.ctx is not None else "podpath"
    return f"{msg}; see `{cmd} --help`"


def _terminated(signum, _frame) -> None:
    """SIGTERM runs the same cleanup as a normal exit or ^C: the exception unwinds every `finally`
    (probes closed, --nftrace tables deleted, child processes stopped)."""
    global _SIGNAL
    _SIGNAL = signum
    raise KeyboardInterrupt(f"signal {signum}")


_SIGNAL = 0


def main(prog_name: str = "podpath") -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    # A forked child (pyroute2's namespace helper) must die of SIGTERM as usual, not raise here.
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    _register()
    try:
        rc = app(prog_name=prog_name, standalone_mode=False)
    except PodpathError as e:
        text = " ".join(str(e).splitlines())  # one line, whatever a value held
        print(f"podpath: error: {text}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click_exc.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `podpath` alone, or a group alone: its help
            e.show()
            sys.exit(UsageError.exit_code)
        print(f"podpath: error: {_one_line(e)}", file=sys.stderr)
        sys.exit(UsageError.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("podpath: interrupted", file=sys.stderr)
        sys.exit(128 + (_SIGNAL or 2))
    if rc == 130 or _SIGNAL:  # typer turns the KeyboardInterrupt into Exit(130), after every `finally` ran
        print("podpath: interrupted" + (" (SIGTERM)" if _SIGNAL == 15 else ""), file=sys.stderr)
        sys.exit(128 + (_SIGNAL or 2))
    sys.exit(rc if isinstance(rc, int) else 0)


def kubectl_main() -> None:
    """`kubectl podpath ...`: kubectl runs the `kubectl-podpath` console script with the arguments
    after the plugin name. kubectl's own global flags typed before it (`kubectl --context X podpath`)
    are not passed to plugins: give `--kubeconfig/--context` after `podpath`."""
    main(prog_name="kubectl podpath")
