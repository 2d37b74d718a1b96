"""Grounding: find an entity name or an evidence quote in one document, exact first, then fuzzy.

Names (`DocumentMatcher.align`), in order, stopping at the first hit:

1. Exact: the normalised name (see `normalize`), then its core without edge punctuation
   ("Inc." → "inc") and without a possessive ("Microsoft's" → "microsoft"), found with
   `str.find` in the normalised document on token boundaries ("Ann" is not in "Annual";
   "Microsoft" is in "Microsoft's"). → "grounded", score 1.0.
2. Tokens: the name's tokens must match a run of consecutive document tokens one for one,
   with at most `MAX_SEPARATOR_MARKS` punctuation marks (spaces not counted) between two
   of them, so "New-York" grounds on "New York" and 'Conrad S. (Gus) Shinn' on
   'Conrad S. ( Gus ) Shinn'. One token against another (`token_similarity`):
   - equal → 1.0; equal once accents are dropped ("Mediaș"/"Medias") → `ACCENT_SCORE`;
   - a token with a digit must be equal (1998 is not 1999);
   - a proper-name token (capitalised in the name or in the document) must be equal up to
     accents and nothing more: one letter makes another name (Smith/Smyth, Paris/Parish,
     Robert/Roberts, Colombia/Columbia, Beatle/Beatles);
   - a common-word token may also differ by an inflection suffix (s, es, y/ies; stem of at
     least `MIN_STEM_CHARS`) → `INFLECTION_SCORE`, or, when both are at least
     `MIN_EDIT_CHARS` long and start alike, by one edit (substitution, insertion,
     deletion, adjacent swap: organisation/organization) → 1 - 1/length.
   All tokens equal → "grounded" (only separators differed); else "fuzzy", mean token score.
3. Joined or split tokens: the name's letters and digits, separators removed, equal to
   those of a run of document tokens ("Wal-Mart" on "Walmart", "Can't" on "Ca n't",
   "$856m" on "$ 856 m") → "fuzzy", `JOINED_SCORE`; but a plain space between two whole
   words is never joined away ("Flo Rida" is not "Florida").
In passes 2 and 3 symbols must agree: those between the tokens as in the document, those
at the name's edges right next to the run ("15%" is not "15 years", "AT&T" not "AT T").
A leading "the" that the document lacks is dropped for passes 2 and 3 ("The Beatles" on
"Beatles"), the score times `ARTICLE_DROP_FACTOR`. So "John Smith" never grounds on "John
Smyth", "Bank of America" never on "Bank of England", "Apple Inc." never on "Apple
Records". Not handled, on purpose: reordered tokens ("Smith, John"), abbreviations,
reformatted dates and numbers ("3 July 1954" vs "July 3, 1954").

Evidence quotes (`DocumentMatcher.align_quote`): the exact pass; then the quote's tokens
as one run of consecutive document tokens or, when it has elisions ("...", "…"), each part
in order at most `QUOTE_MAX_ELISION_TOKENS` after the previous one → "grounded"; then a
fuzzy pass after google/langextract's resolver: a local alignment of lightly stemmed tokens
that must cover `QUOTE_MIN_COVERAGE` of the quote with a density (matched over spanned
document tokens) of at least `QUOTE_MIN_DENSITY`. So that a paraphrase cannot change the
fact, every token of the quote that is capitalised (bar a sentence opener such as "The"),
holds a digit, is a number word or a negation must be matched to an equal document token,
and the span may not hold an unmatched negation. → "fuzzy", score = coverage.

Every span is in the original document text: `text[start:end]` is the surface form found.
The exact pass is a `str.find` and a boundary check; the document is tokenised only when
some name or quote needs a later pass, and passes 2 and 3 first make cheap substring
checks that rule out most absent names.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Literal

from extractor.verify.normalize import (
    SEPARATORS,
    TOKEN,
    NormalizedText,
    name_variants,
    normalize,
    normalize_name,
    on_token_boundary,
)

Verdict = Literal["grounded", "fuzzy"]

# A token equal to a document token once accents are dropped ("Zürich" vs "Zurich").
ACCENT_SCORE = 0.95
# A common-word token differing only by an inflection suffix ("racer" vs "racers").
INFLECTION_SCORE = 0.9
# A stem shorter than this is not inflected: "as" is not a plural of "a".
MIN_STEM_CHARS = 3
# Common-word tokens at least this long (both) may differ by one edit; "paris"/"parish" and
# "color"/"colour" are too short to tell a spelling variant from another word.
MIN_EDIT_CHARS = 6
# Punctuation marks (spaces not counted) allowed between two matched tokens of a name:
# "S. (Gus" has two; more is another phrase, not the same name.
MAX_SEPARATOR_MARKS = 2
# The same letters with tokens joined or split differently ("Wal-Mart" vs "Walmart").
JOINED_SCORE = 0.9
# The joined pass needs this many letters: "u s" must not ground on "us".
MIN_JOINED_CHARS = 4
# Multiplies the score when a leading "the" of the name is missing from the document.
ARTICLE_DROP_FACTOR = 0.95

# Fraction of the quote's tokens the fuzzy pass must match (langextract uses 0.75; evidence
# is asked for verbatim, so we ask for more).
QUOTE_MIN_COVERAGE = 0.8
# Matched tokens over document tokens spanned: one in two (langextract: one in three).
QUOTE_MIN_DENSITY = 0.5
# The alignment is tried coverage-first (a match outweighs three skipped document tokens),
# then density-first (one for one) when the first fails the density gate.
QUOTE_MATCH_WEIGHTS = (3, 1)
# Longer "quotes" are passages, not evidence: they must be verbatim (the exact or run passes).
QUOTE_MAX_FUZZY_TOKENS = 150
# How far apart (in document tokens) the parts of an elided quote ("A ... B") may be.
QUOTE_MAX_ELISION_TOKENS = 60
# Capitalised only because they open a sentence: exempt from the capitalised-token gate.
QUOTE_OPENERS = frozenset(
    "a an the he she it its his her they their we our i in on at of to by for from with as"
    " after before during while when where this that these those there then and but or so"
    " however since until although though".split()
)
# Tokens a paraphrase may not drop or change, whatever their case: quantities and negations.
QUOTE_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy"
    " eighty ninety hundred thousand million billion trillion first second third fourth fifth"
    " sixth seventh eighth ninth tenth once twice dozen half".split()
)
QUOTE_NEGATIONS = frozenset("not no never nor neither none nobody nothing without t".split())

_ELLIPSIS = re.compile(r"\.\.\.+|\[\s*\.\.\.\s*\]")
_DIGIT = re.compile(r"\d")
# Symbols that are separators for tokenising but carry meaning ("15%", "$5", "AT&T").
_SYMBOLS = re.compile("[%$€£¥&+#@°]")
_SEPARATOR_RUN = re.compile(f"([{SEPARATORS}]+)")
# str.translate deletes ASCII characters fast; non-ASCII text takes the regex
_ASCII_SEPARATORS = str.maketrans("", "", "".join(chr(c) for c in range(128) if not chr(c).isalnum()))


@dataclass(frozen=True, slots=True)
class Alignment:
    """Where a name or quote sits in one document, and how sure the match is."""

    verdict: Verdict | None  # None: not found in this document
    span: tuple[int, int] | None  # offsets into the original document text
    score: float  # 1.0 exact; the fuzzy score otherwise


NOT_FOUND = Alignment(None, None, 0.0)

Token = tuple[str, bool]  # a normalised token and whether it was capitalised as written


class DocumentMatcher:
    """Aligns names and quotes against one document; normalises it once, tokenises on demand."""

    __slots__ = ("normalized", "_tokens", "_folded_text", "_squashed_text")

    def __init__(self, text: str):
        self.normalized: NormalizedText = normalize(text)
        self._tokens: _DocTokens | None = None
        self._folded_text: str | None = None
        self._squashed_text: str | None = None

    def align(self, name: str) -> Alignment:
        """Align an entity name: exact, then token by token, then joined (module docstring)."""
        key = normalize_name(name)
        if not key:
            return NOT_FOUND
        found = self._find_exact(key)
        if found is not None:
            return Alignment("grounded", self.normalized.span_to_original(*found), 1.0)
        parsed = _Name.parse(name)
        attempts = [(parsed, 1.0)]
        if len(parsed.tokens) > 1 and parsed.tokens[0][0] == "the":
            attempts.append((parsed.without_first(), ARTICLE_DROP_FACTOR))
        for attempt, factor in attempts:
            aligned = self._align_tokens(attempt) or self._align_joined(attempt)
            if aligned is not None:
                span, score = aligned
                verdict: Verdict = "grounded" if score == 1.0 and factor == 1.0 else "fuzzy"
                return Alignment(verdict, self.normalized.span_to_original(*span), score * factor)
        return NOT_FOUND

    def align_quote(self, quote: str) -> Alignment:
        """Align an evidence quote: exact, then token runs (with elisions), then the gated fuzzy pass."""
        key = normalize_name(quote)
        if not key:
            return NOT_FOUND
        found = self._find_exact(key)
        if found is not None:
            return Alignment("grounded", self.normalized.span_to_original(*found), 1.0)
        parts = _quote_parts(quote)
        if not parts:
            return NOT_FOUND
        doc = self._doc_tokens()
        run = _find_parts(doc.words, [[word for word, _ in part] for part in parts])
        if run is not None:
            return Alignment("grounded", self._token_span(*run), 1.0)
        fuzzy = _align_fuzzy_quote(doc, [token for part in parts for token in part])
        if fuzzy is None:
            return NOT_FOUND
        (first, last), coverage = fuzzy
        return Alignment("fuzzy", self._token_span(first, last), coverage)

    def _find_exact(self, key: str) -> tuple[int, int] | None:
        """The first occurrence of the name or one of its variants on token boundaries."""
        text = self.normalized.text
        for variant in name_variants(key):
            start = text.find(variant)
            while start >= 0:
                end = start + len(variant)
                if on_token_boundary(text, start, end):
                    return start, end
                start = text.find(variant, start + 1)
        return None

    def _align_tokens(self, name: _Name) -> tuple[tuple[int, int], float] | None:
        """Best run of consecutive document tokens matching the name's tokens one for one."""
        tokens = name.tokens
        if not tokens or not self._may_contain(tokens):
            return None
        doc = self._doc_tokens()
        options = [doc.options(word, capitalised) for word, capitalised in tokens]
        if not all(options):
            return None
        anchor = min(range(len(tokens)), key=lambda k: len(options[k]))
        anchor_words = options[anchor]
        count, words = len(tokens), doc.words
        best: tuple[tuple[int, int], float] | None = None
        for at, word in enumerate(words):
            first = at - anchor
            if word not in anchor_words or first < 0 or first + count > len(words):
                continue
            total = 0.0
            for k in range(count):
                index = first + k
                pair = options[k].get(words[index])
                if pair is None or (k and not self._close(index)):
                    break
                strict, loose = pair
                if name.keep_case and tokens[k][1] and not self._capitalised(index):
                    break
                if strict != loose and not tokens[k][1] and not self._capitalised(index):
                    total += loose
                elif strict:
                    total += strict
                else:
                    break
            else:
                span = self._symbols_agree(name, first, first + count - 1)
                if span is not None and (best is None or total / count > best[1]):
                    best = (span, total / count)
                    if total == count:
                        break
        return best

    def _align_joined(self, name: _Name) -> tuple[tuple[int, int], float] | None:
        """A run of document tokens whose letters and digits, run together, equal the name's."""
        joined = "".join(word for word, _ in name.tokens)
        if len(joined) < MIN_JOINED_CHARS or joined not in self._squashed():
            return None
        doc = self._doc_tokens()
        squashed, starts, ends = doc.joined()
        at = squashed.find(joined)
        while at >= 0:
            first, last = starts.get(at), ends.get(at + len(joined))
            if (
                first is not None
                and last is not None
                and all(self._close(i) for i in range(first + 1, last + 1))
                and self._rejoins_only_fragments(name, first, last)
            ):
                span = self._symbols_agree(name, first, last)
                if span is not None:
                    return span, JOINED_SCORE
            at = squashed.find(joined, at + 1)
        return None

    def _rejoins_only_fragments(self, name: _Name, first: int, last: int) -> bool:
        """Whether every token boundary only one side has is a mark ("Wal-Mart") or next to a fragment ("ca n't").

        A plain space joined away between two whole words makes another name: "Flo Rida" is not "Florida".
        """
        doc = self._doc_tokens()
        text = self.normalized.text
        name_cuts = _cuts([word for word, _ in name.tokens], [name.text[a:b] for a, b in name.gaps()])
        doc_cuts = _cuts(doc.words[first : last + 1], [text[doc.ends[i - 1] : doc.starts[i]] for i in range(first + 1, last + 1)])
        for offset in name_cuts.keys() ^ doc_cuts.keys():
            if not (name_cuts.get(offset) or doc_cuts.get(offset)):
                return False
        return True

    def _symbols_agree(self, name: _Name, first: int, last: int) -> tuple[int, int] | None:
        """The normalised span of tokens first..last, widened to the name's edge symbols, if symbols agree.

        Symbols (%, $, &, ...) are not tokens but change the fact: "15%" is not "15 years",
        "AT&T" is not "AT T". Those between the name's tokens must be those between the
        document's; those before or after the name must sit right before or after the run.
        """
        doc = self._doc_tokens()
        text = self.normalized.text
        start, end = doc.starts[first], doc.ends[last]
        if not on_token_boundary(text, start, end):
            return None  # "3" is not in "3,000", "brien" not in "o'brien"
        if _SYMBOLS.findall(name.text, name.spans[0][0], name.spans[-1][1]) != _SYMBOLS.findall(text, start, end):
            return None
        lead = _SYMBOLS.findall(name.text, 0, name.spans[0][0])
        if lead:
            gap_start = doc.ends[first - 1] if first > 0 else 0
            found = list(_SYMBOLS.finditer(text, gap_start, start))[-len(lead) :]
            if [match.group() for match in found] != lead:
                return None
            start = found[0].start()
        trail = _SYMBOLS.findall(name.text, name.spans[-1][1])
        if trail:
            gap_end = doc.starts[last + 1] if last + 1 < len(doc.words) else len(text)
            found = list(_SYMBOLS.finditer(text, end, gap_end))[: len(trail)]
            if [match.group() for match in found] != trail:
                return None
            end = found[-1].end()
        return start, end

    def _may_contain(self, tokens: list[Token]) -> bool:
        """Cheap substring test: can every name token match some document token at all?"""
        text = self.normalized.text
        for word, capitalised in tokens:
            if word in text:
                continue
            if _DIGIT.search(word):
                return False
            folded = _drop_accents(word)
            if folded in self._folded():
                continue
            if capitalised:
                return False  # proper tokens allow accents only
            haystack = self._folded()
            if folded[: max(MIN_STEM_CHARS, len(folded) - 3)] in haystack:
                continue  # an inflection shares the stem
            if len(folded) >= MIN_EDIT_CHARS:
                third = len(folded) // 3  # one edit leaves at least one third intact
                if any(piece in haystack for piece in (folded[:third], folded[third : 2 * third], folded[2 * third :])):
                    continue
            return False
        return True

    def _folded(self) -> str:
        """The normalised document without accents, for substring pre-checks only."""
        if self._folded_text is None:
            self._folded_text = _drop_accents(self.normalized.text)
        return self._folded_text

    def _squashed(self) -> str:
        """The normalised document without separators, for substring pre-checks only."""
        if self._squashed_text is None:
            text = self.normalized.text
            self._squashed_text = text.translate(_ASCII_SEPARATORS) if text.isascii() else _SEPARATOR_RUN.sub("", text)
        return self._squashed_text

    def _doc_tokens(self) -> _DocTokens:
        if self._tokens is None:
            self._tokens = _DocTokens(self.normalized.text)
        return self._tokens

    def _close(self, index: int) -> bool:
        """Whether document token `index` follows the one before with few enough marks between."""
        doc = self._doc_tokens()
        gap = self.normalized.text[doc.ends[index - 1] : doc.starts[index]]
        return len(gap) <= MAX_SEPARATOR_MARKS or len(gap.replace(" ", "")) <= MAX_SEPARATOR_MARKS

    def _capitalised(self, index: int) -> bool:
        """Whether document token `index` starts with a capital letter in the original text."""
        norm = self.normalized
        return _is_capital(norm.original[norm.offsets[self._doc_tokens().starts[index]]])

    def _token_span(self, first: int, last: int) -> tuple[int, int]:
        doc = self._doc_tokens()
        return self.normalized.span_to_original(doc.starts[first], doc.ends[last])


