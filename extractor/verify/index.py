"""The leak index: which documents of a job contain a name, in one pass over the corpus.

A name that does not ground in its own document is looked up here: if another document
of the same job holds it, the fact leaked across documents. All names go into one
Aho-Corasick automaton (their normal form and its exact-search variants, as in
`DocumentMatcher.align`'s exact pass) and every normalised document is scanned once; each
hit is kept only on token boundaries. The cost is linear in the corpus plus the hits,
never names × documents. `NameScanner` takes documents one at a time, so a corpus read
from disk (`verify --against`) is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import ahocorasick_rs

from extractor.verify.alignment import is_alignable
from extractor.verify.normalize import name_variants, normalize, normalize_name, on_token_boundary

_DFA_PATTERNS = 5000  # up to this many patterns (~10 MB of automaton) the scan uses a DFA


class NameScanner:
    """One automaton over many names; `scan` a normalised document to record which names it holds."""

    __slots__ = ("sources", "_automaton", "_keys")

    def __init__(self, names: Iterable[str]):
        self.sources: dict[str, set[str]] = {}  # normalised name → ids of the documents holding it
        keys_of: dict[str, list[str]] = {}  # pattern → the normalised names it stands for
        for name in names:
            if not is_alignable(name):
                continue  # judged ungrounded unaligned; an automaton over it would cost its length squared
            key = normalize_name(name)
            if not key or key in self.sources:
                continue
            self.sources[key] = set()
            for variant in name_variants(key):
                keys_of.setdefault(variant, []).append(key)
        self._keys: list[list[str]] = list(keys_of.values())  # pattern index → names
        # A DFA scans ~2× faster than the default NFA but takes ~2 KB a pattern: only for the usual few names.
        implementation = ahocorasick_rs.Implementation.DFA if len(keys_of) <= _DFA_PATTERNS else None
        self._automaton = ahocorasick_rs.AhoCorasick(list(keys_of), implementation=implementation) if keys_of else None

    def scan(self, doc_id: str, text: str) -> bool:
        """Record every name that `text` (already `normalize(...).text`) holds on token boundaries; whether it held any."""
        if self._automaton is None:
            return False
        found: set[str] = set()
        keys_of = self._keys
        # overlapping: every occurrence is seen, so a name inside a longer one (or off a token boundary once) still counts
        for pattern, start, end in self._automaton.find_matches_as_indexes(text, overlapping=True):
            keys = keys_of[pattern]
            if found.issuperset(keys):
                continue  # already attributed; skip the boundary check
            if on_token_boundary(text, start, end):
                found.update(keys)
        sources = self.sources
        for key in found:
            sources[key].add(doc_id)
        return bool(found)


class LeakIndex:
    """Normalised texts of a job's documents, searchable for many names at once."""

    __slots__ = ("_documents",)

    def __init__(self, documents: Iterable[tuple[str, str]]):
        self._documents: list[tuple[str, str]] = [(doc_id, normalize(text).text) for doc_id, text in documents]

    @classmethod
    def from_normalized(cls, documents: Iterable[tuple[str, str]]) -> LeakIndex:
        """An index over (doc_id, text) pairs whose texts are already `normalize(...).text`."""
        index = cls.__new__(cls)
        index._documents = list(documents)
        return index

    def __len__(self) -> int:
        return len(self._documents)

    def find_sources(self, names: Iterable[str]) -> dict[str, set[str]]:
        """Normalised name → ids of the documents holding it on token boundaries (an empty set: none)."""
        scanner = NameScanner(names)
        if scanner.sources:
            for doc_id, text in self._documents:
                scanner.scan(doc_id, text)
        return scanner.sources
