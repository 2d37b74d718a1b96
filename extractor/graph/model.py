"""The staging graph's data model: what a commit writes, keyed so that a rollback can undo it exactly.

```
(:Document {doc_id, sha256, path, title, jobs, sha256s, paths, titles})
(:Entity:<TYPE> {key, name, type, jobs, names})           key = "<TYPE>:<normalised name>"
(:Entity)-[:MENTIONED_IN {job, name, span}]->(:Document)
(:Entity)-[:<RELATION> {job, doc_id, evidence}]->(:Entity)
(:Entity)-[:RELATED_TO {job, doc_id, evidence, original_type}]->(:Entity)
```

Provenance:

- Every relationship belongs to exactly one job (`job`); nothing else ever shares it.
- `Document` and `Entity` nodes are shared: `jobs` lists the jobs that contributed them, in
  commit order. A rollback removes the job from `jobs`, and deletes the node when none is left.
- A document's `sha256`, `path` and `title` are those seen by the latest contributing job;
  `sha256s`, `paths` and `titles` keep every contributing job's values, aligned with `jobs`, so
  a rollback can restore what the remaining jobs saw.
- An entity's `names` keeps, aligned with `jobs`, the smallest surface form (in the store's
  string order) each job used for it, and `name` is the smallest of those, so it does not
  depend on which job came first; a rollback drops the job's entry and takes the smallest of
  the rest. Each mention keeps its own `name` and `span` (character offsets in the document).
  Every entity a job writes has at least one mention from that job (a relation end that is
  not among a document's entities gets a mention without a span).
- `type` is the canonical type (`canonical_type`): the sanitised label when there is one.

Indexes: `Entity.key` and `Document.doc_id` (unique constraints on Neo4j), and `doc_id` on each
relationship type, which is how a rollback finds a job's relationships.

Staging stays apart from production: on FalkorDB in a graph of its own (`extractor_staging`,
or the GRAPH of `falkordb://HOST:PORT/GRAPH`); on Neo4j Enterprise in a database of its own
(`--database`); Neo4j Community serves one database, so run a second instance for staging.

Labels and relationship types come only from the spec's allow-list (`GraphVocabulary`),
sanitised to `[A-Z][A-Z0-9_]*`: an entity whose type is not allowed is only an `:Entity`,
a relation whose type is not allowed becomes `RELATED_TO` (the fallback) and keeps the type
the model gave in `original_type`. Everything a model says is a parameter value, never
Cypher text. The exactness of rollback assumes jobs sharing an entity agree on whether its
type is an allowed label (they do when they share a spec).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from extractor.verify.normalize import normalize_name

LABEL = re.compile(r"[A-Z][A-Z0-9_]*\Z")
DOCUMENT_LABEL = "Document"
ENTITY_LABEL = "Entity"
MENTION_TYPE = "MENTIONED_IN"
# Relationship types the model itself uses: a spec may not claim them for relations.
RESERVED_TYPES = frozenset({MENTION_TYPE})
_NOT_LABEL_CHAR = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True)
class EntityMention:
    name: str
    type: str
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class RelationFact:
    source: str
    source_type: str
    type: str
    target: str
    target_type: str
    evidence: str = ""


@dataclass(frozen=True)
class CommitDocument:
    doc_id: str
    sha256: str
    path: str
    title: str
    entities: tuple[EntityMention, ...] = ()
    relations: tuple[RelationFact, ...] = ()


@lru_cache(maxsize=4096)
def sanitize_label(value: str) -> str | None:
    """`value` as a label or relationship type `[A-Z][A-Z0-9_]*` ("works for" → WORKS_FOR), or None."""
    if not isinstance(value, str):
        return None
    decomposed = unicodedata.normalize("NFKD", value)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    label = _NOT_LABEL_CHAR.sub("_", ascii_only).strip("_")
    return label if LABEL.match(label) else None


@lru_cache(maxsize=4096)
def canonical_type(type: str) -> str:
    """The one spelling of an entity type kept in keys and on nodes: its label, else its trimmed upper case."""
    label = sanitize_label(type)
    if label is not None:
        return label
    return " ".join(unicodedata.normalize("NFKC", str(type)).split()).upper()


@lru_cache(maxsize=1 << 17)
def entity_key(type: str, name: str) -> str:
    """The key an entity is merged on: canonical type + normalised name ("PERSON:ada lovelace")."""
    return f"{canonical_type(type)}:{normalize_name(name)}"


@lru_cache(maxsize=1 << 17)
def has_name(name: str) -> bool:
    """Whether a name normalises to something (an empty key would merge unrelated entities)."""
    return isinstance(name, str) and normalize_name(name) != ""


@dataclass(frozen=True)
class GraphVocabulary:
    """The allow-list: the only labels and relationship types a statement may name."""

    entity_labels: frozenset[str]
    relationship_types: frozenset[str]
    fallback_relationship: str = "RELATED_TO"

    def __post_init__(self) -> None:
        object.__setattr__(self, "entity_labels", frozenset(self.entity_labels))
        object.__setattr__(self, "relationship_types", frozenset(self.relationship_types))
        for name in (*self.entity_labels, *self.relationship_types, self.fallback_relationship):
            if not isinstance(name, str) or not LABEL.match(name):
                raise ValueError(f"graph vocabulary: {name!r} is not a label of the form [A-Z][A-Z0-9_]*")
        reserved = (self.relationship_types | {self.fallback_relationship}) & RESERVED_TYPES
        if reserved:
            raise ValueError(f"graph vocabulary: {sorted(reserved)} is reserved for mentions")

    @classmethod
    def from_types(
        cls, entity_types: Iterable[str], relation_types: Iterable[str], fallback: str = "RELATED_TO"
    ) -> GraphVocabulary:
        """Sanitise a spec's type names into an allow-list, dropping those that cannot be labels."""
        labels = {label for label in map(sanitize_label, entity_types) if label}
        types = {t for t in map(sanitize_label, relation_types) if t and t not in RESERVED_TYPES}
        return cls(frozenset(labels), frozenset(types), fallback)

    def label_for(self, type: str) -> str | None:
        """The extra label for an entity type, when the allow-list has it."""
        label = sanitize_label(type)
        return label if label in self.entity_labels else None

    def relationship_for(self, type: str) -> tuple[str, bool]:
        """(relationship type, whether it is the fallback) for a relation type the model gave."""
        label = sanitize_label(type)
        if label is not None and label in self.relationship_types:
            return label, False
        return self.fallback_relationship, True

    @property
    def all_relationship_types(self) -> tuple[str, ...]:
        """Every relationship type a relation may be written as, sorted."""
        return tuple(sorted(self.relationship_types | {self.fallback_relationship}))