class _DocTokens:
    """A document's tokens and positions, with lookups built on first use."""

    __slots__ = ("words", "starts", "ends", "_distinct", "_by_folded", "_stems", "_joined")

    def __init__(self, text: str):
        parts = _SEPARATOR_RUN.split(text)  # word, separator, word, ..., word
        bounds = list(accumulate(map(len, parts), initial=0))
        words, starts, ends = parts[0::2], bounds[0::2], bounds[1::2]
        lo, hi = (1 if not words[0] else 0), (len(words) - 1 if not words[-1] else len(words))
        self.words: list[str] = words[lo:hi]
        self.starts: list[int] = starts[lo:hi]
        self.ends: list[int] = ends[lo:hi]
        self._distinct: set[str] | None = None
        self._by_folded: dict[str, list[str]] | None = None
        self._stems: list[str] | None = None
        self._joined: tuple[str, dict[int, int], dict[int, int]] | None = None

    def options(self, word: str, capitalised: bool) -> dict[str, tuple[float, float]]:
        """Document words a name token may match: word → (score if proper, score if common)."""
        if self._distinct is None:
            self._distinct = set(self.words)
            self._by_folded = {}
            for candidate in self._distinct:
                self._by_folded.setdefault(_drop_accents(candidate), []).append(candidate)
        assert self._by_folded is not None
        found: dict[str, tuple[float, float]] = {}
        folded = _drop_accents(word)
        for candidate in self._by_folded.get(folded, ()):
            found[candidate] = (1.0, 1.0) if candidate == word else (ACCENT_SCORE, ACCENT_SCORE)
        if capitalised or _DIGIT.search(word):
            return found
        for candidate_folded, candidates in self._by_folded.items():
            if candidate_folded[:1] != folded[:1] or abs(len(candidate_folded) - len(folded)) > 3:
                continue
            for candidate in candidates:
                if candidate not in found:
                    loose = token_similarity(word, candidate, proper=False)
                    if loose:
                        found[candidate] = (token_similarity(word, candidate, proper=True), loose)
        return found

    @property
    def stems(self) -> list[str]:
        if self._stems is None:
            self._stems = [_light_stem(word) for word in self.words]
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
    if _DIGIT.search(name_word) or _DIGIT.search(doc_word):
        return 0.0  # numbers must be exact
    a, b = _drop_accents(name_word), _drop_accents(doc_word)
    if a == b:
        return ACCENT_SCORE
    if proper:
        return 0.0
    if _is_inflection(a, b):
        return INFLECTION_SCORE
    if min(len(a), len(b)) >= MIN_EDIT_CHARS and a[0] == b[0] and _within_one_edit(a, b):
        return 1.0 - 1.0 / max(len(a), len(b))
    return 0.0


