"""A document's token view, and how one name token matches one document token.

`token_similarity` is the whole token-level rule set of fuzzy grounding (see `grounding`):
equal → 1.0; equal once accents are dropped → `ACCENT_SCORE`; tokens with digits must be
equal; proper-name tokens nothing more; common words may also differ by an inflection
suffix (`INFLECTION_SCORE`) or, when long enough, by one edit. `DocumentTokens` splits a
normalised document into tokens once and builds its lookups on first use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from itertools import accumulate

from extractor.verify.normalize import SEPARATORS

# A token equal to a document token once accents are dropped ("Zürich" vs "Zurich").
ACCENT_SCORE = 0.95
# A common-word token differing only by an inflection suffix ("racer" vs "racers").
INFLECTION_SCORE = 0.9
# A stem shorter than this is not inflected: "as" is not a plural of "a".
MIN_STEM_CHARS = 3
# Common-word tokens at least this long (both) may differ by one edit; "paris"/"parish" and
# "color"/"colour" are too short to tell a spelling variant from another word.
MIN_EDIT_CHARS = 6

DIGIT = re.compile(r"\d")
# Symbols that are separators for tokenising but carry meaning ("15%", "$5", "AT&T").
SYMBOLS = re.compile("[%$€£¥&+#@°]")
_SEPARATOR_RUN = re.compile(f"([{SEPARATORS}]+)")

Token = tuple[str, bool]  # a normalised token and whether it was capitalised as written


class DocumentTokens:
    """A document's tokens and positions, with lookups built on first use."""

    __slots__ = ("_ascii", "_by_initial", "_distinct", "_folded_words", "_joined", "_stems", "ends", "starts", "words")

    def __init__(self, text: str):
        parts = _SEPARATOR_RUN.split(text)  # word, separator, word, ..., word
        bounds = list(accumulate(map(len, parts), initial=0))
        words, starts, ends = parts[0::2], bounds[0::2], bounds[1::2]
        lo, hi = (1 if not words[0] else 0), (len(words) - 1 if not words[-1] else len(words))
        self.words: list[str] = words[lo:hi]
        self.starts: list[int] = starts[lo:hi]
        self.ends: list[int] = ends[lo:hi]
        self._ascii = text.isascii()
        self._distinct: set[str] | None = None
        self._folded_words: dict[str, list[str]] | None = None
        self._by_initial: dict[str, list[str]] | None = None  # first letter, accents dropped → words
        self._stems: list[str] | None = None
        self._joined: tuple[str, dict[int, int], dict[int, int]] | None = None

    def options(self, word: str, capitalised: bool) -> dict[str, tuple[float, float]]:
        """Document words a name token may match: word → (score if proper, score if common)."""
        if self._distinct is None:
            self._distinct = set(self.words)
        found: dict[str, tuple[float, float]] = {}
        folded = drop_accents(word)
        if word in self._distinct:
            found[word] = (1.0, 1.0)
        if folded != word and folded in self._distinct:
            found[folded] = (ACCENT_SCORE, ACCENT_SCORE)
        for candidate in self._accented().get(folded, ()):
            if candidate != word:
                found[candidate] = (ACCENT_SCORE, ACCENT_SCORE)
        if capitalised or len(folded) < MIN_STEM_CHARS or DIGIT.search(word):
            return found  # no inflection or edit can apply
        if self._by_initial is None:
            self._by_initial = {}
            for candidate in self._distinct:
                self._by_initial.setdefault(drop_accents(candidate)[:1], []).append(candidate)
        for candidate in self._by_initial.get(folded[:1], ()):
            if candidate in found or abs(len(candidate) - len(word)) > 3:
                continue  # inflections add at most three letters, an edit one
            loose = token_similarity(word, candidate, proper=False)
            if loose:
                found[candidate] = (token_similarity(word, candidate, proper=True), loose)
        return found

    def positions(self, words: Iterable[str]) -> list[int]:
        """Every index holding one of `words`, in order (list.index scans in C)."""
        found: list[int] = []
        for word in words:
            at = -1
            try:
                while True:
                    at = self.words.index(word, at + 1)
                    found.append(at)
            except ValueError:
                pass
        return sorted(found)

    def _accented(self) -> dict[str, list[str]]:
        """Accent-free form → the document's words that have accents (other words are their own form)."""
        if self._folded_words is None:
            self._folded_words = {}
            if not self._ascii:
                for candidate in {word for word in self.words if not word.isascii()}:
                    self._folded_words.setdefault(drop_accents(candidate), []).append(candidate)
        return self._folded_words

    @property
    def stems(self) -> list[str]:
        if self._stems is None:
            self._stems = [light_stem(word) for word in self.words]
        return self._stems

    def joined(self) -> tuple[str, dict[int, int], dict[int, int]]:
        """All tokens run together, and which token starts / ends at each offset of that string."""
        if self._joined is None:
            bounds = list(accumulate(map(len, self.words), initial=0))
            self._joined = (
                "".join(self.words),
                {offset: i for i, offset in enumerate(bounds[:-1])},
                {offset: i for i, offset in enumerate(bounds[1:])},
            )
        return self._joined


def token_similarity(name_word: str, doc_word: str, *, proper: bool) -> float:
    """How well one normalised name token matches one document token; 0.0 = not at all."""
    if name_word == doc_word:
        return 1.0
    if DIGIT.search(name_word) or DIGIT.search(doc_word):
        return 0.0  # numbers must be exact
    a, b = drop_accents(name_word), drop_accents(doc_word)
    if a == b:
        return ACCENT_SCORE
    if proper:
        return 0.0
    if _is_inflection(a, b):
        return INFLECTION_SCORE
    if min(len(a), len(b)) >= MIN_EDIT_CHARS and a[0] == b[0] and _within_one_edit(a, b):
        return 1.0 - 1.0 / max(len(a), len(b))
    return 0.0


def is_capital(char: str) -> bool:
    return char.isupper() or char.istitle()


@lru_cache(maxsize=1 << 16)
def drop_accents(text: str) -> str:
    """The text without combining marks ("mediaș" → "medias"); ASCII passes through."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def _is_inflection(a: str, b: str) -> bool:
    """Whether one word is the other plus s or es, or with y turned ies, on a long enough stem."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) < MIN_STEM_CHARS:
        return False
    if long.startswith(short) and long[len(short) :] in ("s", "es"):
        return True
    return short.endswith("y") and long == short[:-1] + "ies"


def light_stem(word: str) -> str:
    """The form the fuzzy quote pass compares: accents dropped, ies → y, a final s dropped (not ss)."""
    word = drop_accents(word)
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _within_one_edit(a: str, b: str) -> bool:
    """Whether a and b differ by at most one substitution, insertion, deletion or adjacent swap."""
    if abs(len(a) - len(b)) > 1:
        return False
    prefix = 0
    for x, y in zip(a, b, strict=False):  # the common prefix of two strings of any lengths
        if x != y:
            break
        prefix += 1
    a, b = a[prefix:], b[prefix:]
    if len(a) == len(b):
        return a[1:] == b[1:] or (len(a) >= 2 and a[0] == b[1] and a[1] == b[0] and a[2:] == b[2:])
    if len(a) > len(b):
        a, b = b, a
    return a == b[1:]
