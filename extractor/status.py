"""What `status` and `report` show, read from job folders."""

from __future__ import annotations

from typing import Any

from .jobs import NEXT_COMMAND, Job, JobStore
from .pipeline import job_tokens
from .pricing import estimate_cost


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def request_latencies(job: Job) -> list[float]:
    from .storage import iter_jsonl

    if not job.log_path.exists():
        return []
    return [e["latency_ms"] for e in iter_jsonl(job.log_path) if e.get("event") == "request" and e.get("latency_ms") is not None]


def job_status(job: Job) -> dict[str, Any]:
    m = job.manifest
    data: dict[str, Any] = {
        "job_id": job.id, "state": m["state"], "backend": m["backend"], "model": m["model"],
        "documents": len(m["documents"]), "skipped": len(m.get("skipped", [])),
        "created_at": m.get("created_at"), "updated_at": m.get("updated_at"),
    }
    for key in ("outcomes", "verify", "commit", "rollback"):
        if key in m:
            data[key] = m[key]
    latencies = request_latencies(job)
    if latencies:
        stats = m.get("remote", {}).get("stats", {})
        data["latency_ms"] = {f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)}
        if stats.get("seconds"):
            data["throughput_docs_per_s"] = round(stats.get("answered", 0) / stats["seconds"], 3)
    data["next"] = f"extractor {NEXT_COMMAND[job.state].format(id=job.id)}"
    return data


def jobs_table(store: JobStore) -> list[dict[str, Any]]:
    return [
        {"job_id": j.id, "state": j.state.value, "backend": j.manifest["backend"], "model": j.manifest["model"],
         "documents": len(j.documents()), "created_at": j.manifest.get("created_at", "")}
        for j in store
    ]


def jobs_report(store: JobStore) -> list[dict[str, Any]]:
    rows = []
    for job in store:
        m = job.manifest
        tokens = job_tokens(job)
        batch = m["backend"] == "openai"
        cost = 0.0 if m["backend"] == "local" else estimate_cost(m["model"], tokens["prompt"], tokens["completion"], batch=batch)
        outcomes = m.get("outcomes", {})
        answered = sum(outcomes.values()) or None
        ents = m.get("verify", {}).get("entities", {})
        total_ents = sum(ents.values()) or None
        docs = len(m["documents"])
        rows.append({
            "job_id": job.id, "backend": m["backend"], "model": m["model"], "documents": docs,
            "tokens": tokens["total"], "cost_usd": cost,
            "schema_valid": round(outcomes.get("ok", 0) / answered, 4) if answered else None,
            "grounded": round((ents.get("grounded", 0) + ents.get("fuzzy", 0)) / total_ents, 4) if total_ents else None,
            "quarantined": m.get("verify", {}).get("quarantined"),
        })
    return rows
