"""Evidence quotes: align a relation's verbatim quote with its document, exact first, then a gated fuzzy pass.

`align_quote`: the exact pass; then the quote's tokens as one run of consecutive document
tokens or, when it has elisions ("...", "…"), each part in order at most
`QUOTE_MAX_ELISION_TOKENS` after the previous one → "grounded"; then a fuzzy pass after
google/langextract's resolver: a local alignment of lightly stemmed tokens that must cover
`QUOTE_MIN_COVERAGE` of the quote with a density (matched over spanned document tokens) of
at least `QUOTE_MIN_DENSITY`. So that a paraphrase cannot change the fact, every token of
the quote that is capitalised (bar a sentence opener such as "The"), holds a digit, is a
number word or a negation must be matched to an equal document token, the span may not
hold an unmatched negation, and the quote's symbols (%, $, ...) must be in the span.
→ "fuzzy", score = coverage. Quotes over `QUOTE_MAX_FUZZY_TOKENS` tokens are passages, not
evidence, and get no fuzzy pass.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from extractor.verify.alignment import NOT_FOUND, Alignment
from extractor.verify.normalize import TOKEN, name_variants, normalize, normalize_name, on_token_boundary
from extractor.verify.tokens import DIGIT, SYMBOLS, DocumentTokens, Token, drop_accents, is_capital, light_stem

if TYPE_CHECKING:
    from extractor.verify.grounding import DocumentMatcher

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
    [
        "a",
        "an",
        "the",
        "he",
        "she",
        "it",
        "its",
        "his",
        "her",
        "they",
        "their",
        "we",
        "our",
        "i",
        "in",
        "on",
        "at",
        "of",
        "to",
        "by",
        "for",
        "from",
        "with",
        "as",
        "after",
        "before",
        "during",
        "while",
        "when",
        "where",
        "this",
        "that",
        "these",
        "those",
        "there",
        "then",
        "and",
        "but",
        "or",
        "so",
        "however",
        "since",
        "until",
        "although",
        "though",
    ]
)
# Tokens a paraphrase may not drop or change, whatever their case: quantities and negations.
QUOTE_NUMBER_WORDS = frozenset(
    [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
        "million",
        "billion",
        "trillion",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "once",
        "twice",
        "dozen",
        "half",
    ]
)
QUOTE_NEGATIONS = frozenset(["not", "no", "never", "nor", "neither", "none", "nobody", "nothing", "without", "t"])

_ELLIPSIS = re.compile(r"\.\.\.+|\[\s*\.\.\.\s*\]")


def align_quote(matcher: DocumentMatcher, quote: str) -> Alignment:
    """Align an evidence quote with the matcher's document: exact, then token runs (with elisions), then fuzzy."""
    if quote.isascii():  # most quotes are verbatim: one find, without normalize_name and its cache
        key = quote.lower()
        if key.isprintable() and "  " not in key and key[:1].isalnum() and key[-1:] != " " and "`" not in key:
            text = matcher.normalized.text
            start = text.find(key)
            while start >= 0:
                if on_token_boundary(text, start, start + len(key)):
                    return Alignment("grounded", matcher.to_original(start, start + len(key)), 1.0)
                start = text.find(key, start + 1)
    key = normalize_name(quote)
    if not key:
        return NOT_FOUND
    found = matcher.find_exact(name_variants(key))
    if found is not None:
        return Alignment("grounded", matcher.to_original(*found), 1.0)
    parts = _quote_parts(quote)
    if not parts:
        return NOT_FOUND
    doc = matcher.tokens()
    symbols = SYMBOLS.findall(key)
    run = _find_parts(doc.words, [[word for word, _ in part] for part in parts])
    if run is not None and matcher.holds_symbols(symbols, *run):
        return Alignment("grounded", matcher.token_span(*run), 1.0)
    fuzzy = _align_fuzzy_quote(doc, [token for part in parts for token in part])
    if fuzzy is None or not matcher.holds_symbols(symbols, *fuzzy[0]):
        return NOT_FOUND
    (first, last), coverage = fuzzy
    return Alignment("fuzzy", matcher.token_span(first, last), coverage)


def _quote_parts(quote: str) -> list[list[Token]]:
    """A quote's tokens, split at elisions ("...", "…", "[...]")."""
    norm = normalize(quote)
    parts: list[list[Token]] = []
    pos = 0
    cuts = [match.span() for match in _ELLIPSIS.finditer(norm.text)] + [(len(norm.text), len(norm.text))]
    for cut_start, cut_end in cuts:
        part = [
            (match.group(), is_capital(quote[norm.offsets[match.start()]]))
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


def _align_fuzzy_quote(doc: DocumentTokens, tokens: list[Token]) -> tuple[tuple[int, int], float] | None:
    """The coverage- and density-gated local alignment of a quote's stemmed tokens."""
    if len(tokens) > QUOTE_MAX_FUZZY_TOKENS:
        return None
    quote = [light_stem(word) for word, _ in tokens]
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


def _keeps_fact_tokens(
    tokens: list[Token], pairs: list[tuple[int, int]], doc_words: list[str], first: int, last: int
) -> bool:
    """Whether the alignment kept every token that carries the fact, and added no negation."""
    matched = dict(pairs)
    for index, (word, capitalised) in enumerate(tokens):
        carries_fact = word in QUOTE_NUMBER_WORDS or word in QUOTE_NEGATIONS or DIGIT.search(word)
        if carries_fact or (capitalised and word not in QUOTE_OPENERS):
            at = matched.get(index)
            if at is None or drop_accents(doc_words[at]) != drop_accents(word):
                return False
    kept = {at for _, at in pairs}
    return not any(doc_words[at] in QUOTE_NEGATIONS for at in range(first, last + 1) if at not in kept)