class _Name:
    """A name's normalised text and its tokens, each with its span and capitalisation as written."""

    __slots__ = ("text", "tokens", "spans", "keep_case")

    def __init__(self, text: str, tokens: list[Token], spans: list[tuple[int, int]], keep_case: bool = False):
        self.text = text
        self.tokens = tokens
        self.spans = spans
        self.keep_case = keep_case  # capitalised tokens must be capitalised in the document too

    @staticmethod
    @lru_cache(maxsize=1 << 14)
    def parse(name: str) -> _Name:
        """Tokenise a name (cached: the same names come back document after document)."""
        norm = normalize(name)
        matches = list(TOKEN.finditer(norm.text))
        if len(matches) > 1 and matches[-1].group() == "s" and norm.text.endswith("'s"):
            matches.pop()  # the possessive: "Microsoft's" has the tokens of "Microsoft"
        tokens = [(match.group(), _is_capital(name[norm.offsets[match.start()]])) for match in matches]
        return _Name(norm.text, tokens, [match.span() for match in matches])

    def without_first(self) -> _Name:
        """The name without its leading article: a title now, so "The Hub" must not match "hub"."""
        return _Name(self.text, self.tokens[1:], self.spans[1:], keep_case=True)

    def gaps(self) -> list[tuple[int, int]]:
        """The spans of the separators between consecutive tokens."""
        return [(self.spans[k - 1][1], self.spans[k][0]) for k in range(1, len(self.spans))]


