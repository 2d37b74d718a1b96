"""`compare A B`: entity-level precision / recall / F1 of job A against job B on the documents both answered."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .jobs import Job
from .results import iter_results
from .schema import load_spec
from .verify.normalize import normalize_name


def _entities(job: Job) -> dict[str, set[tuple[str, str]]]:
    """doc sha256 → {(type, normalised name)} for every document with a valid answer."""
    from pathlib import Path

    spec = load_spec(Path(job.manifest["spec"]["path"]))
    sha_by_cid = {d["custom_id"]: d["sha256"] for d in job.documents()}
    found: dict[str, set[tuple[str, str]]] = {}
    for row in iter_results(job):
        if row["outcome"] == "ok":
            parsed = spec.parse_answer(row["answer"])
            found[sha_by_cid[row["custom_id"]]] = {(e.type or "", normalize_name(e.name)) for e in parsed.entities}
    return found


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


def compare_jobs(job_a: Job, job_b: Job, *, worst: int = 10) -> dict[str, Any]:
    """Documents are matched by content hash, so two jobs over the same files compare even with other models."""
    a, b = _entities(job_a), _entities(job_b)
    shared = sorted(set(a) & set(b))
    totals: Counter[str] = Counter()
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    disagreements = []
    path_by_sha = {d["sha256"]: d["path"] for d in job_a.documents()}
    for sha in shared:
        ea, eb = a[sha], b[sha]
        for t, _ in ea & eb:
            per_type[t]["tp"] += 1
        for t, _ in ea - eb:
            per_type[t]["fp"] += 1
        for t, _ in eb - ea:
            per_type[t]["fn"] += 1
        tp, fp, fn = len(ea & eb), len(ea - eb), len(eb - ea)
        totals.update(tp=tp, fp=fp, fn=fn)
        disagreements.append({"path": path_by_sha[sha], "f1": _prf(tp, fp, fn)["f1"], "only_a": len(ea - eb), "only_b": len(eb - ea)})
    disagreements.sort(key=lambda d: (d["f1"], d["path"]))
    return {
        "job_a": job_a.id, "job_b": job_b.id, "documents": len(shared),
        "overall": _prf(totals["tp"], totals["fp"], totals["fn"]),
        "per_type": {t: _prf(c["tp"], c["fp"], c["fn"]) for t, c in sorted(per_type.items())},
        "disagree_most": disagreements[:worst],
    }
