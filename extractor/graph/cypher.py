"""Every Cypher statement the graph stores send, in one place, and a listing of them with example parameters.

Values always travel as parameters. Labels and relationship types cannot be parameters in
Cypher, so statements that name one are built per allowed name from a template, and the
name must match `[A-Z][A-Z0-9_]*` (the allow-list in `GraphVocabulary` is sanitised to it).
The statements are the same in both dialects except the schema statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from extractor.graph.model import LABEL, GraphVocabulary

Dialect = Literal["neo4j", "falkordb"]
DIALECTS: tuple[Dialect, ...] = ("neo4j", "falkordb")


@dataclass(frozen=True)
class Statement:
    name: str
    query: str


def _identifier(name: str) -> str:
    """A label or relationship type checked against the allow-list form before it enters a query."""
    if not isinstance(name, str) or not LABEL.match(name):
        raise ValueError(f"{name!r} is not an allowed label or relationship type")
    return name


# (label, property) of every key a MERGE looks up
INDEXED_KEYS: tuple[tuple[str, str], ...] = (("Entity", "key"), ("Document", "doc_id"))


def schema_statements(dialect: Dialect) -> tuple[Statement, ...]:
    """The indexes every MERGE relies on, one per INDEXED_KEYS (Neo4j: uniqueness constraints, which bring
    their index).
    """
    if dialect == "neo4j":
        return tuple(
            Statement(
                f"create_{label.lower()}_{key}_constraint",
                f"CREATE CONSTRAINT extractor_{label.lower()}_{key} IF NOT EXISTS "
                f"FOR (n:{label}) REQUIRE n.{key} IS UNIQUE",
            )
            for label, key in INDEXED_KEYS
        )
    return tuple(
        Statement(f"create_{label.lower()}_{key}_index", f"CREATE INDEX FOR (n:{label}) ON (n.{key})")
        for label, key in INDEXED_KEYS
    )


@cache
def relationship_index(dialect: Dialect, rel_type: str) -> Statement:
    """The index a rollback finds a relationship type's rows by: `doc_id` (then filtered on `job`)."""
    name = _identifier(rel_type)
    if dialect == "neo4j":
        return Statement(
            f"create_relationship_doc_id_index:{name}",
            f"CREATE INDEX extractor_{name.lower()}_doc_id IF NOT EXISTS FOR ()-[r:{name}]-() ON (r.doc_id)",
        )
    return Statement(f"create_relationship_doc_id_index:{name}", f"CREATE INDEX FOR ()-[r:{name}]-() ON (r.doc_id)")


# A document gets the job appended to `jobs` and its values appended to the aligned lists,
# once per job, so re-running a chunk changes nothing.
UPSERT_DOCUMENTS = Statement(
    "upsert_documents",
    """UNWIND $rows AS row
MERGE (d:Document {doc_id: row.doc_id})
WITH d, row
WHERE d.jobs IS NULL OR NOT $job IN d.jobs
SET d.jobs = coalesce(d.jobs, []) + [$job],
    d.sha256s = coalesce(d.sha256s, []) + [row.sha256],
    d.paths = coalesce(d.paths, []) + [row.path],
    d.titles = coalesce(d.titles, []) + [row.title],
    d.sha256 = row.sha256,
    d.path = row.path,
    d.title = row.title""",
)


@cache
def upsert_entities(label: str | None) -> Statement:
    """One row per entity key (unique within the statement) with its mentions in this chunk.

    `names` keeps, aligned with `jobs`, the smallest surface form each job used, and `name` is
    the smallest of those: a rollback only drops the job's entry, it never rescans mentions.
    (The coalesce is for FalkorDB, which evaluates range() even in a CASE branch not taken.)

    A labelled entity new to the graph is created with its label (the FOREACH) rather than merged bare and labelled
    after: FalkorDB adds a label to an existing node slowly, at a cost that grows with the graph (`SET e:Label` on
    1,500 just-merged nodes took 0.9 s among 10,000 entities and 29 s among 40,000), which made a night's commit
    quadratic; created with the label, the same nodes cost 0.15 s. `SET e:Label` stays for a node an earlier job
    made under another spec, and changes nothing on the others.
    """
    set_label = f"e:{_identifier(label)},\n    " if label is not None else ""
    find = (
        f"""OPTIONAL MATCH (found:Entity {{key: row.key}})
FOREACH (_ IN CASE WHEN found IS NULL THEN [1] ELSE [] END | CREATE (:Entity:{_identifier(label)} {{key: row.key}}))
WITH row
MATCH (e:Entity {{key: row.key}})"""
        if label is not None
        else "MERGE (e:Entity {key: row.key})"
    )
    return Statement(
        f"upsert_entities:{label}" if label else "upsert_entities",
        f"""UNWIND $rows AS row
{find}
WITH e, row, reduce(smallest = null, mention IN row.mentions |
        CASE WHEN smallest IS NULL OR mention.name < smallest THEN mention.name ELSE smallest END) AS here
WITH e, row,
     CASE WHEN e.jobs IS NULL THEN [$job] WHEN $job IN e.jobs THEN e.jobs ELSE e.jobs + [$job] END AS jobs,
     CASE WHEN e.jobs IS NULL THEN [here]
          WHEN NOT $job IN e.jobs THEN e.names + [here]
          ELSE [i IN range(0, size(coalesce(e.jobs, [])) - 1) |
                CASE WHEN e.jobs[i] = $job AND here < e.names[i] THEN here ELSE e.names[i] END] END AS names
SET {set_label}e.type = row.type,
    e.jobs = jobs,
    e.names = names,
    e.name = reduce(smallest = null, name IN names |
        CASE WHEN smallest IS NULL OR name < smallest THEN name ELSE smallest END)
WITH e, row
UNWIND row.mentions AS mention
MATCH (d:Document {{doc_id: mention.doc_id}})
MERGE (e)-[m:MENTIONED_IN {{job: $job}}]->(d)
SET m.name = mention.name,
    m.span = mention.span""",
    )


