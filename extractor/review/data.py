"""What the review page shows, as plain data: a summary of the job and one record per document.

Read-only: it reads job.json, verify.json and the request lines, and writes nothing. Spans are
offsets into the text the model saw (the request line), the same text the page shows, so a
highlight sits where verify found the name.

A leaked name links to the document it came from by that document's file name. So that the
link can land on the name itself, the source document's record carries a "landing" span for
each name that leaked out of it: its own entity's span when it lists the name too, else
where the name aligns in its text.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from extractor.errors import BadInput
from extractor.jobs import Job, State
from extractor.verify.corpus import TextCursor, iter_job_texts
from extractor.verify.grounding import DocumentMatcher
from extractor.verify.normalize import normalize_name
from extractor.verify.verdicts import read_report

_DOC_ID = re.compile(r"\b[0-9a-f]{16}\b")  # documents.make_document: the first 16 hex digits of the sha256
# The states whose verify.json is the job's last word on its verdicts.
REVIEWABLE = (State.VERIFIED, State.COMMITTED, State.ROLLED_BACK)


def require_reviewable(job: Job) -> None:
    """A job from verified on (committed and rolled back included), with its verify.json."""
    job.require(*REVIEWABLE, doing="be reviewed")
    if not job.verify_path.exists():
        raise BadInput(f"Job {job.id} has no verify.json — run `extractor verify {job.id}` to write it")


def review_summary(job: Job, report: dict[str, Any]) -> dict[str, Any]:
    """The page's header: counts, cost, model, state and how to undo a commit."""
    m = job.manifest
    commit = m.get("commit") or {}
    state = job.state
    undo = None
    graph = commit.get("graph")
    graph_opt = f" --graph {graph}" if graph and graph != "embedded" else ""
    if state is State.COMMITTED:
        undo = f"extractor rollback {job.id}{graph_opt}"
    cost = (m.get("cost") or {}).get("usd")
    return {
        "job_id": job.id,
        "state": state.value,
        "backend": m.get("backend"),
        "model": m.get("model"),
        "created_at": m.get("created_at"),
        "source": m.get("source"),
        "cost_usd": cost,
        "summary": report["summary"],
        "policy": report.get("policy") or {},
        "against": report.get("against") or [],
        "undo": undo,
        "committed": {k: commit[k] for k in ("documents", "entities", "relationships", "graph") if k in commit} or None,
        "rolled_back": state is State.ROLLED_BACK,
    }


