"""The commit and rollback stages: verified, clean documents into the staging graph, and exactly back out."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from extractor.graph import open_store, redact_uri
from extractor.graph.commit import commit_job, rollback_job
from extractor.graph.model import CommitDocument, EntityMention, GraphVocabulary, RelationFact
from extractor.jobs import Job, State
from extractor.spec.schema import load_spec
from extractor.storage import read_versioned
from extractor.verify.normalize import normalize_name

KEPT = frozenset({"grounded", "fuzzy"})
# pipeline.CRASH_AFTER_ENV; "commit-chunk:N" SIGKILLs the process right after the commit's N-th chunk landed
CRASH_AFTER_ENV = "EXTRACTOR_TEST_CRASH_AFTER"


def vocabulary_for(job: Job) -> GraphVocabulary:
    """Labels and relationship types come only from the spec's enums: the allow-list."""
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    return GraphVocabulary.from_types(spec.entity_types(), spec.relation_types())


def commit_documents(job: Job) -> Iterator[CommitDocument]:
    """Clean documents only; within them, only facts that were found in their own text."""
    report = read_versioned(job.verify_path, "verify")
    meta = {d["doc_id"]: d for d in job.documents()}
    for doc in report["documents"]:
        if doc["status"] != "clean":
            continue
        entities = tuple(
            EntityMention(name=e["name"], type=e["type"] or "OTHER", span=tuple(e["span"]) if e["span"] else None)
            for e in doc["entities"]
            if e["verdict"] in KEPT
        )
        types = {normalize_name(e.name): e.type for e in entities}
        relations = tuple(
            RelationFact(
                source=r["source"],
                source_type=types.get(normalize_name(r["source"]), "OTHER"),
                type=r["type"] or "RELATED_TO",
                target=r["target"],
                target_type=types.get(normalize_name(r["target"]), "OTHER"),
                evidence=r.get("evidence") or "",
            )
            for r in doc["relations"]
            if r["verdict"] in KEPT
        )
        info = meta[doc["doc_id"]]
        yield CommitDocument(
            doc_id=doc["doc_id"],
            sha256=info["sha256"],
            path=info["path"],
            title=info.get("title") or "",
            entities=entities,
            relations=relations,
        )


def commit_stage(
    job: Job,
    *,
    uri: str,
    database: str | None,
    data_dir: Path,
    progress: Callable[[int], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    job.require(State.VERIFIED, State.COMMITTED, State.ROLLED_BACK, doing="be committed")
    with open_store(uri, database=database, data_dir=data_dir) as store:
        summary = commit_job(
            store,
            job.id,
            commit_documents(job),
            log_path=job.commit_path,
            vocabulary=vocabulary_for(job),
            progress=_crash_point(progress),
            **({"chunk_size": chunk_size} if chunk_size else {}),
        )
    result = {
        **asdict(summary),
        "graph": redact_uri(uri),
        "nodes": summary.documents + summary.entities,
        "relationships": summary.mentions + summary.relationships,
    }
    job.transition(State.COMMITTED, commit={k: v for k, v in result.items() if k != "job_id"})
    return result


def _crash_point(progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """Fault injection for the kill -9 resume tests: see CRASH_AFTER_ENV."""
    stage, _, count = os.environ.get(CRASH_AFTER_ENV, "").partition(":")
    if stage != "commit-chunk" or not count.isdigit():
        return progress
    landed = [0]

    def crashing(documents: int) -> None:
        if progress is not None:
            progress(documents)
        landed[0] += 1
        if landed[0] == int(count):
            os.kill(os.getpid(), signal.SIGKILL)

    return crashing


def rollback_stage(job: Job, *, uri: str, database: str | None, data_dir: Path) -> dict[str, Any]:
    job.require(State.COMMITTED, State.ROLLED_BACK, State.VERIFIED, doing="be rolled back")
    with open_store(uri, database=database, data_dir=data_dir) as store:
        summary = rollback_job(store, job.id, log_path=job.commit_path)
    result = {**asdict(summary), "graph": redact_uri(uri)}
    job.transition(State.ROLLED_BACK, rollback={k: v for k, v in result.items() if k != "job_id"})
    return result
