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


# Each command lives in its own module (of the same name) and exposes `register(app)`.
COMMANDS = ("lab", "snapshot", "diagnose", "trace", "dns", "doctor", "cleanup", "watch", "report", "agent")
_registered: set[str] = set()


@app.callback()
def _group() -> None:
    """Where and why does a packet die between two pods? Snapshots, a path model, and eBPF."""
    # (A callback keeps the app a group of commands when only the one that runs is registered.)


def _register(argv: list[str] | None = None) -> None:
    """Register the command argv names, only it: every command module imports its own libraries
    (doctor the BPF loader, diagnose the path model...), a tenth of a second a trace need not pay.
    Anything else (help, no command, a typo) registers them all, in their order."""
    import importlib

    first = next(iter(argv or []), None)
    wanted = [first] if first in COMMANDS else list(COMMANDS)
    for name in wanted:
        if name not in _registered:
            importlib.import_module(f"podpath.cli.{name}").register(app)
            _registered.add(name)


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
    _register(sys.argv[1:])
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


def run() -> None:
    """The `podpath` console script: main(), then leave at once (_leave). In-process callers (tests)
    call main(), which ends in SystemExit as usual."""
    _leave(_exit_code(main))


def _exit_code(fn) -> int:
    try:
        fn()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def _leave(code: int) -> None:
    """Exit with code once the command is done, without tearing the interpreter down: freeing the
    modules a trace imported (the API client's models, pydantic's schemas) takes 0.2-0.5 s after
    the verdict is printed. Everything an ordinary exit runs first still runs, in its order:
    non-daemon threads are joined (threading's shutdown), atexit handlers run, output is flushed.
    Commands close their probes, tables and child processes in `finally` blocks before this."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more to say
            code = code or 120
    os._exit(code)


def kubectl_main() -> None:
    """`kubectl podpath ...`: kubectl runs the `kubectl-podpath` console script with the arguments
    after the plugin name. kubectl's own global flags typed before it (`kubectl --context X podpath`)
    are not passed to plugins: give `--kubeconfig/--context` after `podpath`. Only the console script
    calls it: it leaves at once, as run() does."""
    _leave(_exit_code(lambda: main(prog_name="kubectl podpath")))