def _cuts(words: list[str], gaps: list[str]) -> dict[int, bool]:
    """Offset of each token boundary in the words run together → whether joining it away is harmless.

    Harmless: the separator has a mark (hyphen, apostrophe), or a side is a fragment (at most
    two characters, or holds a digit).
    """
    cuts: dict[int, bool] = {}
    offset = 0
    for k in range(1, len(words)):
        offset += len(words[k - 1])
        left, right = words[k - 1], words[k]
        fragment = min(len(left), len(right)) <= 2 or bool(_DIGIT.search(left) or _DIGIT.search(right))
        cuts[offset] = fragment or gaps[k - 1].strip() != ""
    return cuts


def _quote_parts(quote: str) -> list[list[Token]]:
    """A quote's tokens, split at elisions ("...", "…", "[...]")."""
    norm = normalize(quote)
    parts: list[list[Token]] = []
    pos = 0
    cuts = [match.span() for match in _ELLIPSIS.finditer(norm.text)] + [(len(norm.text), len(norm.text))]
    for cut_start, cut_end in cuts:
        part = [
            (match.group(), _is_capital(quote[norm.offsets[match.start()]]))
            for match in TOKEN.finditer(norm.text, pos, cut_start)
        ]
        if part:
            parts.append(part)
        pos = cut_end
    return parts


