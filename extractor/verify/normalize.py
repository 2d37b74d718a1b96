"""Text normalisation for grounding, with a map from every normalised character back to the original.

The normal form: Unicode NFKC, casefolded, typographic quotes, apostrophes and dashes
unified (’‘`´ʼ‛ → ', “”„‟ → ", –—‐‑−‒― → -), dotless ı as i, soft hyphens and zero-width characters
removed, every whitespace run collapsed to one space, leading and trailing space stripped.
Documents and names go through the same function, so a name matches a document exactly
when its normal form occurs there on token boundaries (`on_token_boundary`).

Most text costs a few C-level passes: ASCII text, and any text that is already NFKC and
whose casefold keeps its length, is folded character for character, and whitespace runs
are found with one regex. Only text that NFKC or casefold reshapes (ligatures, full-width
forms, decomposed accents, ß) goes through a per-cluster loop, and only over its
non-ASCII runs. The offset map is a `range` when nothing moved, else an `OffsetMap` that
stores one breakpoint per place where the two texts stop advancing together.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Unified before NFKC (so ´ does not become a space plus a combining accent) and after.
_UNIFIED = {
    **dict.fromkeys("’‘`´ʼ‛", "'"),
    **dict.fromkeys("“”„‟", '"'),
    **dict.fromkeys("–—‐‑−‒―", "-"),
    # casefold keeps Turkish dotless ı apart from i, yet upper case merges them: "ŞANLIURFA" is "Şanlıurfa"
    "ı": "i",
    # non-breaking and typographic spaces: NFKC would make them spaces anyway; doing it
    # here keeps HTML-derived text (full of U+00A0) on the fast path
    **dict.fromkeys("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f", " "),
    # a lone newline or tab becomes a space one for one, so only true runs need the regex
    **dict.fromkeys("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\u2028\u2029", " "),
}
_PUNCTUATION = str.maketrans(_UNIFIED)
_ASCII_UNIFIED = str.maketrans({char: value for char, value in _UNIFIED.items() if char.isascii()})
# str.translate looks every character up in a dict; finding the few present ones is faster
_TO_UNIFY = re.compile("[" + "".join(_UNIFIED) + "]")
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
# What the collapse rewrites: a blank run at either end, any run of two or more blanks, a
# lone non-space blank, a lone invisible. A lone " " between words is left alone.
_SPACE_RUN = re.compile(rf"^[\s{_INVISIBLE}]+|[\s{_INVISIBLE}]+\Z|[\s{_INVISIBLE}]{{2,}}|[^\S ]|[{_INVISIBLE}]")
_INVISIBLE_RUN = re.compile(rf"[{_INVISIBLE}]+")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")

# Characters that separate tokens: whitespace, controls, ASCII punctuation and symbols, the
# Latin-1 symbols, general punctuation (quotes, dashes, bullets, primes) and CJK punctuation.
# Everything else (letters, digits, combining marks, other scripts' signs) is part of a token.
SEPARATORS = r"\s\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f\u00a1-\u00bf\u00d7\u00f7\u2010-\u205e\u3000-\u303f"
TOKEN = re.compile(rf"[^{SEPARATORS}]+")
_SEPARATOR = re.compile(rf"[{SEPARATORS}]")

# Stripped from a name's ends to get its core ("Inc." → "inc", '"Willi"' → "willi").
_LEADING_PUNCTUATION = "\"'([{"
_TRAILING_PUNCTUATION = ".,;:!?\"')]}"
_INNER_HYPHEN = re.compile(r"(?<=[^\W_])-(?=[^\W_])")  # "new-york", not "1997 - 8"


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """A normalised text and, per normalised character, its index in the original."""

    text: str
    offsets: Sequence[int]  # len(text) + 1 entries; the last is len(original)
    original: str

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a normalised [start, end) to the original [start, end) covering the same characters."""
        offsets = self.offsets
        if end <= start:
            at = offsets[start]
            return at, at
        if type(offsets) is range:  # identity
            first, stop = start, end
        elif type(offsets) is OffsetMap:
            first, stop = offsets.span(start, end)
        else:
            first, stop = offsets[start], offsets[end - 1] + 1
        original = self.original
        # a normalised character may stand for a base plus its combining marks
        while stop < len(original) and not original[stop].isascii() and is_cluster_continuation(original[stop]):
            stop += 1
        return first, stop


