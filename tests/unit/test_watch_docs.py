"""docs/forensics.md documents every field `podpath watch` writes."""

from pathlib import Path

from podpath.tracer.watch.schema import SCHEMAS

DOC = Path(__file__).resolve().parents[2] / "docs" / "forensics.md"


def test_every_field_has_a_row():
    text = DOC.read_text()
    missing = sorted({f.name for s in SCHEMAS.values() for f in s} - {l.split("`")[1] for l in text.splitlines()
                                                                      if l.startswith("| `")})
    assert not missing, f"docs/forensics.md has no row for field(s) {missing}: add them to its Schema tables"