def _find_parts(words: list[str], parts: list[list[str]]) -> tuple[int, int] | None:
    """First and last token index where every part occurs whole, in order, each soon after the last."""
    first = _find_run(words, parts[0], 0, len(words))
    while first is not None:
        end = first + len(parts[0])
        for part in parts[1:]:
            at = _find_run(words, part, end, min(len(words), end + QUOTE_MAX_ELISION_TOKENS + 1))
            if at is None:
                break
            end = at + len(part)
        else:
            return first, end - 1
        first = _find_run(words, parts[0], first + 1, len(words))
    return None


def _find_run(words: list[str], part: list[str], start: int, limit: int) -> int | None:
    """The first index in [start, limit) where `part` begins as consecutive tokens."""
    head, size = part[0], len(part)
    at = start
    while True:
        try:
            at = words.index(head, at, limit)
        except ValueError:
            return None
        if words[at : at + size] == part:
            return at
        at += 1


def _align_fuzzy_quote(doc: _DocTokens, tokens: list[Token]) -> tuple[tuple[int, int], float] | None:
    """The coverage- and density-gated local alignment of a quote's stemmed tokens."""
    if len(tokens) > QUOTE_MAX_FUZZY_TOKENS:
        return None
    quote = [_light_stem(word) for word, _ in tokens]
    needed = math.ceil(len(quote) * QUOTE_MIN_COVERAGE - 1e-9)
    wanted = set(quote)
    hits = [i for i, stem in enumerate(doc.stems) if stem in wanted]
    best: tuple[tuple[int, int], float] | None = None
    for lo, hi in _dense_regions(hits, needed, int(len(quote) / QUOTE_MIN_DENSITY)):
        for weight in QUOTE_MATCH_WEIGHTS:
            found = _local_alignment(quote, doc.stems, lo, hi, weight)
            if found is None:
                continue
            first, last, pairs = found
            if len(pairs) < needed or len(pairs) < QUOTE_MIN_DENSITY * (last - first + 1):
                continue
            if _keeps_fact_tokens(tokens, pairs, doc.words, first, last):
                coverage = len(pairs) / len(quote)
                if best is None or coverage > best[1]:
                    best = ((first, last), coverage)
            break
    return best


