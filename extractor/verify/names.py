"""Person names as models rewrite them: middle names dropped or cut to an initial, honorifics added or dropped.

`PersonName.parse` reads an answer's name as a person's name when, after honorifics ("Dr.",
"Sir", "Prof." ... `HONORIFICS`), it is two to four capitalised tokens with no lowercase
word between them ("Bank of America" is not one). It then grounds, as `fuzzy` with
`NAME_VARIANT_SCORE`, on a run of capitalised document tokens that is the same person under
these rules (`match_person`), the span covering the document's full name:

- the first and the last token are equal to the document's (equal, not close: "John Smith"
  is not "Jane Smith", "Smith" is not "Smyth"); a first token written as an initial ("J.
  Smith") matches a document first name starting with that letter;
- every middle token of the answer is in the document's run, in order: equal, or an initial
  of it ("John R. Smith" on "John Ronald Smith"); the document may hold up to
  `MAX_EXTRA_TOKENS` middle tokens the answer left out ("Ella Morris" on "Ella Mabel Morris");
- honorifics only: "Dr. Morris" is "Morris", the document's run ending in "Morris";
- a run does not reach back over a comma or a sentence's full stop ("Department, Bohigian",
  "College. Weng"), a function word ("The Robert Burns" is no "T. Burns") or an honorific;
- the rule must point at one person (`one_person`): the runs that match must all be parts of
  the fullest one ("Morris" and "Ella Morris" of "Ella Mabel Morris"); when they are different
  names ("John Smith" and "James Smith" for "J. Smith"), nothing grounds.

Every rule reads a bounded number of tokens around each occurrence of the surname, so the
cost is linear in the document. The same rules find a reworded person in other documents
(the leak scan); there the document's case is not known, so every token counts as capitalised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

HONORIFICS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "doctor",
        "prof",
        "professor",
        "sir",
        "dame",
        "lord",
        "lady",
        "rev",
        "reverend",
        "fr",
        "father",
        "sr",
        "sister",
        "st",
        "saint",
        "capt",
        "captain",
        "col",
        "colonel",
        "gen",
        "general",
        "lt",
        "sgt",
        "president",
        "senator",
        "sen",
        "rep",
        "judge",
        "justice",
        "king",
        "queen",
        "prince",
        "princess",
        "gov",
        "governor",
        "mayor",
        "hon",
        "rabbi",
        "imam",
        "pastor",
        "admiral",
        "commander",
        "major",
        "bishop",
        "archbishop",
        "cardinal",
        "pope",
        "emperor",
        "empress",
        "chancellor",
        "minister",
        "chief",
    }
)
NAME_VARIANT_SCORE = 0.9
# Middle tokens a document may hold that the answer left out ("Ella [Mabel] Morris").
MAX_EXTRA_TOKENS = 2
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name as an answer wrote it: lowercase tokens, which are initials, whether honorifics came first."""

    tokens: tuple[str, ...]
    initials: tuple[bool, ...]
    titled: bool

    @classmethod
    def parse(cls, name: str) -> PersonName | None:
        return _parse(name)

    @property
    def surname_only(self) -> bool:
        return len(self.tokens) == 1


@lru_cache(maxsize=1 << 14)
def _parse(name: str) -> PersonName | None:
    if len(name) > 80 or (not name[:1].isalpha() and name[:1] not in "\"'("):
        return None
    words = _WORD.findall(name)
    if not words or len(words) > 6:
        return None
    titled = False
    while words and words[0].casefold().rstrip(".") in HONORIFICS and len(words) > 1:
        words = words[1:]
        titled = True
    if not all(w[:1].isupper() for w in words) or any(c.isdigit() for w in words for c in w):
        return None
    if len(words) == 1:
        return _surname_only(words[0]) if titled else None
    if len(words) > 4:
        return None
    initials = tuple(len(w) == 1 for w in words)
    if initials[-1] or _ROMAN.fullmatch(words[-1].casefold()):
        return None  # "Smith J." is another order; not read
    return PersonName(tuple(w.casefold() for w in words), initials, titled)


