"""Commit a job's clean documents in resumable chunks, roll a job back exactly, dump a graph canonically.

`commit.json` (format `extractor.commit/1`; files from before the one convention carry `"format_version": 1` and
are read through `storage.read_versioned`'s migration hook) keeps one record per store the job was committed to:

```json
{"format": "extractor.commit/1", "job_id": "…",
 "targets": {"<store target>": {"state": "committing|committed|rolled_back",
   "chunk_size": 500, "chunks_planned": 40, "documents": 20000,
   "relationship_types": ["LOCATED_IN", "RELATED_TO"],
   "chunks": [{"index": 0, "sha256": "…", "documents": 500, "first_doc_id": "…",
               "last_doc_id": "…", "mentions": 9000, "relationships": 1200, "landed_at": "…"}],
   "summary": {…}, "updated_at": "…"}}}
```

A chunk is recorded, with the digest of its statements, after its batch landed. A commit
that finds chunks recorded keeps their chunk size and skips each one whose digest it
rebuilds, so a killed commit resumes and a second commit writes nothing; a different digest
(other documents, another spec) is refused before anything is written.

`relationship_types` is written ahead: before a chunk is sent, the relationship types it
writes are added to the record, so the list holds every type the job may have written to
that store, a chunk that landed before the kill could record it included.
Rollback finds the job's documents in the graph, not in the file (a chunk lands atomically,
documents first), so it also undoes such a chunk; the file only narrows which relationship
types it sends a statement for (Neo4j plans each statement the first time it runs). Without
the list (a record written before it existed, no file, another target) it sends one for every
relationship type in the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from extractor.errors import BadInput
from extractor.graph import cypher
from extractor.graph.batches import Chunk, iter_chunks, prefetched, sorted_documents
from extractor.graph.model import LABEL, RESERVED_TYPES, CommitDocument, GraphVocabulary
from extractor.graph.store import GraphStore, WriteCounts
from extractor.job_files import format_tag
from extractor.storage import DamagedFile, atomic_write_json, read_versioned

LOG_FORMAT_VERSION = 1
ROLLBACK_CHUNK_SIZE = 500


@dataclass(frozen=True)
class CommitSummary:
    job_id: str
    target: str
    documents: int
    entities: int
    mentions: int
    relationships: int
    chunks: int
    resumed_chunks: int
    nodes_created: int = 0
    relationships_created: int = 0


@dataclass(frozen=True)
class RollbackSummary:
    job_id: str
    target: str
    documents: int
    chunks: int
    nodes_deleted: int
    relationships_deleted: int


def commit_job(
    store: GraphStore,
    job_id: str,
    documents: Iterable[CommitDocument],
    *,
    log_path: Path,
    vocabulary: GraphVocabulary,
    chunk_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> CommitSummary:
    """Write the documents with `job_id` provenance, chunk by chunk, recording each chunk in `log_path`.

    Chunks are `chunk_size` documents in doc_id order, each written atomically; `progress` is
    called after each with its number of documents (chunks already landed included).
    """
    docs = sorted_documents(documents)
    store.ensure_schema(vocabulary.all_relationship_types)
    log = _read_log(log_path, job_id)
    record = log["targets"].get(store.target)
    landed: dict[int, str] = {}
    if record is not None and record.get("state") != "rolled_back":
        chunk_size = int(record["chunk_size"])  # a resumed commit keeps the chunking it started with
        landed = {int(c["index"]): c["sha256"] for c in record["chunks"]}
    else:
        record = {
            "state": "committing",
            "chunk_size": chunk_size,
            "chunks_planned": -(-len(docs) // chunk_size),
            "documents": len(docs),
            "relationship_types": [],
            "chunks": [],
        }
        log["targets"][store.target] = record
        _write_log(log_path, log, record)

    def ready() -> Iterator[tuple[Chunk, Any]]:
        for chunk in iter_chunks(docs, job_id, vocabulary, chunk_size):
            yield chunk, (None if chunk.index in landed else store.prepare(chunk.batch))

    entity_keys: set[str] = set()
    mentions = relationships = chunks = resumed = 0
    counts = WriteCounts()
    # Building and quoting rows is Python work, writing them mostly waiting on the store:
    # the next chunk is made ready while this one is written.
    for chunk, prepared in prefetched(ready()):
        chunks += 1
        entity_keys |= chunk.entity_keys
        mentions += chunk.mentions
        relationships += chunk.relationships
        if chunk.index in landed:
            # Landed chunks come first, so a difference is caught before anything new is written.
            if landed[chunk.index] != chunk.sha256:
                raise BadInput(
                    f"{log_path}: job {job_id} was committed to {store.target} with other documents or another "
                    f"spec — roll it back first (extractor rollback {job_id}), then commit again"
                )
            resumed += 1
        else:
            _record_types_ahead(log_path, log, record, chunk.relationship_types)
            counts += store.send(prepared)
            record["chunks"] = [c for c in record["chunks"] if c["index"] != chunk.index] + [
                {
                    "index": chunk.index,
                    "sha256": chunk.sha256,
                    "documents": len(chunk.doc_ids),
                    "first_doc_id": chunk.doc_ids[0],
                    "last_doc_id": chunk.doc_ids[-1],
                    "mentions": chunk.mentions,
                    "relationships": chunk.relationships,
                    "landed_at": _now(),
                }
            ]
            _write_log(log_path, log, record)
        if progress is not None:
            progress(len(chunk.doc_ids))

    summary = CommitSummary(
        job_id=job_id,
        target=store.target,
        documents=len(docs),
        entities=len(entity_keys),
        mentions=mentions,
        relationships=relationships,
        chunks=chunks,
        resumed_chunks=resumed,
        nodes_created=counts.nodes_created,
        relationships_created=counts.relationships_created,
    )
    record["state"] = "committed"
    record["summary"] = asdict(summary)
    _write_log(log_path, log, record)
    return summary


def rollback_job(
    store: GraphStore,
    job_id: str,
    *,
    log_path: Path | None = None,
    chunk_size: int = ROLLBACK_CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> RollbackSummary:
    """Remove exactly what `job_id` wrote: its relationships and mentions, it from shared nodes, nodes left
    with no job.
    """
    doc_ids = [row["doc_id"] for row in store.read(cypher.JOB_DOCUMENTS, {"job": job_id})]
    # the types in the graph, not a spec's: the job may have been committed under another one
    types = {row["relationshipType"] for row in store.read(cypher.RELATIONSHIP_TYPES)}
    types = {t for t in types if LABEL.match(t) and t not in RESERVED_TYPES}
    written = _written_types(log_path, job_id, store.target)
    if written is not None:  # of those, only the ones the job wrote
        types &= written
    statements = cypher.rollback_chunk(types)
    counts = WriteCounts()
    chunks = 0
    for start in range(0, len(doc_ids), chunk_size):
        parameters = {"job": job_id, "doc_ids": doc_ids[start : start + chunk_size]}
        counts += store.write([(statement, parameters) for statement in statements])
        chunks += 1
        if progress is not None:
            progress(len(parameters["doc_ids"]))
    summary = RollbackSummary(
        job_id=job_id,
        target=store.target,
        documents=len(doc_ids),
        chunks=chunks,
        nodes_deleted=counts.nodes_deleted,
        relationships_deleted=counts.relationships_deleted,
    )
    if log_path is not None and log_path.exists():
        log = _read_log(log_path, job_id)
        record = {"state": "rolled_back", "chunks": [], "rolled_back_at": _now(), "rollback": asdict(summary)}
        log["targets"][store.target] = record
        _write_log(log_path, log, record)
    return summary


def _record_types_ahead(log_path: Path, log: dict[str, Any], record: dict[str, Any], types: Iterable[str]) -> None:
    """Add the chunk's relationship types to a record that keeps them, in the file, before the chunk is sent."""
    recorded = record.get("relationship_types")
    if not isinstance(recorded, list):
        return  # a record begun before the list existed: its earlier chunks' types are unknown, rollback sends all
    new = set(types) - set(recorded)
    if new:
        record["relationship_types"] = sorted({*recorded, *new})
        _write_log(log_path, log, record)


