"""Which names, found only in other documents, are a leak: specific enough that the model could not have made them up.

A name an answer gives that its own document lacks is looked up in the job's other
documents (`index.NameScanner`). Finding it there proves a leak only if the model could not
plausibly have written it on its own; `leak_rule` says how each name is looked up:

- never a leak (ungrounded at worst): a blank name; a type word — the spec's own types and
  `TYPE_WORDS` ("place", "person", "company", their plurals); a date or number that is not
  specific (`values.Value.specific`: a full date is, a number needs at least 3 significant
  digits and must not be a bare year: "12", "1954", "1.5 million", "18th" are not leaks by value);
- "word", a name of one token ("Paris", "William", "Crupet"): it counts in another document
  only where that document writes it capitalised ("place" in "took place" is a common word).
  Where a capital says little, a hit is *weak* or nothing (`index._written_as_name`, with
  wordfreq's English frequencies, `common_word`):
  - as the first word of a longer capitalised name ("Carl" in "Carl Moland", "William" in
    "William Shakespeare") it is a first name: weak, and once the job writes it so anywhere,
    every hit of it in the job is weak;
  - at a sentence start, where any word is capitalised, it counts only if it is no word of
    the language ("Crupet is a village": yes; "Place names", "Meanwhile": nothing);
  - elsewhere, a word among the language's ~3,000 commonest ("Paris", "John") is weak.
  A model can write a first name or a common word unprompted, so weak hits never make a
  leak on their own, not even several of them ("Peter" and "John" both in "Peter and John
  …"): a weak hit is a leak only where something of the same answer is found outright (not
  weakly) in that same document: another name, a relation end, an evidence quote
  (`corroborated`). Where the document's case is not known (text reshaped by normalisation)
  every occurrence counts. And it is not a leak when it counts in more than `MAX_SHARE` of
  the job's documents (and more than `MIN_SHARED`): a word that common is the language's,
  not one document's;
- "value", a specific date or number: found by every written form of its value
  (`values.value_forms`: "1921-02-14" in a document saying "14 February 1921"), with the
  same `MAX_SHARE` limit;
- "person", a person's name (a person's type, or untyped, or with an initial or an honorific:
  `names`): also found where another document holds the full name it stands for ("Ella M.
  Morris" and "Ella Morris" in "Ella Mabel Morris"); an honorific and a surname alone ("Dr.
  Morris") count like a one-token name;
- "name", everything else (names of two or more tokens): found as written, as before; a name
  of initials only ("S.A.", "U.S.") is never a leak;
- an evidence quote that is in no document of its own is looked up as written (`quote_rule`)
  only if it could only be copied: at least `QUOTE_TOKENS` tokens with a capital or a digit
  after its first letter ("born in 1894 in Leeds", not "He was born"), with the `MAX_SHARE`
  limit.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

from extractor.verify.names import PersonName, is_person_type
from extractor.verify.normalize import TOKEN, normalize_name
from extractor.verify.values import Value, parse_value

# Generic nouns small models write as entities ("place", "Person"): never a leak, in any document.
TYPE_WORDS = frozenset(
    {
        "place",
        "location",
        "person",
        "people",
        "organization",
        "organisation",
        "company",
        "city",
        "country",
        "date",
        "time",
        "number",
        "event",
        "work",
        "thing",
        "entity",
        "name",
        "group",
        "state",
        "region",
        "area",
        "year",
        "day",
        "month",
        "other",
        "unknown",
        "none",
        "null",
        "n/a",
        "document",
        "text",
        "article",
        "man",
        "woman",
        "men",
        "women",
        "child",
        "family",
        "team",
        "band",
        "album",
        "song",
        "film",
        "book",
        "river",
        "town",
        "village",
        "school",
        "university",
        "church",
        "party",
        "government",
        "army",
        "war",
        "award",
    }
)
# A one-token name or a value found in more than this share of the job's documents (and in more than
# MIN_SHARED of them) is the language's, not one document's: not a leak.
MAX_SHARE = 0.10
MIN_SHARED = 3


# How common a word is, on wordfreq's Zipf scale (log10 of its uses per billion words) in English:
SENTENCE_START_ZIPF = 3.0  # a capitalised word at a sentence start counts only below this, 1 per million words: no
#                            word of wordfreq's ~29,000-word "small" English list ("Crupet", "Ravenna"; not "Rufus")
COMMON_ZIPF = 4.5  # at or above this, 30 per million words (the language's ~3,000 commonest: "Paris" 4.8, "John" 5.4,
#                    "William" 4.9; not "Carl" 4.2, "Morris" 4.2), a capitalised word elsewhere is a weak hit
QUOTE_TOKENS = 3  # an evidence quote shorter than this is looked up nowhere
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)")


@lru_cache(maxsize=1 << 16)
def zipf(word: str) -> float:
    """How common `word` is in English: wordfreq's Zipf frequency in its "small" list (0.0: not in it)."""
    from wordfreq import zipf_frequency  # imported on the first guarded hit: 0.3 s that most runs never pay

    return float(zipf_frequency(word, "en", wordlist="small"))