def _dense_regions(hits: list[int], needed: int, window: int) -> list[tuple[int, int]]:
    """Token ranges [lo, hi) where a window of `window` tokens holds `needed` hits, cut to at most 2 windows.

    A passing alignment spans at most `window` tokens (the density gate), so pieces of two
    windows overlapping by one hold every candidate and keep each alignment table small.
    """
    pieces: list[tuple[int, int]] = []
    for lo, hi in _merged_windows(hits, needed, window):
        starts = range(lo, max(lo + 1, hi - window), window)
        pieces.extend((start, min(hi, start + 2 * window)) for start in starts)
    return pieces


def _merged_windows(hits: list[int], needed: int, window: int) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    ahead = 0
    for i, start in enumerate(hits):
        while ahead < len(hits) and hits[ahead] < start + window:
            ahead += 1
        if ahead - i < needed:
            continue
        end = hits[ahead - 1] + 1
        if regions and start < regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def _local_alignment(
    quote: list[str], stems: list[str], lo: int, hi: int, weight: int
) -> tuple[int, int, list[tuple[int, int]]] | None:
    """Smith-Waterman over stems[lo:hi]: +weight a match, -1 a skipped document token, 0 a skipped quote token."""
    cols = hi - lo + 1
    previous = [0] * cols
    moves = [bytearray(cols) for _ in range(len(quote) + 1)]  # 0 stop, 1 match, 2 skip quote, 3 skip doc
    best_score, best_cell = 0, (0, 0)
    for i, word in enumerate(quote, start=1):
        current = [0] * cols
        move_row = moves[i]
        for j in range(1, cols):
            score, move = 0, 0
            if stems[lo + j - 1] == word:
                score, move = previous[j - 1] + weight, 1
            if previous[j] > score:
                score, move = previous[j], 2
            if current[j - 1] - 1 > score:
                score, move = current[j - 1] - 1, 3
            current[j] = score
            move_row[j] = move
            if score > best_score:
                best_score, best_cell = score, (i, j)
        previous = current
    if best_score <= 0:
        return None
    pairs: list[tuple[int, int]] = []
    i, j = best_cell
    while moves[i][j]:
        move = moves[i][j]
        if move == 1:
            pairs.append((i - 1, lo + j - 1))
        i, j = (i - 1 if move != 3 else i), (j - 1 if move != 2 else j)
    pairs.reverse()
    return pairs[0][1], pairs[-1][1], pairs


