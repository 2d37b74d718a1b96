"""What `status` shows, read from job folders and the jobs-dir lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from extractor.jobs import NEXT_COMMAND, Job, JobStore
from extractor.stats import percentile
from extractor.storage import iter_jsonl


def request_latencies(job: Job) -> list[float]:
    if not job.log_path.exists():
        return []
    return [
        e["latency_ms"]
        for e in iter_jsonl(job.log_path)
        if e.get("event") == "request" and e.get("latency_ms") is not None
    ]


def job_status(job: Job) -> dict[str, Any]:
    m = job.manifest
    data: dict[str, Any] = {
        "job_id": job.id,
        "state": m["state"],
        "backend": m["backend"],
        "model": m["model"],
        "documents": len(m["documents"]),
        "skipped": len(m.get("skipped", [])),
        "created_at": m.get("created_at"),
        "updated_at": m.get("updated_at"),
    }
    for key in ("backend_choice", "outcomes", "errors", "cost", "verify", "commit", "rollback"):
        if key in m:
            data[key] = m[key]
    latencies = request_latencies(job)
    if latencies:
        stats = m.get("remote", {}).get("stats", {})
        data["latency_ms"] = {f"p{q}": round(percentile(latencies, q / 100) or 0.0, 1) for q in (50, 95, 99)}
        if stats.get("seconds"):
            data["throughput_docs_per_s"] = round(stats.get("answered", 0) / stats["seconds"], 3)
    lane = last_lane_run(job)
    if lane and lane.get("servers"):
        data["servers"] = [server_summary(s) for s in lane["servers"]]
        if lane.get("hedged"):
            data["hedging"] = {
                k: lane.get(k, 0)
                for k in (
                    "hedged",
                    "hedge_wins",
                    "duplicates",
                    "duplicate_prompt_tokens",
                    "duplicate_completion_tokens",
                )
            }
    data["next"] = f"extractor {NEXT_COMMAND[job.state].format(id=job.id)}"
    return data


def last_lane_run(job: Job) -> dict[str, Any] | None:
    """The `lane_end` event of the local lane's latest finished run (kept even when it ended in exit 4)."""
    last = None
    if job.log_path.exists():
        for event in iter_jsonl(job.log_path):
            if isinstance(event, dict) and event.get("event") == "lane_end":
                last = event
    return last


SERVER_COLUMNS = (
    "url",
    "documents",
    "tokens/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "concurrency",
    "429s",
    "timeouts",
    "outages",
    "hedges",
)


def server_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """One server's line in `status`: documents, tokens/s, latency percentiles and the concurrency it reached."""
    return {
        "url": figures.get("url"),
        "documents": figures.get("answered", 0),
        "completion_tokens_per_s": figures.get("completion_tokens_per_s"),
        "p50_ms": figures.get("p50_ms"),
        "p95_ms": figures.get("p95_ms"),
        "p99_ms": figures.get("p99_ms"),
        "concurrency": {
            "max": figures.get("concurrency_max"),
            "mean": figures.get("concurrency_mean"),
            "final": figures.get("concurrency_final"),
            "source": figures.get("concurrency_source"),
        },
        "rate_limited": figures.get("rate_limited", 0),
        "timeouts": figures.get("timeouts", 0),
        "outages": figures.get("outages", 0),
        "hedges_sent": figures.get("hedges_sent", 0),
    }


def server_rows(servers: list[dict[str, Any]]) -> list[list[Any]]:
    """`status` servers as table rows, SERVER_COLUMNS in order."""
    return [
        [
            s["url"],
            s["documents"],
            s["completion_tokens_per_s"],
            s["p50_ms"],
            s["p95_ms"],
            s["p99_ms"],
            f"{s['concurrency']['mean']} (max {s['concurrency']['max']}, now {s['concurrency']['final']})",
            s["rate_limited"],
            s["timeouts"],
            s["outages"],
            s["hedges_sent"],
        ]
        for s in servers
    ]


def jobs_table(store: JobStore) -> list[dict[str, Any]]:
    return [
        {
            "job_id": j.id,
            "state": j.state.value,
            "backend": j.manifest["backend"],
            "model": j.manifest["model"],
            "documents": len(j.documents()),
            "created_at": j.manifest.get("created_at", ""),
        }
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
