"""A big node's iptables rules through its agent, a chain at a time (both ends).

At 10,000 Services a node's nat table holds 30,000 chains and 110,000 rules; one packet's walk
reads a dozen chains. In process, a live snapshot keeps such a table as a LiveBackend
(netfilter/live.py) that reads a chain when the walk first needs it. Through agents the walk runs
in the coordinator, so a coordinator that asks for it (`snapshot` with "rules": "per-chain") gets
that backend's chain names and the texts read with the snapshot (`live_rules` beside the bundle,
instead of the whole save), and reads any other chain with a `chains` request, which the agent
answers from the same backend, in the same namespace, with the same check that the rules did not
change under the walk (nf_tables generation). Whole, the save would cost each trace 0.7 s of the
agent's CPU and the coordinator 0.4 s of parsing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..bundle import Bundle
from ..errors import BundleError
from ..netfilter.live import LiveBackend, LiveSaves

PER_CHAIN = "per-chain"  # the snapshot request's "rules" value


# --- the agent's end ------------------------------------------------------------------------------


def wire_bundle(bundle: Bundle) -> tuple[Bundle, dict[str, dict[str, dict]], dict[tuple[str, str], LiveBackend]]:
    """(the bundle as sent: every rule already read, none read for it; `live_rules` for the
    answer: {host: {backend: {"tables", "preread"}}}; the live backends by (host, backend), for
    the connection's `chains` requests)."""
    hosts, live_rules, backends = [], {}, {}
    for h in bundle.hosts:
        saves = h.iptables_save
        if isinstance(saves, LiveSaves) and saves.live:
            live_rules[h.name] = {b: {"tables": be.tables, "preread": be.preread} for b, be in saves.live.items()}
            backends.update({(h.name, b): be for b, be in saves.live.items()})
            h = dataclasses.replace(h, iptables_save={k: dict.__getitem__(saves, k) for k in dict.keys(saves)})
        hosts.append(h)
    return dataclasses.replace(bundle, hosts=hosts), live_rules, backends


def serve_chains(backend: LiveBackend, table: str | None, chains: list[str] | None) -> str:
    """A `chains` request's text: these chains of `table` (None: the whole table), or the
    backend's whole save (table None). The chains read are kept as read, so a later read that
    meets a newer generation compares them too."""
    if table is None:
        return backend.read_all()
    text = backend.read_chains(table, chains)
    t = backend.ruleset().tables.get(table)
    if t is not None:
        t.chains.add_text(text)
    return text


def check_chains_request(msg: dict) -> tuple[str, str, str | None, list[str] | None]:
    """(host, backend, table, chains) of a `chains` request; ValueError naming a bad field."""
    host, backend, table, chains = msg.get("host"), msg.get("backend", "nft"), msg.get("table"), msg.get("chains")
    if not isinstance(host, str) or not isinstance(backend, str):
        raise ValueError("\"host\" and \"backend\" must be strings")
    if table is not None and not isinstance(table, str):
        raise ValueError("\"table\" must be a string or null (the whole save)")
    if chains is not None and not (isinstance(chains, list) and all(isinstance(c, str) for c in chains)):
        raise ValueError("\"chains\" must be a list of chain names or null (the whole table)")
    return host, backend, table, chains


# --- the coordinator's end ------------------------------------------------------------------------


def attach_remote_rules(bundle: Bundle, live_rules: Any, client, node: str) -> None:
    """Make each host named in `live_rules` read its big tables through `client` (the AgentClient
    of `node`; None: lost since, and every read says so), a chain at a time, as a live snapshot in
    process does."""
    if not isinstance(live_rules, dict):
        return
    for host_name, backends in live_rules.items():
        host = bundle.host(host_name)
        if host is None or not isinstance(backends, dict):
            continue
        live = {b: _remote_backend(client, node, host_name, b, spec) for b, spec in backends.items()
                if isinstance(spec, dict)}
        host.iptables_save = LiveSaves(host.iptables_save, live=live)


def _remote_backend(client, node: str, host: str, backend: str, spec: dict) -> LiveBackend:
    from .protocol import AgentError

    def ask(table: str | None, chains: list[str] | None, timeout: float) -> str:
        if client is None:
            raise BundleError(f"reading the rules of {host}: the agent on {node} was lost after its snapshot")
        try:
            m = client.call({"type": "chains", "host": host, "backend": backend, "table": table, "chains": chains},
                            timeout=timeout)
        except AgentError as e:
            raise BundleError(f"reading the rules of {host} through its agent: {e}") from None
        text = m.get("text")
        if not isinstance(text, str):
            raise BundleError(f"reading the rules of {host} through its agent: the answer has no text")
        return text

    tables = {t: list(c) for t, c in (spec.get("tables") or {}).items()}
    preread = {t: list(x) for t, x in (spec.get("preread") or {}).items()}
    # a chain: 5-90 ms; a whole table or save of a big node: seconds on a busy one
    return LiveBackend(tables, preread, lambda table, chains: ask(table, chains, 30.0 if chains else 120.0),
                       lambda: ask(None, None, 120.0), f"iptables-save (nf_tables) through the agent on {node}")
