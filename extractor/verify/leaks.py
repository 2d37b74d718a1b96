"""Which names, found only in other documents, are a leak: specific enough that the model could not have made them up.

A name an answer gives that its own document lacks is looked up in the job's other
documents (`index.NameScanner`). Finding it there proves a leak only if the model could not
plausibly have written it on its own; `leak_rule` says how each name is looked up:

- never a leak (ungrounded at worst): a blank name; a type word — the spec's own types and
  `TYPE_WORDS` ("place", "person", "company", their plurals); a date or number that is not
  specific (`values.Value.specific`: a full date is, a number needs at least 3 significant
  digits and must not be a bare year: "12", "1954", "1.5 million" are not leaks by value);
- "word", a name of one token ("Paris", "William", "Place"): it counts in another document
  only where that document writes it capitalised, not at a sentence start, and not as the
  first word of a longer capitalised name ("William" in "William Shakespeare" is a first
  name there, "place" in "took place" is a common word); where the document's case is not
  known (text reshaped by normalisation) every occurrence counts. And it is not a leak when
  it counts in more than `MAX_SHARE` of the job's documents (and more than `MIN_SHARED`):
  a word that common is the language's, not one document's;
- "value", a specific date or number: found by every written form of its value
  (`values.value_forms`: "1921-02-14" in a document saying "14 February 1921"), with the
  same `MAX_SHARE` limit;
- "person", a person's name (a person's type, or untyped, or with an initial or an honorific:
  `names`): also found where another document holds the full name it stands for ("Ella M.
  Morris" and "Ella Morris" in "Ella Mabel Morris"); an honorific and a surname alone ("Dr.
  Morris") count like a one-token name;
- "name", everything else (names of two or more tokens): found as written, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class LeakRule:
    """How one name not found in its own document is looked up in the others."""

    kind: str  # "name" | "word" | "value" | "person"
    value: Value | None = None
    person: PersonName | None = None

    @property
    def share_limited(self) -> bool:
        return self.kind in ("word", "value")


NAME = LeakRule("name")
WORD = LeakRule("word")


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
    tokens = TOKEN.findall(key)
    person = PersonName.parse(name)
    if person is not None and (is_person_type(kind) or person.titled or any(person.initials)):
        return LeakRule("person", person=person)
    if len(tokens) == 1 or (len(tokens) == 2 and tokens[1] == "s" and key.endswith("'s")):
        return WORD
    return NAME