def _written_types(log_path: Path | None, job_id: str, target: str) -> set[str] | None:
    """The relationship types commit.json says the job may have written to `target`, or None if it cannot say.

    None when there is no file, no record for the target, or one without the list (written
    before it existed), or a name that is not an allowed type: the rollback then sends every
    type in the graph. Other targets' lists are added (the same store reached by another URI).
    """
    if log_path is None or not log_path.exists():
        return None
    try:
        records = _read_log(log_path, job_id)["targets"]
    except BadInput:
        return None  # an unreadable file does not stop the rollback; it is reported when the rollback records itself
    if not isinstance(records, dict) or not isinstance(records.get(target), dict):
        return None
    types: set[str] = set()
    for other, record in records.items():
        if not isinstance(record, dict):
            return None
        recorded = record.get("relationship_types")
        if recorded is None and other != target and record.get("state") == "rolled_back":
            continue  # nothing of the job is left there
        if not isinstance(recorded, list) or not all(isinstance(t, str) and LABEL.match(t) for t in recorded):
            return None
        types.update(recorded)
    return types


def dump_graph(store: GraphStore) -> list[dict[str, Any]]:
    """Every node (labels, properties) and relationship (type, endpoints, properties), canonical and sorted.

    Store-neutral (the same two read statements in both dialects), so one dump compares graphs
    across FalkorDB and Neo4j: internal ids are left out (a relationship names its ends by
    their labels and key property, `key` or `doc_id`, all properties for a node without
    one), and the graph holds no clock values to leave out.
    """
    items: list[dict[str, Any]] = []
    for row in store.read(cypher.DUMP_NODES):
        items.append({"kind": "node", **_node(row["labels"], row["properties"])})
    for row in store.read(cypher.DUMP_RELATIONSHIPS):
        items.append(
            {
                "kind": "relationship",
                "type": row["type"],
                "source": _end(row, "source"),
                "target": _end(row, "target"),
                "properties": _plain(row["properties"]),
            }
        )
    return sorted(items, key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))


