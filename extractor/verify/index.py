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

import re
from collections.abc import Callable, Iterable

import ahocorasick_rs

from extractor.verify.alignment import is_alignable
from extractor.verify.leaks import MAX_SHARE, MIN_SHARED, NAME, LeakRule, common_word
from extractor.verify.names import PersonName, joins_name, match_person
from extractor.verify.normalize import (
    TOKEN,
    NormalizedText,
    name_variants,
    normalize,
    normalize_name,
    on_token_boundary,
)
from extractor.verify.values import value_forms

_INNER_PUNCTUATION = re.compile(r"(?<=\w)\s*([:;,!?&/()])\s*(?=\w)")  # `_spaced`
_DFA_PATTERNS = 5000  # up to this many patterns (~10 MB of automaton) the scan uses a DFA
_WINDOW = 120  # characters before a surname read for the rest of a person's name


class NameScanner:
    """One automaton over many names; `scan` a normalised document to record which names it holds.

    `names` are plain names (found as written) or a dict of normalised name → `leaks.LeakRule`:
    a value is also found by its other written forms, a person by the full names it stands
    for, a one-token name only where the document writes it as a name (`leaks`).
    """

    __slots__ = ("_automaton", "_checks", "_first_names", "_keys", "_limited", "sources", "weak")

    def __init__(self, names: Iterable[str] | dict[str, LeakRule]):
        self.sources: dict[str, set[str]] = {}  # normalised name → ids of the documents holding it
        # normalised name → ids of the documents holding it only weakly (a first name: `leaks.corroborated`)
        self.weak: dict[str, set[str]] = {}
        rules = names if isinstance(names, dict) else dict.fromkeys(names, NAME)
        keys_of: dict[str, list[str]] = {}  # pattern → the normalised names it stands for, unconditionally
        checks_of: dict[str, list[tuple[str, Check]]] = {}  # pattern → names it stands for after a check
        self._limited: set[str] = set()  # names not counted as leaks when too many documents hold them
        self._first_names: set[str] = set()  # one-token names some document writes as a first name
        for name, rule in rules.items():
            if not is_alignable(name):
                continue  # judged ungrounded unaligned; an automaton over it would cost its length squared
            key = normalize_name(name)
            if not key or key in self.sources:
                continue
            self.sources[key] = set()
            if rule.share_limited:
                self._limited.add(key)
            for pattern, check in _patterns(key, rule):
                if check is None:
                    keys_of.setdefault(pattern, []).append(key)
                else:
                    checks_of.setdefault(pattern, []).append((key, check))
        patterns = list(dict.fromkeys([*keys_of, *checks_of]))
        self._keys: list[list[str]] = [keys_of.get(p, []) for p in patterns]  # pattern index → names
        self._checks: list[list[tuple[str, Check]] | None] = [checks_of.get(p) for p in patterns]
        # A DFA scans ~2× faster than the default NFA but takes ~2 KB a pattern: only for the usual few names.
        implementation = ahocorasick_rs.Implementation.DFA if len(patterns) <= _DFA_PATTERNS else None
        self._automaton = ahocorasick_rs.AhoCorasick(patterns, implementation=implementation) if patterns else None

    def scan(self, doc_id: str, text: str | NormalizedText) -> bool:
        """Record every name that `text` (`normalize(...)`, or its `.text`: case then unknown) holds; whether it held
        any.
        """
        if self._automaton is None:
            return False
        normalized = text if isinstance(text, NormalizedText) else None
        text = normalized.text if normalized is not None else str(text)
        found: set[str] = set()
        weak: set[str] = set()
        keys_of, checks_of = self._keys, self._checks
        # overlapping: every occurrence is seen, so a name inside a longer one (or off a token boundary once) still
        # counts
        for pattern, start, end in self._automaton.find_matches_as_indexes(text, overlapping=True):
            keys = keys_of[pattern]
            checks = checks_of[pattern]
            if checks is None:
                if found.issuperset(keys):
                    continue  # already attributed; skip the boundary check
                if on_token_boundary(text, start, end):
                    found.update(keys)
                continue
            if not on_token_boundary(text, start, end):
                continue
            found.update(keys)
            for key, check in checks:
                if key not in found:
                    hit = check(text, normalized, start, end)
                    if hit is YES:
                        found.add(key)
                    elif hit is not None:
                        weak.add(key)
                        if hit is FIRST:
                            self._first_names.add(key)
        sources = self.sources
        for key in found:
            sources[key].add(doc_id)
        weak -= found
        for key in weak:
            self.weak.setdefault(key, set()).add(doc_id)
        return bool(found or weak)

    def settle(self, documents: int) -> None:
        """After the last scan of a job of `documents` documents: a name written as a first name anywhere is weak
        everywhere; forget the documents of one-token names and values that too many documents hold
        (`leaks.MAX_SHARE`)."""
        for key in self._first_names:
            if self.sources[key]:
                self.weak.setdefault(key, set()).update(self.sources[key])
                self.sources[key] = set()
        limit = max(MIN_SHARED, MAX_SHARE * documents)
        for key in self._limited:
            if len(self.sources[key]) + len(self.weak.get(key, ())) > limit:
                self.sources[key] = set()
                self.weak.pop(key, None)