def _keeps_fact_tokens(tokens: list[Token], pairs: list[tuple[int, int]], doc_words: list[str], first: int, last: int) -> bool:
    """Whether the alignment kept every token that carries the fact, and added no negation."""
    matched = dict(pairs)
    for index, (word, capitalised) in enumerate(tokens):
        carries_fact = word in QUOTE_NUMBER_WORDS or word in QUOTE_NEGATIONS or _DIGIT.search(word)
        if carries_fact or (capitalised and word not in QUOTE_OPENERS):
            at = matched.get(index)
            if at is None or _drop_accents(doc_words[at]) != _drop_accents(word):
                return False
    kept = {at for _, at in pairs}
    return not any(doc_words[at] in QUOTE_NEGATIONS for at in range(first, last + 1) if at not in kept)


def _is_capital(char: str) -> bool:
    return char.isupper() or char.istitle()


@lru_cache(maxsize=1 << 16)
def _drop_accents(text: str) -> str:
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


def _light_stem(word: str) -> str:
    """The form the fuzzy quote pass compares: accents dropped, ies → y, a final s dropped (not ss)."""
    word = _drop_accents(word)
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
    for x, y in zip(a, b):
        if x != y:
            break
        prefix += 1
    a, b = a[prefix:], b[prefix:]
    if len(a) == len(b):
        return a[1:] == b[1:] or (len(a) >= 2 and a[0] == b[1] and a[1] == b[0] and a[2:] == b[2:])
    if len(a) > len(b):
        a, b = b, a
    return a == b[1:]
