"""labelSelector and fieldSelector as the API server parses them (the subset podpath and kubectl use).

Label: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, comma-separated (AND).
Field: `f=v`, `f==v`, `f!=v` on the fields the real server indexes per kind; any other field is a
400 with the real message (`field label not supported: ...`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

# Per kind, the field labels the real apiserver accepts that this stand-in implements.
FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {}
_COMMON = {"metadata.name": lambda o: o["metadata"]["name"],
           "metadata.namespace": lambda o: o["metadata"].get("namespace", "")}
for _kind in ("Namespace", "Node", "Service", "ConfigMap", "EndpointSlice", "DaemonSet"):
    FIELDS[_kind] = dict(_COMMON)
FIELDS["Pod"] = {**_COMMON,
                 "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
                 "status.podIP": lambda o: o["status"].get("podIP", ""),
                 "status.phase": lambda o: o["status"].get("phase", "")}


class SelectorError(ValueError):
    """A selector the real server would reject with 400 BadRequest."""


Matcher = Callable[[dict[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<vals>[^)]*)\)\s*$")
_CMP = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<val>[-A-Za-z0-9_.]*)\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def label_matcher(text: str | None) -> Matcher:
    if not text:
        return lambda o: True
    reqs: list[Matcher] = []
    for part in _split(text):
        if m := _SET.match(part):
            key, vals = m["key"], {v.strip() for v in m["vals"].split(",") if v.strip()}
            if m["op"] == "in":
                reqs.append(lambda o, k=key, vs=vals: _labels(o).get(k) in vs)
            else:
                reqs.append(lambda o, k=key, vs=vals: _labels(o).get(k) not in vs)
        elif m := _CMP.match(part):
            key, val = m["key"], m["val"]
            if m["op"] == "!=":
                reqs.append(lambda o, k=key, v=val: _labels(o).get(k) != v)
            else:
                reqs.append(lambda o, k=key, v=val: _labels(o).get(k) == v)
        elif m := _EXISTS.match(part):
            key = m["key"]
            if m["neg"]:
                reqs.append(lambda o, k=key: k not in _labels(o))
            else:
                reqs.append(lambda o, k=key: k in _labels(o))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
    return lambda o: all(r(o) for r in reqs)


def field_matcher(text: str | None, kind: str) -> Matcher:
    if not text:
        return lambda o: True
    fields = FIELDS.get(kind, _COMMON)
    reqs: list[Matcher] = []
    for part in _split(text):
        m = re.match(r"^\s*([^=!]+?)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, val = m.groups()
        get = fields.get(key)
        if get is None:
            raise SelectorError(f"field label not supported: {key}")
        if op == "!=":
            reqs.append(lambda o, g=get, v=val: g(o) != v)
        else:
            reqs.append(lambda o, g=get, v=val: g(o) == v)
    return lambda o: all(r(o) for r in reqs)


def single_equality(text: str | None, kind: str) -> tuple[str, Callable[[dict], str], str] | None:
    """(field, getter, value) when the selector is one `field=value` on a known field: served from an index."""
    if not text or "," in text:
        return None
    m = re.match(r"^\s*([^=!]+?)\s*==?\s*(.*?)\s*$", text)
    if not m or "!" in text or m[1] not in FIELDS.get(kind, _COMMON):
        return None
    return m[1], FIELDS.get(kind, _COMMON)[m[1]], m[2]


def single_label_equality(text: str | None) -> tuple[str, str] | None:
    """(label, value) when the selector is one `label=value` (kubernetes.io/service-name=web): from an index."""
    if not text or "," in text:
        return None
    m = _CMP.match(text)
    if not m or m["op"] == "!=":
        return None
    return m["key"], m["val"]


def labels_of(o: dict[str, Any]) -> dict[str, str]:
    return o["metadata"].get("labels") or {}


_labels = labels_of
