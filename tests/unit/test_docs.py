"""docs/ says what the code does: every cause, every lab fault, the JSON keys, the bundle fields,
and every relative link in README.md and docs/ leads to a file. A failure names what to update."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

from podpath.tracer import bundle, errors
from podpath.tracer.checks import CHECKS, Finding
from podpath.tracer.lab.faults import FAULTS, catalog
from podpath.tracer.trace.correlate import Verdict

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOC_FILES = ("architecture.md", "failure-classes.md", "json.md", "bundle.md", "where-things-go.md")


def _text(name: str) -> str:
    return (DOCS / name).read_text()


def _name(cause) -> str:
    return str(getattr(cause, "value", cause))  # a plain name, or a Cause enum member


def _cause_rows(text: str) -> set[str]:
    """The causes that have a row of their own in failure-classes.md's first table."""
    return set(re.findall(r"^\| `([a-z_]+)` \| (?!`)", text, re.M))


def test_every_cause_has_a_row_in_failure_classes():
    rows = _cause_rows(_text("failure-classes.md"))
    causes = {_name(c) for c, _ in CHECKS} | {_name(f.cause) for f in FAULTS.values()} | {"unknown"}
    missing = sorted(causes - rows)
    assert not missing, f"docs/failure-classes.md has no row for cause(s) {missing}: add one to its table"


def test_failure_classes_names_each_check_under_its_cause():
    rows = {m[0]: m[1] for m in re.findall(r"^\| `([a-z_]+)` \| (?!`)(.*)$", _text("failure-classes.md"), re.M)}
    for cause, fn in CHECKS:
        ref = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"
        assert ref in rows.get(_name(cause), ""), f"docs/failure-classes.md: the `{_name(cause)}` row should name {ref}"


def _faults_table():
    spec = importlib.util.spec_from_file_location("faults_table", DOCS / "faults_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lab_fault_table_is_generated_from_the_catalog():
    """The table is what `podpath lab fault list -o json` prints today (run through the CLI)."""
    ft = _faults_table()
    listed = ft.fault_list_json()
    assert [f["name"] for f in listed] == list(catalog())
    assert ft.current_block(_text("failure-classes.md")) == ft.block(listed), \
        "docs/failure-classes.md's lab fault table is stale: run `.venv/bin/python docs/faults_table.py`"


def test_fault_table_render_names_each_fault_and_its_cause():
    ft = _faults_table()
    one = {"name": "x-broken", "cause": "arp", "node": "node-b", "location": "host", "device": "cni0",
           "summary": "a | in the summary", "flow": {"src": "pod-a", "dst": "pod-b", "proto": "icmp",
                                                      "port": None, "size": None}}
    row = ft.render([one]).splitlines()[-1]
    assert row == "| `x-broken` | `arp` | node-b/host cni0 | pod-a → pod-b icmp | a \\| in the summary |"


def _links(md: Path) -> list[str]:
    """Relative link targets of a markdown file (no URLs, no pure #anchors), without #anchors."""
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        out.append(target.split("#")[0])
    return out


@pytest.mark.parametrize("md", ["README.md"] + [f"docs/{d}" for d in DOC_FILES])
def test_relative_links_resolve(md):
    path = ROOT / md
    broken = [t for t in _links(path) if not (path.parent / t).exists()]
    assert not broken, f"{md} links to missing files: {broken}"


def test_readme_links_every_doc_and_nothing_outside_the_repo():
    readme = (ROOT / "README.md").read_text()
    targets = {(ROOT / t).resolve() for t in _links(ROOT / "README.md")}
    for d in DOC_FILES:
        assert (DOCS / d).resolve() in targets, f"README.md should link docs/{d}"
    outside = [t for t in targets if ROOT not in t.parents and t != ROOT]
    assert not outside, f"README.md links outside the repository: {outside}"
    assert "shared/DESIGN.md" not in readme, "README.md points at ../shared/DESIGN.md, which a clone does not have"


def test_readme_runs_as_root_and_with_sudo():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^bash scripts/demo\.sh", readme, re.M), "README.md: the demo as root, without sudo"
    assert "sudo bash scripts/demo.sh" in readme, "README.md: the demo for a user with sudo"


def test_json_doc_names_real_fields():
    text = _text("json.md")
    verdict = {f.name for f in dataclasses.fields(Verdict)}
    named = set(re.findall(r"`verdict\.([a-z_]+)`", text))
    assert named, "docs/json.md names no verdict keys"
    assert not named - verdict, f"docs/json.md documents verdict keys the code lacks: {sorted(named - verdict)}"
    for f in dataclasses.fields(Finding):
        if not f.metadata.get("json", True):
            continue  # decided on by trace, never printed
        assert f"`{f.name}`" in text or f.name in _finding_keys(text), f"docs/json.md: findings lack `{f.name}`"
    for cls in (bundle.NodeInfo, bundle.PodInfo, bundle.ServiceInfo):  # lab status prints these whole
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in text, f"docs/json.md: lab status {cls.__name__} lacks `{f.name}`"


def _finding_keys(text: str) -> set[str]:
    m = re.search(r"`\{(cause, severity[^}]*)\}`", text)
    return {k.strip() for k in m.group(1).split(",")} if m else set()


def test_json_doc_exit_codes_match_the_error_classes():
    text = _text("json.md")
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.PodpathError) and c is not errors.PodpathError]
    assert classes
    for c in classes:
        assert re.search(rf"^\| {c.exit_code} \|.*`{c.__name__}`", text, re.M), \
            f"docs/json.md: exit code {c.exit_code} should name {c.__name__}"


BUNDLE_CLASSES = (bundle.Bundle, bundle.Host, bundle.Link, bundle.Vxlan, bundle.Addr, bundle.Route, bundle.Rule,
                  bundle.Neigh, bundle.Fdb, bundle.Listener, bundle.IpvsService, bundle.IpvsDest, bundle.Conntrack,
                  bundle.Attachment, bundle.Inventory, bundle.NodeInfo, bundle.PodInfo, bundle.ServiceInfo,
                  bundle.ServicePort)


@pytest.mark.parametrize("cls", BUNDLE_CLASSES, ids=lambda c: c.__name__)
def test_bundle_doc_has_every_field(cls):
    text = _text("bundle.md")
    missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in text]
    assert not missing, f"docs/bundle.md does not describe {cls.__name__} field(s) {missing}"


def test_bundle_doc_says_how_to_read_each_version():
    text = _text("bundle.md")
    versions = set(getattr(bundle, "READABLE_VERSIONS", ())) | {bundle.BUNDLE_VERSION}
    for v in sorted(versions):
        assert f"### Version {v}" in text, f"docs/bundle.md: say how to read version {v} bundles"