def normalize(text: str) -> NormalizedText:
    """Normalise `text` (see the module docstring) and keep the offset map back to it."""
    if text.isascii():
        folded = text.lower()
        if "`" in folded or not folded.isprintable():
            folded = folded.translate(_ASCII_UNIFIED)  # fast: ASCII to ASCII, one for one
        return _collapse_spaces(text, folded, None)
    unified = text
    for char in set(_TO_UNIFY.findall(text)):
        unified = unified.replace(char, _UNIFIED[char])
    folded = unified.casefold()
    if (
        len(folded) == len(unified)
        and unicodedata.is_normalized("NFKC", unified)
        and (folded == unified or unicodedata.is_normalized("NFKC", folded))
    ):
        return _collapse_spaces(text, folded, None)
    folded, base = _fold_clusters(unified)
    return _collapse_spaces(text, folded, base)


@lru_cache(maxsize=1 << 16)
def normalize_name(name: str) -> str:
    """The normal form of a short string (an entity name, a graph key), without offsets."""
    if name.isascii():
        folded = name.lower()
        if "`" in folded:
            folded = folded.replace("`", "'")
        if _needs_collapse(folded):
            return " ".join(folded.split())
        return folded
    return normalize(name).text


@lru_cache(maxsize=1 << 16)
def name_variants(key: str) -> tuple[str, ...]:
    """Exact-search forms of a normalised name, in order of preference.

    Itself; without edge punctuation ("apple inc." → "apple inc"); without a possessive
    ("microsoft's" → "microsoft"); with hyphens as spaces ("new-york" → "new york").
    """
    if key[:1].isalnum() and key[-1:].isalnum() and not key.endswith("'s") and "-" not in key:
        return (key,)  # most names: nothing to vary
    variants = [key]
    core = key.rstrip(_TRAILING_PUNCTUATION).lstrip(_LEADING_PUNCTUATION).strip()
    if core and core != key:
        variants.append(core)
    if core.endswith("'s") and len(core) > 2:
        variants.append(core[:-2].rstrip())
    elif core.endswith("s'") and len(core) > 2:
        variants.append(core[:-1])
    if _INNER_HYPHEN.search(core):
        variants.extend(_INNER_HYPHEN.sub(" ", variant) for variant in variants[1:] or [core])
    return tuple(dict.fromkeys(v for v in variants if v))


def is_word_char(char: str) -> bool:
    """Whether `char` belongs to a token (letters, digits, combining marks), not a separator."""
    if char.isascii():
        return char.isalnum()
    return _SEPARATOR.match(char) is None


