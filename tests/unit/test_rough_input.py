"""Rough input never ends in a traceback: random option values and random bundle mutations give
one line and an exit code from the documented table (README: 0–7)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BUNDLE = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "lab-healthy.json"
EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7}


def run_cli(*argv: str) -> tuple[int, str]:
    """podpath's main() in this process: (exit code, stderr)."""
    from podpath.cli.main import main

    err = io.StringIO()
    old = sys.argv
    sys.argv = ["podpath", *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert code in EXIT_CODES, (code, err)
    assert "Traceback" not in err, err
    if code >= 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("podpath: error: "), err


option_values = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                          st.text(max_size=12), st.sampled_from(["nan", "inf", "-inf", "0", "65535", "65536", "", "1e309"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(["--port", "--sport", "--size", "--proto"]), value=option_values)
def test_random_option_values_on_diagnose(option, value):
    code, err = run_cli("diagnose", "pod-a", "pod-b", "--bundle", str(BUNDLE), option, value)
    assert_clean(code, err)


@pytest.mark.parametrize("argv", [
    ["trace", "pod-a", "pod-b", "--count", "70000"], ["trace", "pod-a", "pod-b", "--port", "70000", "-p", "tcp"],
    ["trace", "pod-a", "pod-b", "--sport", "-1", "-p", "udp", "--port", "53"], ["trace", "pod-a", "pod-b", "--timeout", "nan"],
    ["trace", "pod-a", "pod-b", "--timeout", "inf"], ["dns", "pod-a", "a" * 64], ["dns", "pod-a", "a..b"],
    ["diagnose", "pod-a", "pod-b", "--port", "70000", "--bundle", str(BUNDLE)], ["bogus"],
])
def test_out_of_range_options_are_one_line(argv):
    code, err = run_cli(*argv)
    assert code == 2 and err.startswith("podpath: error: ") and err.count("\n") == 1, err


def leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, path + (i,))
    else:
        yield path


json_values = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                        st.text(max_size=20), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                                    st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_bundle_mutations_never_traceback(data, tmp_path_factory):
    from podpath.tracer.bundle import Bundle
    from podpath.tracer.diagnose import diagnose
    from podpath.tracer.errors import PodpathError

    raw = json.loads(BUNDLE.read_text())
    paths = list(leaves(raw["hosts"], ("hosts",)))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = raw
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = data.draw(json_values)
    try:
        bundle = Bundle.from_json(json.dumps(raw))
        diagnose(bundle, "pod-a", "pod-b")
        diagnose(bundle)
    except PodpathError:
        pass  # one line, mapped to an exit code


@pytest.mark.parametrize("key", ["flags", "state"])
def test_a_null_inside_a_list_of_text_is_named_by_its_path(key):
    """Found by the mutation test above: a null FDB flag or neighbour state used to load and then
    fail deep in the model (join of None); it is refused on load, naming where it is."""
    from podpath.tracer.bundle import Bundle
    from podpath.tracer.errors import BundleError

    raw = json.loads(BUNDLE.read_text())
    table = "fdb" if key == "flags" else "neigh"
    host = next(i for i, h in enumerate(raw["hosts"]) if h.get(table))
    raw["hosts"][host][table][0][key] = [None]
    with pytest.raises(BundleError, match=rf"\$\.hosts\[{host}\]\.{table}\[0\]\.{key}\[0\] should not be null"):
        Bundle.from_json(json.dumps(raw))
