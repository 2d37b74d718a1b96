"""Grounding: find an entity name in one document, exact first, then fuzzy.

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
Records".
4. Rewritten: a name that is a date or a number is found by every written form of its value
   (`values`: "1954-07-03" on "3 July 1954") → "fuzzy", `VALUE_SCORE`; a person's name with
   middle names dropped or cut to initials, or honorifics added or dropped, on the one person
   of the document it can stand for (`names`: "Ella M. Morris" on "Ella Mabel Morris") →
   "fuzzy", `names.NAME_VARIANT_SCORE`, the span covering the document's full name.
Not handled, on purpose: reordered tokens ("Smith, John"), abbreviations, and what `values`
leaves unnormalised (its docstring says what and why).

Evidence quotes (`DocumentMatcher.align_quote`) are aligned by `evidence.align_quote`;
the token-level rules live in `tokens`.

Every span is in the original document text: `text[start:end]` is the surface form found.
The exact pass is a `str.find` and a boundary check; the document is tokenised only when
some name or quote needs a later pass, and passes 2 and 3 first make cheap substring
checks that rule out most absent names.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from extractor.verify import evidence
from extractor.verify.alignment import MAX_NAME_CHARS, NOT_FOUND, Alignment, Verdict, is_alignable  # noqa: F401
from extractor.verify.names import (
    MAX_DISTINCT_RUNS,
    NAME_VARIANT_SCORE,
    PersonName,
    is_person_type,
    joins_name,
    match_person,
    one_person,
)
from extractor.verify.normalize import (
    TOKEN,
    NormalizedText,
    OffsetMap,
    is_word_char,
    name_variants,
    normalize,
    normalize_name,
    on_token_boundary,
)
from extractor.verify.tokens import (
    DIGIT,
    MIN_EDIT_CHARS,
    MIN_STEM_CHARS,
    SYMBOLS,
    DocumentTokens,
    Token,
    drop_accents,
    is_capital,
)
from extractor.verify.values import parse_value, value_forms

# Punctuation marks (spaces not counted) allowed between two matched tokens of a name:
# "S. (Gus" has two; more is another phrase, not the same name.
MAX_SEPARATOR_MARKS = 2
# The same letters with tokens joined or split differently ("Wal-Mart" vs "Walmart").
JOINED_SCORE = 0.9
# The joined pass needs this many letters: "u s" must not ground on "us".
MIN_JOINED_CHARS = 4
# Multiplies the score when a leading "the" of the name is missing from the document.
ARTICLE_DROP_FACTOR = 0.95
# A date or number found in another written form ("1954-07-03" on "3 July 1954"): the same value, another spelling.
VALUE_SCORE = 0.95

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# bytes.translate deletes fast; non-ASCII separators stay (rare, and they only cost recall)
_ASCII_SEPARATOR_BYTES = bytes(c for c in range(128) if not chr(c).isalnum())


class DocumentMatcher:
    """Aligns names and quotes against one document; normalises it once, tokenises on demand."""

    __slots__ = ("_folded_text", "_identity", "_squashed_text", "_tokens", "normalized")

    def __init__(self, text: str):
        self.normalized: NormalizedText = normalize(text)
        offsets = self.normalized.offsets
        # normalised offsets below this one are the original offsets (most text: all of it)
        self._identity = (
            len(self.normalized.text)
            if type(offsets) is range
            else (offsets.identity_prefix() if type(offsets) is OffsetMap else 0)
        )
        self._tokens: DocumentTokens | None = None
        self._folded_text: str | None = None
        self._squashed_text: bytes | None = None

    def align(self, name: str, kind: str | None = None) -> Alignment:
        """Align an entity name: exact, then token by token, then joined, then as a value or a person (module
        docstring).

        `kind` is the entity's type as the answer gave it: the person rules apply to a person's type,
        to an untyped name, and to any name written with an honorific.
        """
        if not is_alignable(name):
            return NOT_FOUND  # bounded work, and a NUL must not vanish in normalising (alignment.MAX_NAME_CHARS)
        form = name.lower()
        if (
            name.isascii()
            and form[:1].isalnum()
            and form[-1:].isalnum()
            and form.isprintable()
            and "  " not in form
            and "-" not in form
            and "'" not in form
            and "`" not in form
        ):
            forms: tuple[str, ...] = (form,)  # what _exact_forms gives such a name, without its cache
        else:
            forms = _exact_forms(name)
            if not forms:
                return NOT_FOUND
        text = self.normalized.text
        for form in forms:  # the exact pass, inlined: it decides almost every call
            start = text.find(form)
            while start >= 0:
                end = start + len(form)
                if on_token_boundary(text, start, end):
                    span = (start, end) if end <= self._identity else self.normalized.span_to_original(start, end)
                    return Alignment("grounded", span, 1.0)
                start = text.find(form, start + 1)
        parsed = _Name.parse(name)
        attempts = [(parsed, 1.0)]
        if len(parsed.tokens) > 1 and parsed.tokens[0][0] == "the":
            attempts.append((parsed.without_first(), ARTICLE_DROP_FACTOR))
        for attempt, factor in attempts:
            aligned = self._align_tokens(attempt) or self._align_joined(attempt)
            if aligned is not None:
                span, score = aligned
                verdict: Verdict = "grounded" if score == 1.0 and factor == 1.0 else "fuzzy"
                return Alignment(verdict, self.to_original(*span), score * factor)
        return self._align_rewritten(name, kind)

    def _align_rewritten(self, name: str, kind: str | None) -> Alignment:
        """A date or number written another way (`values`), or a person's name with parts dropped or added (`names`)."""
        value = parse_value(name)
        if value is not None:
            span = self.find_exact(value_forms(value))
            return NOT_FOUND if span is None else Alignment("fuzzy", self.to_original(*span), VALUE_SCORE)
        person = PersonName.parse(name)
        if person is None or not (person.titled or any(person.initials) or is_person_type(kind)):
            return NOT_FOUND
        found = self._align_person(person)
        return NOT_FOUND if found is None else Alignment("fuzzy", self.token_span(*found), NAME_VARIANT_SCORE)

    def _align_person(self, person: PersonName) -> tuple[int, int] | None:
        """First and last token of the one person in this document the name can stand for (`names`), or None."""
        surname = person.tokens[-1]
        if not _has_token(self.normalized.text, surname):
            return None
        doc = self.tokens()
        runs: dict[tuple[str, ...], tuple[int, int]] = {}  # each distinct run of the name → where it first occurs
        for last in doc.positions((surname,)):
            if not self._capitalised(last):
                continue
            first = match_person(person, doc.words, self._capitalised, self._joins_name, last)
            if first is not None:
                runs.setdefault(tuple(doc.words[first : last + 1]), (first, last))
                if len(runs) > MAX_DISTINCT_RUNS:
                    return None
        fullest = one_person(list(runs))  # "J. Smith" where John Smith and James Smith both appear: not guessed
        return None if fullest is None else runs[fullest]

    def align_quote(self, quote: str) -> Alignment:
        """Align an evidence quote (see `evidence.align_quote`)."""
        return evidence.align_quote(self, quote)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """A normalised span of this document as offsets into its original text."""
        return (start, end) if end <= self._identity else self.normalized.span_to_original(start, end)

    def find_exact(self, forms: tuple[str, ...]) -> tuple[int, int] | None:
        """The first occurrence of the first of the name's exact forms found on token boundaries."""
        text = self.normalized.text
        for variant in forms:
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
        doc = self.tokens()
        options = [doc.options(word, capitalised) for word, capitalised in tokens]
        if not all(options):
            return None
        anchor = min(range(len(tokens)), key=lambda k: len(options[k]))
        count, words = len(tokens), doc.words
        best: tuple[tuple[int, int], float] | None = None
        for at in doc.positions(options[anchor]):
            first = at - anchor
            if first < 0 or first + count > len(words):
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
        if len(joined) < MIN_JOINED_CHARS or joined.encode() not in self._squashed():
            return None  # (a non-ASCII separator left in the check only makes this pass miss)
        doc = self.tokens()
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
        doc = self.tokens()
        text = self.normalized.text
        name_cuts = _cuts([word for word, _ in name.tokens], [name.text[a:b] for a, b in name.gaps()])
        doc_cuts = _cuts(
            doc.words[first : last + 1], [text[doc.ends[i - 1] : doc.starts[i]] for i in range(first + 1, last + 1)]
        )
        return all(name_cuts.get(offset) or doc_cuts.get(offset) for offset in name_cuts.keys() ^ doc_cuts.keys())

    def _symbols_agree(self, name: _Name, first: int, last: int) -> tuple[int, int] | None:
        """The normalised span of tokens first..last, widened to the name's edge symbols, if symbols agree.

        Symbols (%, $, &, ...) are not tokens but change the fact: "15%" is not "15 years",
        "AT&T" is not "AT T". Those between the name's tokens must be those between the
        document's; those before or after the name must sit right before or after the run.
        """
        doc = self.tokens()
        text = self.normalized.text
        start, end = doc.starts[first], doc.ends[last]
        if not on_token_boundary(text, start, end):
            return None  # "3" is not in "3,000", "brien" not in "o'brien"
        if SYMBOLS.search(name.text) is None:
            return None if SYMBOLS.search(text, start, end) else (start, end)
        if SYMBOLS.findall(name.text, name.spans[0][0], name.spans[-1][1]) != SYMBOLS.findall(text, start, end):
            return None
        lead = SYMBOLS.findall(name.text, 0, name.spans[0][0])
        if lead:
            gap_start = doc.ends[first - 1] if first > 0 else 0
            found = list(SYMBOLS.finditer(text, gap_start, start))[-len(lead) :]
            if [match.group() for match in found] != lead:
                return None
            start = found[0].start()
        trail = SYMBOLS.findall(name.text, name.spans[-1][1])
        if trail:
            gap_end = doc.starts[last + 1] if last + 1 < len(doc.words) else len(text)
            found = list(SYMBOLS.finditer(text, end, gap_end))[: len(trail)]
            if [match.group() for match in found] != trail:
                return None
            end = found[-1].end()
        return start, end

    def holds_symbols(self, symbols: list[str], first: int, last: int) -> bool:
        """Whether tokens first..last, with the separators around them, hold every symbol of a quote."""
        if not symbols:
            return True
        doc = self.tokens()
        start = doc.ends[first - 1] if first > 0 else 0
        end = doc.starts[last + 1] if last + 1 < len(doc.words) else len(self.normalized.text)
        return not Counter(symbols) - Counter(SYMBOLS.findall(self.normalized.text, start, end))

    def _may_contain(self, tokens: list[Token]) -> bool:
        """Cheap test without tokenising: can every name token match some document token at all?"""
        text = self.normalized.text
        for word, capitalised in tokens:
            folded = drop_accents(word)
            if capitalised or DIGIT.search(word):
                # equal up to accents, so the token itself must be there, whole
                if not (_has_token(text, word) or _has_token(self._folded(), folded)):
                    return False
                continue
            haystack = self._folded()
            if word in text or folded[: max(MIN_STEM_CHARS, len(folded) - 3)] in haystack:
                continue  # there, or an inflection sharing the stem may be
            if len(folded) >= MIN_EDIT_CHARS:
                third = len(folded) // 3  # one edit leaves at least one third intact
                if any(piece in haystack for piece in (folded[:third], folded[third : 2 * third], folded[2 * third :])):
                    continue
            return False
        return True

    def _folded(self) -> str:
        """The normalised document without accents, for substring pre-checks only."""
        if self._folded_text is None:
            text = self.normalized.text
            # accents sit in the non-ASCII runs (a combining mark is one): fold only those
            self._folded_text = text if text.isascii() else _NON_ASCII_RUN.sub(_fold_run, text)
        return self._folded_text

    def _squashed(self) -> bytes:
        """The normalised document in UTF-8 without ASCII separators, for substring pre-checks only."""
        if self._squashed_text is None:
            self._squashed_text = self.normalized.text.encode().translate(None, _ASCII_SEPARATOR_BYTES)
        return self._squashed_text

    def tokens(self) -> DocumentTokens:
        """The document's tokens, split on first use."""
        if self._tokens is None:
            self._tokens = DocumentTokens(self.normalized.text)
        return self._tokens

    def _close(self, index: int) -> bool:
        """Whether document token `index` follows the one before with few enough marks between."""
        doc = self.tokens()
        gap = self.normalized.text[doc.ends[index - 1] : doc.starts[index]]
        return len(gap) <= MAX_SEPARATOR_MARKS or len(gap.replace(" ", "")) <= MAX_SEPARATOR_MARKS

    def _joins_name(self, index: int) -> bool:
        """Whether document token `index` continues the name of the token before it (`names.joins_name`)."""
        doc = self.tokens()
        return joins_name(self.normalized.text[doc.ends[index - 1] : doc.starts[index]], doc.words[index - 1])

    def holds_token(self, word: str) -> bool:
        """Whether the normalised document has `word` as a whole token."""
        return _has_token(self.normalized.text, word)

    def _capitalised(self, index: int) -> bool:
        """Whether document token `index` starts with a capital letter in the original text."""
        norm = self.normalized
        return is_capital(norm.original[norm.offsets[self.tokens().starts[index]]])

    def token_span(self, first: int, last: int) -> tuple[int, int]:
        doc = self.tokens()
        return self.to_original(doc.starts[first], doc.ends[last])


@lru_cache(maxsize=1 << 16)
def _exact_forms(name: str) -> tuple[str, ...]:
    """The forms the exact pass looks for (see `name_variants`); () for a blank name."""
    key = normalize_name(name)
    return name_variants(key) if key else ()


class _Name:
    """A name's normalised text and its tokens, each with its span and capitalisation as written."""

    __slots__ = ("keep_case", "spans", "text", "tokens")

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
        tokens = [(match.group(), is_capital(name[norm.offsets[match.start()]])) for match in matches]
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
        fragment = min(len(left), len(right)) <= 2 or bool(DIGIT.search(left) or DIGIT.search(right))
        cuts[offset] = fragment or gaps[k - 1].strip() != ""
    return cuts


def _has_token(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` as a whole token."""
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not is_word_char(text[start - 1])) and (end == len(text) or not is_word_char(text[end])):
            return True
        start = text.find(word, start + 1)
    return False


def _fold_run(match: re.Match[str]) -> str:
    return drop_accents(match.group())
