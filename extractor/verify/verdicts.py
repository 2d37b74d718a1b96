"""Verdicts for every entity and relation of a job, quarantine per document, verify.json."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..jobs import Job, State
from ..requests import iter_request_lines, request_text
from ..results import iter_results
from ..schema import load_spec
from ..storage import atomic_write_bytes
from .grounding import Alignment, DocumentMatcher
from .index import LeakIndex
from .normalize import normalize_name

VERIFY_FORMAT = "extractor.verify/1"
FOUND = ("grounded", "fuzzy")


@dataclass(frozen=True)
class Policy:
    """What a verdict does to its document: a leak means the answer saw another document, so it quarantines."""

    leaked: str = "quarantine"       # quarantine | drop
    ungrounded: str = "drop"         # drop | quarantine (--strict)

    @classmethod
    def strict(cls) -> "Policy":
        return cls(leaked="quarantine", ungrounded="quarantine")


@dataclass
class VerifySummary:
    job_id: str
    documents: int = 0
    clean: int = 0
    quarantined: int = 0
    failed: int = 0
    entities: Counter = field(default_factory=Counter)
    relations: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        verdicts = ("grounded", "fuzzy", "leaked", "ungrounded")
        return {
            "documents": self.documents,
            "clean": self.clean,
            "quarantined": self.quarantined,
            "failed": self.failed,
            "entities": {v: self.entities[v] for v in verdicts},
            "relations": {v: self.relations[v] for v in verdicts},
        }


def iter_job_texts(job: Job) -> Iterator[tuple[str, str]]:
    """(custom_id, text) exactly as sent to the model: spans point into what the model saw."""
    for line in iter_request_lines(job.request_files()):
        yield line["custom_id"], request_text(line)


def verify_job(job: Job, *, policy: Policy | None = None, against: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Align every fact with its own document, look for the unmatched ones in the others, decide per document."""
    job.require(State.COLLECTED, State.VERIFIED, doing="be verified")
    policy = policy or Policy()
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    doc_by_cid = {d["custom_id"]: d for d in job.documents()}
    texts = dict(iter_job_texts(job))

    # Pass 1: each answer against its own document.
    drafts: list[dict[str, Any]] = []
    unmatched: set[str] = set()
    for row in iter_results(job):
        doc = doc_by_cid[row["custom_id"]]
        draft = {"doc_id": doc["doc_id"], "custom_id": row["custom_id"], "path": doc["path"]}
        if row["outcome"] != "ok":
            draft.update(status="failed", reasons=[f"{row['outcome']}: {'; '.join(row['errors'])[:300]}"],
                         entities=[], relations=[])
            drafts.append(draft)
            continue
        parsed = spec.parse_answer(row["answer"])
        matcher = DocumentMatcher(texts[row["custom_id"]])
        entities = []
        for ent in parsed.entities:
            entities.append(_entity_draft(ent.name, ent.type, matcher.align(ent.name)))
        relations = []
        for rel in parsed.relations:
            evidence = matcher.align_quote(rel.evidence) if rel.evidence else None
            relations.append({"source": rel.source, "type": rel.type, "target": rel.target,
                              "evidence": rel.evidence, "_evidence": evidence})
        for ent in entities:
            if ent["verdict"] is None:
                unmatched.add(normalize_name(ent["name"]))
        for rel in relations:
            if rel["evidence"] and (rel["_evidence"] is None or rel["_evidence"].verdict is None):
                unmatched.add(normalize_name(rel["evidence"]))
        draft.update(entities=entities, relations=relations, _matcher=matcher)
        drafts.append(draft)

    # Pass 2: one scan of every document for all unmatched names at once (linear in the corpus).
    doc_id_by_cid = {cid: d["doc_id"] for cid, d in doc_by_cid.items()}
    corpus = [(doc_id_by_cid[cid], text) for cid, text in texts.items()] + list(against or [])
    sources = LeakIndex(corpus).find_sources(unmatched) if unmatched else {}

    summary = VerifySummary(job_id=job.id)
    documents = [_decide(draft, sources, policy, summary) for draft in drafts]
    report = {"format": VERIFY_FORMAT, "job_id": job.id, "policy": policy.__dict__,
              "summary": summary.as_dict(), "documents": documents}
    atomic_write_bytes(job.verify_path, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    job.transition(State.VERIFIED, verify=summary.as_dict())
    return report


def _entity_draft(name: str, type_: str | None, alignment: Alignment) -> dict[str, Any]:
    return {"name": name, "type": type_, "verdict": alignment.verdict,
            "span": list(alignment.span) if alignment.span else None, "sources": []}


def _decide(draft: dict[str, Any], sources: dict[str, set[str]], policy: Policy, summary: VerifySummary) -> dict[str, Any]:
    summary.documents += 1
    if draft.get("status") == "failed":
        summary.failed += 1
        return draft
    own = draft["doc_id"]
    matcher: DocumentMatcher = draft.pop("_matcher")
    reasons: list[str] = []
    by_name: dict[str, dict[str, Any]] = {}
    for ent in draft["entities"]:
        if ent["verdict"] is None:
            found = sorted(sources.get(normalize_name(ent["name"]), set()) - {own})
            ent["verdict"] = "leaked" if found else "ungrounded"
            ent["sources"] = found
        by_name.setdefault(normalize_name(ent["name"]), ent)
        summary.entities[ent["verdict"]] += 1
    relations = []
    for rel in draft["relations"]:
        verdict, rel_sources = _relation_verdict(rel, by_name, matcher, sources, own)
        evidence: Alignment | None = rel.pop("_evidence")
        rel.update(verdict=verdict, sources=rel_sources,
                   evidence_span=list(evidence.span) if evidence and evidence.span else None)
        summary.relations[verdict] += 1
        relations.append(rel)
    draft["relations"] = relations

    leaked = [e["name"] for e in draft["entities"] if e["verdict"] == "leaked"]
    leaked_rel = [f"{r['source']} -{r['type']}-> {r['target']}" for r in relations if r["verdict"] == "leaked"]
    ungrounded = [e["name"] for e in draft["entities"] if e["verdict"] == "ungrounded"]
    ungrounded_rel = [r for r in relations if r["verdict"] == "ungrounded"]
    quarantine = False
    if leaked or leaked_rel:
        reasons.append(f"{len(leaked) + len(leaked_rel)} fact(s) found only in other documents of the job: "
                       + ", ".join((leaked + leaked_rel)[:5]))
        quarantine = policy.leaked == "quarantine"
    if ungrounded or ungrounded_rel:
        reasons.append(f"{len(ungrounded) + len(ungrounded_rel)} fact(s) found in no document"
                       + (f": {', '.join(ungrounded[:5])}" if ungrounded else ""))
        quarantine = quarantine or policy.ungrounded == "quarantine"
    draft["status"] = "quarantined" if quarantine else "clean"
    draft["reasons"] = reasons
    if quarantine:
        summary.quarantined += 1
    else:
        summary.clean += 1
    return draft


def _relation_verdict(rel: dict[str, Any], by_name: dict[str, dict[str, Any]], matcher: DocumentMatcher,
                      sources: dict[str, set[str]], own: str) -> tuple[str, list[str]]:
    """Both ends must be found entities of the same answer and the evidence must align to the document."""
    verdicts: list[str] = []
    found_in: set[str] = set()
    for end in (rel["source"], rel["target"]):
        ent = by_name.get(normalize_name(end))
        if ent is not None:
            verdicts.append(ent["verdict"])
            found_in.update(ent["sources"])
        else:
            # An end the answer never listed as an entity: only a direct match in the document saves it.
            alignment = matcher.align(end)
            verdicts.append(alignment.verdict or "ungrounded")
    evidence: Alignment | None = rel["_evidence"]
    if rel["evidence"]:
        if evidence is not None and evidence.verdict in FOUND:
            verdicts.append(evidence.verdict)
        else:
            other = sorted(sources.get(normalize_name(rel["evidence"]), set()) - {own})
            verdicts.append("leaked" if other else "ungrounded")
            found_in.update(other)
    if "leaked" in verdicts:
        return "leaked", sorted(found_in)
    if "ungrounded" in verdicts:
        return "ungrounded", []
    return ("fuzzy" if "fuzzy" in verdicts else "grounded"), []