def on_token_boundary(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] neither starts nor ends inside a token of `text`.

    An apostrophe inside a word joins it ("o'brien" has no token "brien"), except the
    possessive "'s" and a closing "'" after a token; a number does not end inside
    "3,000" or "1.5".
    """
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before in ' "(' and (after == " " or (after in '.,;:!?)"' and not text[end - 1].isdigit())):
        return True  # the common cases, decided without the rules below
    if start > 0 and is_word_char(text[start]):
        if is_word_char(before):
            return False
        if before == "'" and start >= 2 and is_word_char(text[start - 2]):
            return False
        if before in ".," and start >= 2 and text[start].isdigit() and text[start - 2].isdigit():
            return False
    if end < len(text) and is_word_char(text[end - 1]):
        if is_word_char(after):
            return False
        following = text[end + 1] if end + 1 < len(text) else ""
        if (
            after == "'"
            and following
            and is_word_char(following)
            and (following != "s" or (end + 2 < len(text) and is_word_char(text[end + 2])))
        ):
            return False
        if after in ".," and following.isdigit() and text[end - 1].isdigit():
            return False
    return True


def is_cluster_continuation(char: str) -> bool:
    """Whether `char` attaches to the character before it (a combining mark, a Hangul vowel or final)."""
    code = ord(char)
    return unicodedata.category(char)[0] == "M" or 0x1160 <= code <= 0x11FF or 0xD7B0 <= code <= 0xD7FF


def _fold_clusters(text: str) -> tuple[str, list[int]]:
    """NFKC + casefold a text that needs reshaping, cluster by cluster, keeping the offset of each."""
    pieces: list[str] = []
    base: list[int] = []
    pos = 0
    for run in _NON_ASCII_RUN.finditer(text):
        start, end = run.span()
        if start > pos and is_cluster_continuation(text[start]):
            start -= 1  # an ASCII letter followed by combining marks is one cluster
        if start > pos:
            pieces.append(text[pos:start].lower())
            base.extend(range(pos, start))
        i = start
        while i < end:
            j = i + 1
            while j < end and is_cluster_continuation(text[j]):
                j += 1
            folded = _fold_cluster(text[i:j])
            pieces.append(folded)
            base.extend([i] * len(folded))
            i = j
        pos = end
    if pos < len(text):
        pieces.append(text[pos:].lower())
        base.extend(range(pos, len(text)))
    return "".join(pieces), base


def _fold_cluster(cluster: str) -> str:
    """NFKC, casefold, and NFKC again where casefolding broke the normal form."""
    folded = unicodedata.normalize("NFKC", cluster).casefold()
    if not unicodedata.is_normalized("NFKC", folded):
        folded = unicodedata.normalize("NFKC", folded)
    return folded.translate(_PUNCTUATION)


def _needs_collapse(text: str) -> bool:
    """Whether `text` may hold anything but single inner spaces: runs, edges, other blanks, invisibles."""
    # every whitespace but " " and every invisible character is non-printable
    return not text.isprintable() or "  " in text or text[:1] == " " or text[-1:] == " "


def _collapse_spaces(original: str, folded: str, base: list[int] | None) -> NormalizedText:
    """Collapse whitespace runs of `folded` to one space and compose the offset map."""
    if not _needs_collapse(folded):
        if base is None:
            return NormalizedText(folded, range(len(folded) + 1), original)
        base.append(len(original))
        return NormalizedText(folded, OffsetMap.from_list(base), original)
    pieces: list[str] = []
    breaks = _Breakpoints()
    full: list[int] = []  # only when `base` is given: the slow path keeps every offset
    size = 0
    pos = 0
    for run in _SPACE_RUN.finditer(folded):
        start, end = run.span()
        if start > pos:
            pieces.append(folded[pos:start])
            if base is None:
                breaks.add(size, pos)
            else:
                full.extend(base[pos:start])
            size += start - pos
        if pieces and end < len(folded) and not _INVISIBLE_RUN.fullmatch(folded, start, end):
            pieces.append(" ")
            if base is None:
                breaks.add(size, start)
            else:
                full.append(base[start])
            size += 1
        pos = end
    if pos < len(folded):
        pieces.append(folded[pos:])
        if base is None:
            breaks.add(size, pos)
        else:
            full.extend(base[pos:])
        size += len(folded) - pos
    if base is not None:
        full.append(len(original))
        return NormalizedText("".join(pieces), OffsetMap.from_list(full), original)
    if breaks.norm == [0] and breaks.orig == [0] and size == len(original):
        return NormalizedText("".join(pieces), range(size + 1), original)  # only newlines became spaces
    breaks.add(size, len(original), force=True)
    return NormalizedText("".join(pieces), OffsetMap(breaks.norm, breaks.orig), original)


class _Breakpoints:
    """Collects the points where the normalised → original offset stops advancing one for one."""

    __slots__ = ("norm", "orig")

    def __init__(self) -> None:
        self.norm: list[int] = []
        self.orig: list[int] = []

    def add(self, norm: int, orig: int, *, force: bool = False) -> None:
        if not force and self.norm and orig - self.orig[-1] == norm - self.norm[-1]:
            return  # continues the current stretch
        self.norm.append(norm)
        self.orig.append(orig)


class OffsetMap(Sequence[int]):
    """Normalised index → original index, stored as stretches that advance one for one.

    A document keeps a handful of breakpoints (one per collapsed whitespace run or reshaped
    character) instead of an integer per character, so many documents fit in memory.
    """

    __slots__ = ("_norm", "_orig")

    def __init__(self, norm: list[int], orig: list[int]):
        self._norm = norm  # stretch starts in the normalised text; the last is the sentinel
        self._orig = orig

    @classmethod
    def from_list(cls, offsets: list[int]) -> OffsetMap:
        """Compress a full offset list (its last entry the sentinel)."""
        breaks = _Breakpoints()
        for norm, orig in enumerate(offsets[:-1]):
            breaks.add(norm, orig)
        breaks.add(len(offsets) - 1, offsets[-1], force=True)
        return cls(breaks.norm, breaks.orig)

    def __len__(self) -> int:
        return self._norm[-1] + 1

    def identity_prefix(self) -> int:
        """How far from the start normalised and original offsets are equal (0 when not at all)."""
        if self._norm[0] == 0 and self._orig[0] == 0 and len(self._norm) > 1:
            return self._norm[1]
        return 0

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original index of `start` and one past that of `end - 1` (for start < end)."""
        norm, orig = self._norm, self._orig
        at = bisect_right(norm, start) - 1
        first = orig[at] + start - norm[at]
        last = end - 1
        if at + 1 < len(norm) and norm[at + 1] <= last:
            at = bisect_right(norm, last, at) - 1
        return first, orig[at] + last - norm[at] + 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        at = bisect_right(self._norm, index) - 1
        return self._orig[at] + index - self._norm[at]
