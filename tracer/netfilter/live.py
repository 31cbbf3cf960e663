"""iptables rules of a live namespace, read a chain at a time when a packet's walk first needs them.

At 10,000 Services a node's nat table holds 30,000 chains and 80,000 rules. Reading them all
(iptables-nft-save) costs 0.7 CPU-s per node, two thirds of it the kernel's netlink dump, whatever
tool asks; one packet's walk reads a dozen chains. So a live snapshot of a big namespace keeps, instead
of the save text, a `LiveSaves`: the chain names (netlink, milliseconds), the built-in chains and
small tables read up front, and a reader for any other chain (`iptables -t T -S C -v`, 5-90 ms).
Everything else that looks at the text (a check scanning it, writing the bundle) reads it whole
first, so it sees exactly what iptables-save prints; the walk sees the same rule text and
counters, chain by chain (listing_to_save).

Pure: the readers are handed in (tracer/snapshot/collectors.py runs them inside the namespace).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

from .iptables import Chain, Ruleset, Table, parse_save

# reads some chains of one table ({chain} or None = all) as iptables-save text
ChainReader = Callable[[str, "list[str] | None"], str]
# A table of at most this many chains is read whole with the snapshot (`iptables -t filter -S -v`:
# 30 ms at 10,000 Services); a bigger one, its built-in chains.
SMALL_TABLE = 200
# After this many single-chain reads in one table, the rest of it is read at once: one walk needs
# a dozen, and a check following many Services is better served by one listing (~0.7 s at 10,000).
MAX_CHAIN_READS = 64


class LiveBackend:
    """One backend's tables ({table: [chain names]}) in a live namespace, with save texts already
    read (`preread`: {table: [texts of some chains]}; all of a small table), a chain reader and a
    whole-ruleset reader."""

    def __init__(self, tables: dict[str, list[str]], preread: dict[str, list[str]],
                 read_chains: ChainReader, read_all: Callable[[], str], source: str):
        self.tables = tables
        self.preread = preread
        self.read_chains = read_chains
        self.read_all = read_all
        self.source = source
        self.reads = 0  # chain reads after the snapshot (what a walk cost)
        self._whole: set[str] = set()
        self.texts: list[str] = []  # every save text read so far, in order
        self._ruleset: Ruleset | None = None

    def read_text(self) -> str:
        """What was read so far (the snapshot's reads and the walks'), as iptables-save text: the
        counters as they were before a trace's packet, for the chains read before it was sent."""
        self.ruleset()
        return "".join(self.texts)

    def table_text(self, table: str) -> str:
        """The save text of one whole table (a small one was read with the snapshot)."""
        if table not in self.tables:
            return ""
        if table not in self._whole:
            if len(self.tables[table]) > SMALL_TABLE:  # only some of its chains were read
                chains = self.ruleset().tables[table].chains
                self.preread[table] = [self.read_chains(table, None)]
                chains.add_text(self.preread[table][0])
                chains._complete = True
            self._whole.add(table)
        return "".join(self.preread.get(table, ()))

    def prefetch(self, table: str, chains: list[str]) -> None:
        """Read several chains of a table at once (what a check following many jumps knows)."""
        t = self.ruleset().tables.get(table)
        if t is not None:
            t.chains.prefetch(chains)

    def chain_lines(self, table: str, chain: str) -> list[str]:
        """One chain's rule lines as iptables-save prints them (`[p:b] -A ...`)."""
        t = self.ruleset().tables.get(table)
        c = t.chains.get(chain) if t is not None else None
        return [c.raw(i) for i in range(len(c))] if c is not None else []

    def ruleset(self) -> Ruleset:
        if self._ruleset is None:
            rs = Ruleset()
            for table, names in self.tables.items():
                t = Table(table)
                t.chains = _LiveChains(self, table, names)
                for text in self.preread.get(table, ()):
                    t.chains.add_text(text)
                rs.tables[table] = t
            self._ruleset = rs
        return self._ruleset


