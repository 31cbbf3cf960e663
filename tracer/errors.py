"""One exception hierarchy for everything a user can get wrong or the node can lack.

The CLI maps these to one-line messages and exit codes in one place (cli/main.py); library code
raises them with a message that names the problem and the fix.
"""


class PodpathError(Exception):
    """Base: a problem the user can act on. str(e) is the one-line message."""

    exit_code = 2


class UsageError(PodpathError):
    """Bad arguments: unknown pod, malformed target, unknown fault."""

    exit_code = 2


class BundleError(PodpathError):
    """A saved bundle or imported text that cannot be read."""

    exit_code = 3


class PermissionNeeded(PodpathError):
    """The operation needs root (CAP_NET_ADMIN / CAP_SYS_ADMIN)."""

    exit_code = 4


class NodeError(PodpathError):
    """The node lacks something: a tool, a namespace, a kernel feature."""

    exit_code = 5


class LabError(PodpathError):
    """The lab is not up, or a lab operation failed."""

    exit_code = 6


def require_root(what: str, instead: str = "") -> None:
    """Raise PermissionNeeded (one line: what needs root, and what to do instead) unless root."""
    import os

    if os.geteuid() != 0:
        raise PermissionNeeded(f"{what} needs root: run it as root (or with sudo)" + (f"; {instead}" if instead else ""))


class ApiError(PodpathError):
    """The Kubernetes API server refused (401, 403) or failed a request podpath needs."""

    exit_code = 7