@cache
def merge_relationships(rel_type: str, fallback: bool) -> Statement:
    """Relations of one type; a fallback relation keeps the model's type in `original_type`."""
    extra = ", original_type: row.original_type" if fallback else ""
    kind = "merge_fallback_relationships" if fallback else "merge_relationships"
    return Statement(
        f"{kind}:{rel_type}",
        f"""UNWIND $rows AS row
MATCH (a:Entity {{key: row.source}})
MATCH (b:Entity {{key: row.target}})
MERGE (a)-[r:{_identifier(rel_type)} {{job: $job, doc_id: row.doc_id, evidence: row.evidence{extra}}}]->(b)""",
    )


JOB_DOCUMENTS = Statement(
    "job_documents",
    """MATCH (d:Document)
WHERE $job IN d.jobs
RETURN d.doc_id AS doc_id
ORDER BY doc_id""",
)

RELATIONSHIP_TYPES = Statement(
    "relationship_types",
    """CALL db.relationshipTypes() YIELD relationshipType
RETURN relationshipType""",
)

# Rollback of one chunk of a job's documents, in this order: its relationships (one statement
# per type the job wrote, through the doc_id index), its entities, its mentions, its documents. Deleting is
# kept out of the statements that SET: FalkorDB drops the SETs of a query that goes on to
# filter rows and DETACH DELETE some of them.


@cache
def rollback_relationships(rel_type: str) -> Statement:
    """Delete the job's relationships of one type written for these documents."""
    return Statement(
        f"rollback_relationships:{rel_type}",
        f"""UNWIND $doc_ids AS doc_id
MATCH ()-[r:{_identifier(rel_type)} {{doc_id: doc_id}}]->()
WHERE r.job = $job
DELETE r""",
    )


# The job leaves each entity it mentions in these documents at once, with its entry in the
# aligned `names` (its mentions in later chunks go with those chunks, or with the entity).
ROLLBACK_ENTITIES = Statement(
    "rollback_entities",
    """UNWIND $doc_ids AS doc_id
MATCH (:Document {doc_id: doc_id})<-[:MENTIONED_IN {job: $job}]-(e:Entity)
WITH DISTINCT e
WHERE $job IN e.jobs
WITH e, [i IN range(0, size(e.jobs) - 1) WHERE e.jobs[i] <> $job] AS keep
WITH e, [i IN keep | e.jobs[i]] AS jobs, [i IN keep | e.names[i]] AS names
SET e.jobs = jobs,
    e.names = names,
    e.name = reduce(smallest = null, name IN names |
        CASE WHEN smallest IS NULL OR name < smallest THEN name ELSE smallest END)""",
)

# An entity no job is left on goes, with whatever the job still has attached to it in later
# chunks: nothing else can be attached to a node only this job contributed.
DELETE_ORPHAN_ENTITIES = Statement(
    "delete_orphan_entities",
    """UNWIND $doc_ids AS doc_id
MATCH (:Document {doc_id: doc_id})<-[:MENTIONED_IN {job: $job}]-(e:Entity)
WITH DISTINCT e
WHERE size(e.jobs) = 0
DETACH DELETE e""",
)

DELETE_MENTIONS = Statement(
    "delete_mentions",
    """UNWIND $doc_ids AS doc_id
MATCH (:Document {doc_id: doc_id})<-[m:MENTIONED_IN {job: $job}]-(:Entity)
DELETE m""",
)

ROLLBACK_DOCUMENTS = Statement(
    "rollback_documents",
    """UNWIND $doc_ids AS doc_id
MATCH (d:Document {doc_id: doc_id})
WHERE $job IN d.jobs
WITH d, [i IN range(0, size(d.jobs) - 1) WHERE d.jobs[i] <> $job] AS keep
WITH d, [i IN keep | d.jobs[i]] AS jobs, [i IN keep | d.sha256s[i]] AS sha256s,
     [i IN keep | d.paths[i]] AS paths, [i IN keep | d.titles[i]] AS titles
SET d.jobs = jobs,
    d.sha256s = sha256s,
    d.paths = paths,
    d.titles = titles,
    d.sha256 = last(sha256s),
    d.path = last(paths),
    d.title = last(titles)""",
)