def _surname_only(word: str) -> PersonName | None:
    """ "Dr. Morris" as the surname it names; not a numeral ("Dr. II") or a single letter."""
    folded = word.casefold()
    return None if len(word) < 2 or _ROMAN.fullmatch(folded) else PersonName((folded,), (False,), True)


PERSON_TYPES = frozenset({"person", "per", "people", "human", "individual"})


def is_person_type(kind: str | None) -> bool:
    """Whether an entity type names people ("PERSON", "PER"), or is absent (an untyped name may be one)."""
    return kind is None or kind.casefold() in PERSON_TYPES


# Capitalised at a sentence start, never a given name: a run of a name does not reach back over them.
_NOT_GIVEN = frozenset(
    {
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "and",
        "for",
        "to",
        "by",
        "with",
        "from",
        "as",
        "but",
        "or",
        "after",
        "before",
        "when",
        "while",
        "during",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "its",
        "their",
        "our",
        "my",
        "he",
        "she",
        "they",
        "it",
        "we",
        "i",
        "earlier",
        "later",
        "then",
        "also",
        "both",
        "under",
        "since",
        "until",
    }
)
_ROMAN = re.compile(r"[ivxlcdm]+")


def joins_name(gap: str, before: str) -> bool:
    """Whether the text between two tokens keeps them in one name: spaces, a hyphen or apostrophe, or the dot
    of an initial or an honorific (`before` is the token before the gap: "R. Smith", not "College. Weng")."""
    if len(gap) > 3:
        return False
    mark = gap.replace(" ", "")
    if mark == ".":
        return len(before) == 1 or before in HONORIFICS
    return mark in ("", "-", "'", "’")


def match_person(
    person: PersonName, words: list[str], capitalised: Callable[[int], bool], close: Callable[[int], bool], last: int
) -> int | None:
    """The first token of a document run ending at `last` (a token equal to the surname) naming `person`, or None.

    `words` are the document's lowercase tokens; `capitalised(i)` says whether token i was written
    with a capital (always True where case is unknown); `close(i)` whether token i follows token
    i - 1 within one name (`joins_name`: "Department, Bohigian" is two names).
    The run found is the longest before `last` that these rules allow; `one_person` decides
    whether the runs of a document name one person.
    """
    if person.surname_only:
        first = last
        while (
            first > 0
            and close(first)
            and capitalised(first - 1)
            and words[first - 1] not in HONORIFICS
            and words[first - 1] not in _NOT_GIVEN
        ):
            first -= 1
        return first
    given, initial = person.tokens[0], person.initials[0]
    middles = list(zip(person.tokens[1:-1], person.initials[1:-1], strict=True))
    lowest = max(0, last - 1 - len(middles) - MAX_EXTRA_TOKENS)
    for first in range(last - 1, lowest - 1, -1):
        if not (close(first + 1) and capitalised(first)) or words[first] in _NOT_GIVEN or words[first] in HONORIFICS:
            return None
        word = words[first]
        if (word == given if not initial else word[:1] == given) and _middles_fit(middles, words[first + 1 : last]):
            return first
    return None


MAX_DISTINCT_RUNS = 8  # more different runs ending in one surname than this: too many people to tell apart


def one_person(runs: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The fullest of a document's runs for one name if they can all be one person, else None.

    Runs are one person when each one's words are among the fullest one's ("Ella Morris" and
    "Morris" in "Ella Mabel Morris"); "John Smith" and "James Smith" are two.
    """
    distinct = list(dict.fromkeys(runs))
    if not distinct or len(distinct) > MAX_DISTINCT_RUNS:
        return None
    fullest = max(distinct, key=len)
    words = set(fullest)
    return fullest if all(set(run) <= words for run in distinct) else None


def _middles_fit(middles: list[tuple[str, bool]], between: list[str]) -> bool:
    """Whether the answer's middle tokens appear in order among the document's, with at most MAX_EXTRA_TOKENS
    left over.
    """
    if len(between) - len(middles) > MAX_EXTRA_TOKENS or len(between) < len(middles):
        return False
    at = 0
    for token, initial in middles:
        while at < len(between) and not (between[at] == token or (initial and between[at][:1] == token)):
            at += 1
        if at == len(between):
            return False
        at += 1
    return True
