"""`compare A B`: entity-level precision / recall / F1 of job A against job B (the reference) on the documents both
answered.

An entity is (type, normalised name), once per document: precision = share of A's entities that B also
has, recall = share of B's entities that A found. Documents are matched by content hash, so two jobs over
the same files compare across backends, models and prompts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from extractor.collect.results import iter_results
from extractor.errors import BadInput
from extractor.jobs import Job
from extractor.spec.schema import load_spec
from extractor.verify.normalize import normalize_name

Entity = tuple[str, str]
EXAMPLES = 5


def answered_entities(job: Job) -> dict[str, set[Entity]]:
    """doc sha256 → {(type, normalised name)} for every document with a valid answer."""
    if not job.results_path.exists():
        raise BadInput(f"Job {job.id} has no results yet — run `extractor collect {job.id}` first")
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    sha_by_cid = {d["custom_id"]: d["sha256"] for d in job.documents()}
    found: dict[str, set[Entity]] = {}
    for row in iter_results(job):
        if row["outcome"] == "ok":
            parsed = spec.parse_answer(row["answer"])
            found[sha_by_cid[row["custom_id"]]] = {(e.type or "", normalize_name(e.name)) for e in parsed.entities}
    return found


def score(tp: int, fp: int, fn: int) -> dict[str, Any]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


def compare_jobs(job_a: Job, job_b: Job, *, worst: int = 10) -> dict[str, Any]:
    a, b = answered_entities(job_a), answered_entities(job_b)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise BadInput(
            f"Jobs {job_a.id} and {job_b.id} have no answered document in common — "
            "compare two jobs prepared from the same documents"
        )
    totals: Counter[str] = Counter()
    untyped: Counter[str] = Counter()
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    path_by_sha = {d["sha256"]: d["path"] for d in job_a.documents()}
    documents = []
    for sha in shared:
        ea, eb = a[sha], b[sha]
        for kind, found in (("tp", ea & eb), ("fp", ea - eb), ("fn", eb - ea)):
            totals[kind] += len(found)
            for entity_type, _ in found:
                per_type[entity_type][kind] += 1
        na, nb = {n for _, n in ea}, {n for _, n in eb}
        untyped.update(tp=len(na & nb), fp=len(na - nb), fn=len(nb - na))
        doc = score(len(ea & eb), len(ea - eb), len(eb - ea))
        documents.append(
            {
                "path": path_by_sha[sha],
                "sha256": sha,
                "f1": doc["f1"],
                "agreed": doc["tp"],
                "only_a": _names(ea - eb),
                "only_b": _names(eb - ea),
            }
        )
    documents.sort(key=lambda d: (d["f1"], -(len(d["only_a"]) + len(d["only_b"])), d["path"]))
    for doc in documents:
        doc["only_a_count"], doc["only_b_count"] = len(doc["only_a"]), len(doc["only_b"])
        doc["only_a"], doc["only_b"] = doc["only_a"][:EXAMPLES], doc["only_b"][:EXAMPLES]
    return {
        "job_a": job_a.id,
        "job_b": job_b.id,
        "reference": job_b.id,
        "models": {
            "a": f"{job_a.manifest['backend']}/{job_a.manifest['model']}",
            "b": f"{job_b.manifest['backend']}/{job_b.manifest['model']}",
        },
        "documents": len(shared),
        "only_in_a": len(set(a) - set(b)),
        "only_in_b": len(set(b) - set(a)),
        "overall": score(totals["tp"], totals["fp"], totals["fn"]),
        "overall_ignoring_type": score(untyped["tp"], untyped["fp"], untyped["fn"]),
        "per_type": {t: score(c["tp"], c["fp"], c["fn"]) for t, c in sorted(per_type.items())},
        "disagree_most": documents[:worst],
    }


def _names(entities: set[Entity]) -> list[str]:
    return [f"{name} ({entity_type})" for entity_type, name in sorted(entities, key=lambda e: (e[1], e[0]))]