DELETE_ORPHAN_DOCUMENTS = Statement(
    "delete_orphan_documents",
    """UNWIND $doc_ids AS doc_id
MATCH (d:Document {doc_id: doc_id})
WHERE size(d.jobs) = 0
DETACH DELETE d""",
)

ROLLBACK_NODES: tuple[Statement, ...] = (
    ROLLBACK_ENTITIES,
    DELETE_ORPHAN_ENTITIES,
    DELETE_MENTIONS,
    ROLLBACK_DOCUMENTS,
    DELETE_ORPHAN_DOCUMENTS,
)


def rollback_chunk(rel_types: Iterable[str]) -> tuple[Statement, ...]:
    """The statements that undo one chunk of a job, given the relationship types it may have written.

    Those its commit.json records, or, without that record, every type in the graph: each type
    costs a statement, which Neo4j plans the first time it runs.
    """
    return (*(rollback_relationships(t) for t in sorted(rel_types)), *ROLLBACK_NODES)


DUMP_NODES = Statement(
    "dump_nodes",
    """MATCH (n)
RETURN labels(n) AS labels, properties(n) AS properties""",
)

# An end is named by its labels and key (Entity.key or Document.doc_id; the node list has the
# rest): all its properties, for every relationship, made a dump of a night's graph mostly parsing.
DUMP_RELATIONSHIPS = Statement(
    "dump_relationships",
    """MATCH (a)-[r]->(b)
RETURN labels(a) AS source_labels, a.key AS source_key, a.doc_id AS source_doc_id,
       CASE WHEN a.key IS NULL AND a.doc_id IS NULL THEN properties(a) END AS source,
       type(r) AS type, properties(r) AS properties,
       labels(b) AS target_labels, b.key AS target_key, b.doc_id AS target_doc_id,
       CASE WHEN b.key IS NULL AND b.doc_id IS NULL THEN properties(b) END AS target""",
)


_EXAMPLE_JOB = "20260101T000000Z-0a1b2c3d"
_EXAMPLE_DOC = "3f2a9c0d1e4b5a67"


def _example_parameters(statement: Statement) -> dict[str, Any]:
    """Parameters of the shape the store sends with `statement`."""
    kind = statement.name.split(":", 1)[0]
    if kind == "upsert_documents":
        document = {"doc_id": _EXAMPLE_DOC, "sha256": "3f2a9c0d" * 8, "path": "docs/ada.txt", "title": "Ada Lovelace"}
        return {"job": _EXAMPLE_JOB, "rows": [document]}
    if kind == "upsert_entities":
        mention = {"doc_id": _EXAMPLE_DOC, "name": "Ada Lovelace", "span": [0, 12]}
        return {"job": _EXAMPLE_JOB, "rows": [{"key": "PERSON:ada lovelace", "type": "PERSON", "mentions": [mention]}]}
    if kind in ("merge_relationships", "merge_fallback_relationships"):
        row: dict[str, Any] = {
            "source": "PERSON:ada lovelace",
            "target": "PERSON:charles babbage",
            "doc_id": _EXAMPLE_DOC,
            "evidence": "Ada Lovelace worked with Charles Babbage",
        }
        if kind == "merge_fallback_relationships":
            row["original_type"] = "worked with"
        return {"job": _EXAMPLE_JOB, "rows": [row]}
    if kind == "job_documents":
        return {"job": _EXAMPLE_JOB}
    if kind == "rollback_relationships" or statement in ROLLBACK_NODES:
        return {"job": _EXAMPLE_JOB, "doc_ids": [_EXAMPLE_DOC]}
    return {}


def write_statements(vocabulary: GraphVocabulary) -> Iterator[Statement]:
    """Every statement a commit may send under `vocabulary`."""
    yield UPSERT_DOCUMENTS
    yield upsert_entities(None)
    for label in sorted(vocabulary.entity_labels):
        yield upsert_entities(label)
    for rel_type in sorted(vocabulary.relationship_types):
        yield merge_relationships(rel_type, False)
    yield merge_relationships(vocabulary.fallback_relationship, True)


def iter_statements(dialect: Dialect, vocabulary: GraphVocabulary) -> Iterator[dict[str, Any]]:
    """Every statement the store can send in `dialect`, with example parameters: {name, dialect, query, parameters}."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown Cypher dialect {dialect!r} (expected one of {', '.join(DIALECTS)})")
    statements = (
        *schema_statements(dialect),
        *(relationship_index(dialect, t) for t in vocabulary.all_relationship_types),
        *write_statements(vocabulary),
        JOB_DOCUMENTS,
        RELATIONSHIP_TYPES,
        *rollback_chunk(vocabulary.all_relationship_types),
        DUMP_NODES,
        DUMP_RELATIONSHIPS,
    )
    for statement in statements:
        yield {
            "name": statement.name,
            "dialect": dialect,
            "query": statement.query,
            "parameters": _example_parameters(statement),
        }