def common_word(word: str, at_sentence_start: bool) -> bool:
    """Whether `word` is common enough that its capital proves little: any word of the language at a sentence start,
    one of the commonest elsewhere."""
    return zipf(word) >= (SENTENCE_START_ZIPF if at_sentence_start else COMMON_ZIPF)


@dataclass(frozen=True, slots=True)
class LeakRule:
    """How one name not found in its own document is looked up in the others."""

    kind: str  # "name" | "word" | "value" | "person" | "quote"
    value: Value | None = None
    person: PersonName | None = None

    @property
    def share_limited(self) -> bool:
        return self.kind in ("word", "value", "quote")


NAME = LeakRule("name")
WORD = LeakRule("word")
QUOTE = LeakRule("quote")


def leak_rule(name: str, kind: str | None, schema_words: frozenset[str]) -> LeakRule | None:
    """How `name` (an entity of type `kind`) is looked up in other documents, or None: it is never a leak."""
    key = normalize_name(name).strip()
    if not key:
        return None
    bare = key.strip(".,;:!?\"'()[]{} ")
    if bare in schema_words or bare in TYPE_WORDS or (bare.endswith("s") and bare[:-1] in TYPE_WORDS):
        return None
    value = parse_value(name) or (parse_value(bare[:-2]) if bare.endswith("'s") else None)  # "1921's"
    if value is not None:
        return LeakRule("value", value=value) if value.specific else None
    ordinal = _ORDINAL.fullmatch(bare)
    if ordinal is not None and ((number := parse_value(ordinal.group(1))) is None or not number.specific):
        return None  # "18th", "1st": a small number
    tokens = TOKEN.findall(key)
    person = PersonName.parse(name)
    if person is not None and (is_person_type(kind) or person.titled or any(person.initials)):
        return LeakRule("person", person=person)
    if len(tokens) == 1 or (len(tokens) == 2 and tokens[1] == "s" and key.endswith("'s")):
        return WORD
    if all(len(token) == 1 for token in tokens):
        return None  # initials only: "S.A.", "U.S."
    return NAME


def quote_rule(quote: str) -> LeakRule | None:
    """How an evidence quote that is not in its own document is looked up in the others, or None: it is not."""
    stripped = quote.strip()
    if len(TOKEN.findall(normalize_name(stripped))) < QUOTE_TOKENS:
        return None
    if not any(c.isupper() or c.isdigit() for c in stripped[1:]):
        return None  # "He was born in": any document may say it
    return QUOTE


def corroborated(
    weak: dict[str, set[str]], found: dict[str, set[str]], elsewhere: AbstractSet[str] = frozenset()
) -> dict[str, set[str]]:
    """Per name of one answer, the documents that make its weak hits a leak: those where another name of the same
    answer was found outright.

    `weak[name]` and `found[name]` are the other documents holding each name weakly and outright; `elsewhere` the
    documents holding the answer's other findings (relation ends, evidence quotes). A first name next to a real leak
    from the same document came from there too; invented first names that happen to be somewhere (even two of them
    in one document: "Peter and John") are no leak.
    """
    result: dict[str, set[str]] = {}
    for name, documents in weak.items():
        others = set(elsewhere)
        for other, where in found.items():
            if other != name:
                others |= where
        result[name] = documents & others
    return result