# What a check makes of one hit: the name is there (YES), only perhaps (WEAK: `leaks.corroborated`; FIRST: weak, and
# a first name, so weak in every document), or not (None).
YES = "yes"
WEAK = "weak"
FIRST = "first name"
Check = Callable[[str, "NormalizedText | None", int, int], str | None]


def _patterns(key: str, rule: LeakRule) -> list[tuple[str, Check | None]]:
    """The patterns that find `key` under `rule`, each with the check a hit must pass (None: none)."""
    if rule.kind == "word":
        return [(variant, _written_as_name) for variant in name_variants(key)]
    variants = name_variants(key)
    found: list[tuple[str, Check | None]] = [(variant, None) for variant in variants]
    if rule.kind in ("name", "person"):
        # "Titanfall: Assault" in a text tokenised as "Titanfall : Assault" (Re-DocRED, many converters)
        found += [(spaced, None) for variant in variants if (spaced := _spaced(variant)) != variant]
    if rule.kind == "value" and rule.value is not None:
        found += [(form, None) for form in value_forms(rule.value)]
    elif rule.kind == "person" and rule.person is not None:
        person = rule.person
        if person.surname_only:
            found.append((person.tokens[-1], _written_as_name))
        else:
            found.append(
                (
                    person.tokens[-1],
                    lambda text, normalized, start, end: YES if _names_person(person, text, start) else None,
                )
            )
    return found


def _spaced(name: str) -> str:
    """`name` with a space on both sides of its inner punctuation ("titanfall: assault" → "titanfall : assault")."""
    return " ".join(_INNER_PUNCTUATION.sub(r" \1 ", name).split())


def _written_as_name(text: str, normalized: NormalizedText | None, start: int, end: int) -> str | None:
    """Whether a one-token hit is written as a name (`leaks`): only if capitalised; as the first word of a longer name,
    a first name (FIRST); at a sentence start only if no word of the language; elsewhere weakly if one of its
    commonest words (`leaks.common_word`).

    YES where the document's case is unknown (a bare normalised text).
    """
    if normalized is None:
        return YES
    original = normalized.original
    first, stop = normalized.span_to_original(start, end)
    if original[first : first + 1].isdigit():
        return YES  # a number has no case ("265's")
    if not original[first : first + 1].isupper():
        return None
    word = original[first:stop]
    after = original[stop : stop + 3].lstrip(" ")
    if after[:1].isupper():  # "William Shakespeare", "Carl Moland": a first name here, wherever it stands
        return FIRST
    before = original[max(0, first - 40) : first].rstrip()
    if not before or before[-1:] in ".!?:":  # a sentence start: any word is capitalised there
        return None if common_word(word, at_sentence_start=True) else YES
    return WEAK if common_word(word, at_sentence_start=False) else YES


def _names_person(person: PersonName, text: str, start: int) -> bool:
    """Whether the surname at `start` ends a run of tokens that names `person` (`names.match_person`), case unknown."""
    window = text[max(0, start - _WINDOW) : start]
    matches = list(TOKEN.finditer(window))
    words = [m.group() for m in matches] + [person.tokens[-1]]
    bounds = [(m.start(), m.end()) for m in matches] + [(len(window), len(window))]

    def close(index: int) -> bool:
        return joins_name(window[bounds[index - 1][1] : bounds[index][0]], words[index - 1])

    return match_person(person, words, lambda index: True, close, len(words) - 1) is not None


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