class _LiveChains(dict):
    """A table's chains: every name known, a chain's rules read on first `get`; iterating the
    values reads the rest of the table in one go."""

    def __init__(self, backend: LiveBackend, table: str, names: list[str]):
        super().__init__()
        self.backend = backend
        self.table = table
        self.names = list(names)
        self._known = set(names)
        self._complete = False
        self._reads = 0

    def add_text(self, text: str) -> None:
        """Take the chains of an iptables-save text of this table."""
        if not text:
            return
        self.backend.texts.append(text)
        parsed = parse_save(text, self.backend.source, lazy=True).tables.get(self.table)
        for name, chain in (parsed.chains.items() if parsed else ()):
            if not dict.__contains__(self, name):  # a chain read once stays as the walk saw it
                chain._chains = self  # jump targets are classified against every chain of the table
                dict.__setitem__(self, name, chain)

    def get(self, name: str, default: Any = None) -> Chain | None:
        chain = dict.get(self, name)
        if chain is None and name in self._known and not self._complete:
            self.backend.reads += 1
            self._reads += 1
            if self._reads > MAX_CHAIN_READS:
                self._read_rest()
            else:
                self.add_text(self.backend.read_chains(self.table, [name]))
            chain = dict.get(self, name)
            if chain is None:  # deleted since the snapshot: an empty chain, as a jump to it finds
                chain = Chain(name, chains=self, source=self.backend.source)
                dict.__setitem__(self, name, chain)
        return chain if chain is not None else default

    def prefetch(self, names: list[str]) -> None:
        """Read these chains (those not read yet) in one go: the reader runs them side by side."""
        missing = [n for n in dict.fromkeys(names) if n in self._known and not dict.__contains__(self, n)]
        if len(missing) > 1 and not self._complete and self._reads + len(missing) <= MAX_CHAIN_READS:
            self.backend.reads += len(missing)
            self._reads += len(missing)
            self.add_text(self.backend.read_chains(self.table, missing))

    def __getitem__(self, name: str) -> Chain:
        chain = self.get(name)
        if chain is None:
            raise KeyError(name)
        return chain

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def keys(self):  # type: ignore[override]
        return list(self.names)

    def _read_rest(self) -> None:
        if not self._complete:
            missing = [n for n in self.names if not dict.__contains__(self, n)]
            if missing:
                self.add_text(self.backend.read_chains(self.table, None))
            self._complete = True

    def values(self):  # type: ignore[override]
        self._read_rest()
        return [c for c in (dict.get(self, n) for n in self.names) if c is not None]

    def items(self):  # type: ignore[override]
        self._read_rest()
        return [(n, c) for n in self.names if (c := dict.get(self, n)) is not None]


_COUNTERS = re.compile(r"^\[\d+:\d+\] ")


def changed_chains(backend: LiveBackend, table: str, whole: str) -> list[str]:
    """The chains of `table` already read (what a walk saw) whose rules differ in `whole`, the
    table's save text at a newer nf_tables generation (counters aside: they always move)."""
    t = backend.ruleset().tables.get(table)
    if t is None:
        return []
    now = parse_save(whole, backend.source, lazy=True).tables.get(table)
    return [name for name in list(dict.keys(t.chains))
            if _rules(dict.get(t.chains, name)) != _rules(now.chains.get(name) if now is not None else None)]


def _rules(chain: Chain | None) -> tuple | None:
    if chain is None:
        return None
    return chain.policy, [_COUNTERS.sub("", chain.raw(i)) for i in range(len(chain))]


class LiveSaves(dict):
    """A live Host's `iptables_save`: {backend: save text}, where a backend in `live` is read
    whole on first look at its text, and read per chain by Netfilter.from_host meanwhile."""

    def __init__(self, *args: Any, live: dict[str, LiveBackend] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.live: dict[str, LiveBackend] = dict(live or {})

    def pending(self, key: str) -> LiveBackend | None:
        """The backend's live reader while its text is not read yet (no read happens here)."""
        return self.live.get(key)

    def _fill(self, key: str | None = None) -> None:
        for k in ([key] if key is not None else list(self.live)):
            backend = self.live.pop(k, None)
            if backend is not None:
                dict.__setitem__(self, k, backend.read_all())

    def __getitem__(self, key: str) -> str:
        self._fill(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._fill(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.live or dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.keys(self)) + [k for k in self.live if not dict.__contains__(self, k)])

    def __len__(self) -> int:
        return len(set(dict.keys(self)) | set(self.live))

    def keys(self):  # type: ignore[override]
        return list(iter(self))

    def items(self):  # type: ignore[override]
        self._fill()
        return dict.items(self)

    def values(self):  # type: ignore[override]
        self._fill()
        return dict.values(self)

    def copy(self) -> dict:
        self._fill()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LiveSaves({dict.__repr__(self)}, live={sorted(self.live)})"

    def __reduce_ex__(self, protocol: Any) -> Any:  # copy/deepcopy/pickle: the whole text
        self._fill()
        return (dict, (dict(dict.items(self)),))


def rule_texts(saves: dict, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    """(backend, save text) of a Host's iptables rules, for a check that only needs some tables:
    a live backend not read whole yet gives just those tables' text (no 80,000-rule read); any
    other gives its whole text, as before."""
    live = saves.live if isinstance(saves, LiveSaves) else {}
    out = [(b, "".join(live[b].table_text(t) for t in tables)) for b in live]
    return out + [(b, dict.__getitem__(saves, b)) for b in dict.keys(saves) if b not in live]


def read_texts(saves: dict) -> list[tuple[str, str]]:
    """(backend, save text) of a Host's iptables rules as far as they were read, reading nothing."""
    live = saves.live if isinstance(saves, LiveSaves) else {}
    out = [(b, live[b].read_text()) for b in live]
    return out + [(b, dict.__getitem__(saves, b)) for b in dict.keys(saves) if b not in live]