def iter_review_documents(job: Job, report: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(index entry, body) per document of verify.json, in its order.

    The index entry is what filters and search need (file name, title, status, entity types, the
    lower-cased names); the body is what a reader sees once the document is open: its text, the
    highlights, the leaked and ungrounded names and the relations.
    """
    documents = report["documents"]
    meta = {d["doc_id"]: d for d in job.documents()}
    position = {doc["doc_id"]: i for i, doc in enumerate(documents)}
    external = report.get("external_sources") or {}
    landings = _landings_wanted(documents, position)
    texts = TextCursor(iter_job_texts(job))
    for doc in documents:
        text = texts.take(doc["custom_id"]) or ""
        info = meta.get(doc["doc_id"])
        entities = doc["entities"]
        title = (info.get("title") if info else None) or ""
        ungrounded = [[e["name"], e.get("type") or ""] for e in entities if e["verdict"] == "ungrounded"]
        names = {e["name"] for e in entities}  # the path and title are searched as they are
        names.update(end for r in doc["relations"] for end in (r["source"], r["target"]))
        index = {
            "path": doc["path"],
            "title": title,
            "status": doc["status"],
            "ungrounded": len(ungrounded),
            "types": sorted({e["type"] for e in entities if e.get("type")}),
            "find": "\n".join(sorted(n for n in names if n)).lower(),
        }
        body = {
            "text": text,
            "reasons": [_by_file_name(r, documents, position) for r in doc["reasons"]],
            "marks": _marks(text, entities, landings.get(doc["doc_id"], {})),
            "leaked": [
                [
                    e["name"],
                    e.get("type") or "",
                    [_source(s, position, documents, external, e["name"]) for s in e.get("sources") or []],
                ]
                for e in entities
                if e["verdict"] == "leaked"
            ],
            "ungrounded": ungrounded,
            "relations": [_relation(r, position, documents, external) for r in doc["relations"]],
        }
        yield index, body


def _by_file_name(reason: str, documents: list[dict[str, Any]], position: dict[str, int]) -> str:
    """verify names source documents by id in its reasons; a reader knows them by file name."""
    return _DOC_ID.sub(lambda m: documents[position[m[0]]]["path"] if m[0] in position else m[0], reason)


def _landings_wanted(documents: list[dict[str, Any]], position: dict[str, int]) -> dict[str, dict[str, str]]:
    """For each source document in the page: the names that leaked out of it (key → name as written)."""
    wanted: dict[str, dict[str, str]] = defaultdict(dict)
    for doc in documents:
        for ent in doc["entities"]:
            if ent["verdict"] != "leaked":
                continue
            for source in ent.get("sources") or ():
                if source in position:
                    wanted[source].setdefault(normalize_name(ent["name"]), ent["name"])
        for rel in doc["relations"]:
            if rel["verdict"] != "leaked":
                continue
            for source in rel.get("sources") or ():
                if source in position:
                    for name in (rel["source"], rel["target"]):
                        wanted[source].setdefault(normalize_name(name), name)
    return wanted


def _marks(text: str, entities: list[dict[str, Any]], landings: dict[str, str]) -> list[list[Any]]:
    """Non-overlapping highlights [start, end, verdict, name, type, landing keys], in text order.

    Every entity with a span is highlighted (today grounded and fuzzy ones; any verdict that gains a
    span shows too). Of overlapping spans the earliest, longest wins, as in the text a reader sees.
    A landing span that coincides with an entity's takes that mark; one elsewhere becomes a "source" mark.
    """
    spans: list[tuple[int, int, str, str, str]] = []
    by_key: dict[str, tuple[int, int]] = {}
    for ent in entities:
        span = ent.get("span")
        if not span:
            continue
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= len(text):
            continue
        spans.append((start, end, str(ent["verdict"]), ent["name"], ent.get("type") or ""))
        by_key.setdefault(normalize_name(ent["name"]), (start, end))
    landing_at: dict[tuple[int, int], list[str]] = defaultdict(list)
    matcher: DocumentMatcher | None = None
    for key, name in landings.items():
        where = by_key.get(key)
        if where is None:
            matcher = matcher or DocumentMatcher(text)
            where = matcher.align(name).span
        if where is None:
            continue
        if where not in {(s[0], s[1]) for s in spans}:
            spans.append((where[0], where[1], "source", name, ""))
        landing_at[where].append(key)
    spans.sort(key=lambda s: (s[0], -s[1]))
    marks: list[list[Any]] = []
    pos = 0
    for start, end, verdict, name, kind in spans:
        if start < pos:
            continue
        marks.append([start, end, verdict, name, kind, landing_at.get((start, end), [])])
        pos = end
    return marks


def _source(
    doc_id: str,
    position: dict[str, int],
    documents: list[dict[str, Any]],
    external: dict[str, dict[str, str]],
    name: str,
) -> dict[str, Any]:
    """Where a leak came from, named by file: a document of this page (by position), or one outside the job."""
    index = position.get(doc_id)
    if index is not None:
        return {"doc": index, "path": documents[index]["path"], "key": normalize_name(name)}
    info = external.get(doc_id)
    if info is None:
        return {"path": doc_id}
    where: dict[str, Any] = {
        "path": info.get("path", doc_id),
        "outside": f"{info.get('kind', '')} {info.get('ref', '')}",
    }
    if info.get("kind") == "folder":
        where["href"] = Path(info["ref"], info["path"]).resolve().as_uri()
    return where


def _relation(
    rel: dict[str, Any], position: dict[str, int], documents: list[dict[str, Any]], external: dict[str, dict[str, str]]
) -> list[Any]:
    """[source, type, target, verdict, evidence, evidence span, leak sources]; a quote found in the text is
    sent as its span only (the page reads it from the text), one found nowhere as its words."""
    span = rel.get("evidence_span")
    return [
        rel["source"],
        rel.get("type") or "",
        rel["target"],
        rel["verdict"],
        None if span else rel.get("evidence"),
        list(span) if span else None,
        [_source(s, position, documents, external, rel["source"]) for s in rel.get("sources") or []],
    ]


def load_review(job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """verify.json and the page summary of a reviewable job."""
    require_reviewable(job)
    report = read_report(job)
    return report, review_summary(job, report)