def _end(row: dict[str, Any], end: str) -> dict[str, Any]:
    """A relationship's end as labels and its key property (all its properties if it has no key)."""
    key = {name: row[f"{end}_{name}"] for name in ("key", "doc_id") if row[f"{end}_{name}"] is not None}
    return _node(row[f"{end}_labels"], key or row[end] or {})


def _node(labels: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"labels": sorted(labels), "properties": _plain(properties)}


def _plain(value: Any) -> Any:
    """Driver containers (OrderedDict, tuples) as plain dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _legacy_log(log: dict[str, Any]) -> dict[str, Any]:
    """Migration hook: a commit.json from before the one version convention (`"format_version": 1`)."""
    if log.get("format_version") != LOG_FORMAT_VERSION:
        raise ValueError(f"commit log format_version {log.get('format_version')!r}, not {LOG_FORMAT_VERSION}")
    migrated = {k: v for k, v in log.items() if k != "format_version"}
    migrated["format"] = format_tag("commit")
    return migrated


def _read_log(log_path: Path, job_id: str) -> dict[str, Any]:
    if not log_path.exists():
        return {"format": format_tag("commit"), "job_id": job_id, "targets": {}}
    try:
        log = read_versioned(log_path, "commit", {None: _legacy_log})
    except DamagedFile as exc:
        raise BadInput(
            f"{log_path}: unreadable commit log ({exc.problem}) — restore it, or roll the job back and "
            "delete it (a newer extractor's log: upgrade extractor)"
        ) from exc
    if log.get("job_id") != job_id:
        raise BadInput(f"{log_path}: commit log of job {log.get('job_id')!r}, not {job_id!r}")
    log.setdefault("targets", {})
    return log


def _write_log(log_path: Path, log: dict[str, Any], record: dict[str, Any]) -> None:
    record["updated_at"] = _now()
    atomic_write_json(log_path, log)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
