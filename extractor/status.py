"""What `status` shows, read from job folders and the jobs-dir lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from .jobs import NEXT_COMMAND, Job, JobStore
from .storage import iter_jsonl


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linearly interpolated between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q / 100 * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def request_latencies(job: Job) -> list[float]:
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
    for key in ("backend_choice", "outcomes", "errors", "cost", "verify", "commit", "rollback"):
        if key in m:
            data[key] = m[key]
    latencies = request_latencies(job)
    if latencies:
        stats = m.get("remote", {}).get("stats", {})
        data["latency_ms"] = {f"p{q}": round(percentile(latencies, q) or 0.0, 1) for q in (50, 95, 99)}
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


def lock_holder(root: Path) -> dict[str, Any] | None:
    """The live process holding the jobs-dir lock (pid, started_at), or None; a dead holder's note is ignored."""
    try:
        info = orjson.loads((root / ".lock").read_bytes())
        pid = int(info["pid"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # SIGKILLed without releasing: the kernel already dropped its lock
    except PermissionError:
        pass  # alive, owned by another user
    return {"pid": pid, "started_at": info.get("started_at")}
