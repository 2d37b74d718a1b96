"""Ledger entries read back from a job folder: one per answer the provider returned or owed, one per batch, one per job.

Everything here is derived from files the stages already wrote (job.json, results.jsonl, superseded/,
log.jsonl), so the ledger can always be rebuilt from the job folders and never disagrees with them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from extractor.collect.results import OUTCOMES, classify_line, iter_answer_lines, iter_results
from extractor.job_files import Remote
from extractor.jobs import Job
from extractor.lanes import describe, info_for
from extractor.pricing import estimate_cost
from extractor.spec.schema import load_spec
from extractor.storage import iter_jsonl

# Outcomes where the provider sent an answer back; the others (http_error, expired, missing) never got one.
ANSWERED = frozenset({"ok", "schema_invalid", "truncated", "refusal"})
VERDICTS = ("grounded", "fuzzy", "leaked", "ungrounded")
BATCH_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class JobEntries:
    job: dict[str, Any]
    requests: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    servers: list[dict[str, Any]] = field(default_factory=list)


def fingerprint(job: Job) -> str:
    """Changes whenever a stage writes something the entries are read from."""
    h = hashlib.sha256((job.path / "job.json").read_bytes())
    for path in (job.results_path, job.log_path):
        if path.exists():
            st = path.stat()
            h.update(f"|{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def read_entries(job: Job) -> JobEntries:
    latencies = _request_latencies(job)
    requests = _request_entries(job, latencies) if job.results_path.exists() else []
    lane_ends = _lane_ends(job)
    row = _job_entry(job, requests)
    row.update(_hedging(job, [end for _, end in lane_ends]))
    return JobEntries(job=row, requests=requests, batches=_batch_entries(job), servers=_server_entries(job, lane_ends))


def _job_entry(job: Job, requests: list[dict[str, Any]]) -> dict[str, Any]:
    m = job.manifest
    outcomes = m.get("outcomes", {})
    verify = m.get("verify") or {}
    entities, relations = verify.get("entities", {}), verify.get("relations", {})
    commit = m.get("commit") or {}
    row: dict[str, Any] = {
        "job_id": job.id,
        "created_at": m.get("created_at"),
        "updated_at": m.get("updated_at"),
        "state": m["state"],
        "backend": m["backend"],
        "model": m["model"],
        "spec_name": m.get("spec", {}).get("name"),
        "schema_sha256": m.get("spec", {}).get("sha256"),
        "prompt_sha256": m.get("prompt", {}).get("sha256"),
        "prompt_version": str(m.get("prompt", {}).get("version", "")),
        "source": m.get("source"),
        "documents": len(m.get("documents", [])),
        "skipped": len(m.get("skipped", [])),
        "requests": sum(s.get("lines", 0) for s in m.get("shards", [])),
        "prompt_tokens": sum(r["prompt_tokens"] for r in requests),
        "completion_tokens": sum(r["completion_tokens"] for r in requests),
        "cost_usd": round(sum(r["cost_usd"] or 0.0 for r in requests), 8),
        "superseded_usd": round(sum(r["cost_usd"] or 0.0 for r in requests if r["superseded"]), 8),
        "batch_discount": (m.get("cost") or {}).get("batch_discount"),
        "verified": int(bool(verify)),
        "clean": verify.get("clean"),
        "quarantined": verify.get("quarantined"),
        "failed": verify.get("failed"),
        "committed_nodes": commit.get("nodes"),
        "committed_relationships": commit.get("relationships"),
        "fingerprint": fingerprint(job),
    }
    gate = m.get("gate") or {}
    row.update(
        gate_passed=gate.get("passed"),
        gate_rejected=gate.get("rejected"),
        gate_failed=gate.get("failed"),
        gate_saved_usd=gate.get("saved_usd"),
    )
    for outcome in OUTCOMES:
        row[f"n_{outcome}"] = outcomes.get(outcome) if outcomes else None
    for verdict in VERDICTS:
        row[verdict] = entities.get(verdict) if verify else None
        row[f"rel_{verdict}"] = relations.get(verdict) if verify else None
    return row


def _request_entries(job: Job, latencies: dict[str, list[float | None]]) -> list[dict[str, Any]]:
    """The current answer of every document, then every answer a retry set aside (those were billed too)."""
    m = job.manifest
    attempts: dict[str, int] = m.get("attempts", {})
    batch = describe(m["backend"]).is_batch
    rows = []
    servers = _answer_servers(job) if not batch else {}
    for result in iter_results(job):
        cid = result["custom_id"]
        attempt = attempts.get(cid, 1)
        seen = latencies.get(cid, [])
        rows.append(
            {
                **_request_row(
                    job,
                    result,
                    attempt=attempt,
                    superseded=False,
                    latency=seen[-1] if seen else None,
                    cost=result.get("cost_usd"),
                    batch=batch,
                ),
                "server": servers.get(cid),
            }
        )
    doc_ids = {d["custom_id"]: d["doc_id"] for d in job.documents()}
    spec = None
    for path in sorted((job.path / "superseded").glob("attempt-*/*/*.jsonl")):
        attempt = int(path.parts[-3].split("-", 1)[1]) - 1  # set aside when attempt N began: written by N-1
        spec = spec or load_spec(Path(m["spec"]["path"]))
        for line in iter_answer_lines(path):
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid not in doc_ids:
                continue
            row = classify_line(line, spec)
            usage = row.get("usage") or {}
            cost = estimate_cost(
                row.get("model") or m["model"],
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                batch=batch,
                backend=m["backend"],
            )
            seen = latencies.get(cid, [])
            latency = seen[attempt - 1] if 0 < attempt <= len(seen) - 1 else None
            rows.append(
                _request_row(
                    job,
                    {**row, "custom_id": cid, "doc_id": doc_ids[cid]},
                    attempt=attempt,
                    superseded=True,
                    latency=latency,
                    cost=cost,
                    batch=batch,
                )
            )
    return rows


def _request_row(
    job: Job,
    result: dict[str, Any],
    *,
    attempt: int,
    superseded: bool,
    latency: float | None,
    cost: float | None,
    batch: bool,
) -> dict[str, Any]:
    m = job.manifest
    usage = result.get("usage") or {}
    outcome = result["outcome"]
    errors = result.get("errors") or []
    return {
        "job_id": job.id,
        "custom_id": result["custom_id"],
        "attempt": attempt,
        "superseded": int(superseded),
        "doc_id": result.get("doc_id"),
        "backend": m["backend"],
        "model": result.get("model") or m["model"],
        "prompt_sha256": m.get("prompt", {}).get("sha256"),
        "schema_sha256": m.get("spec", {}).get("sha256"),
        "outcome": outcome,
        "schema_valid": int(outcome == "ok") if outcome in ANSWERED else None,
        "truncated": int(outcome == "truncated"),
        "refused": int(outcome == "refusal"),
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "cost_usd": None if cost is None else round(cost, 8),
        "batch": int(batch),
        "latency_ms": latency,
        "finish_reason": result.get("finish_reason"),
        "error": "; ".join(errors)[:300] or None,
        "server": None,
    }


def _request_latencies(job: Job) -> dict[str, list[float | None]]:
    """Per custom_id, the latency of each local-lane request event in the order sent (one per try that ended)."""
    found: dict[str, list[float | None]] = defaultdict(list)
    if job.log_path.exists():
        for event in iter_jsonl(job.log_path):
            if isinstance(event, dict) and event.get("event") == "request" and event.get("custom_id"):
                found[event["custom_id"]].append(event.get("latency_ms"))
    return found


def _answer_servers(job: Job) -> dict[str, str]:
    """Per custom_id, the local server whose answer was kept (the latest answered request event)."""
    found: dict[str, str] = {}
    if job.log_path.exists():
        for event in iter_jsonl(job.log_path):
            if (
                isinstance(event, dict)
                and event.get("event") == "request"
                and event.get("status") == 200
                and event.get("server")
                and event.get("custom_id")
            ):
                found[event["custom_id"]] = event["server"]
    return found


def _lane_ends(job: Job) -> list[tuple[str, dict[str, Any]]]:
    """(run name as in `batches`, its lane_end event) for each local lane run that ended."""
    ends: list[tuple[str, dict[str, Any]]] = []
    if describe(job.manifest["backend"]).is_batch or not job.log_path.exists():  # lane runs are the chat servers'
        return ends
    runs = 0
    open_run = False
    for event in iter_jsonl(job.log_path):
        if not isinstance(event, dict):
            continue
        if event.get("event") == "lane_start":
            runs += 1
            open_run = True
        elif event.get("event") == "lane_end" and open_run:
            ends.append((f"local-{runs}", event))
            open_run = False
    return ends


def _server_entries(job: Job, lane_ends: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for run, end in lane_ends:
        for figures in end.get("servers") or []:
            rows.append(
                {
                    "job_id": job.id,
                    "run": run,
                    **{k: v for k, v in figures.items() if k != "url"},
                    "url": figures.get("url"),
                }
            )
    return rows


def _hedging(job: Job, ends: list[dict[str, Any]]) -> dict[str, Any]:
    """What `--hedge-after` sent twice and what the answers that were not kept cost (priced like any answer)."""
    hedged = sum(int(e.get("hedged") or 0) for e in ends)
    prompt = sum(int(e.get("duplicate_prompt_tokens") or 0) for e in ends)
    completion = sum(int(e.get("duplicate_completion_tokens") or 0) for e in ends)
    cost = estimate_cost(job.manifest["model"], prompt, completion, batch=False, backend=job.manifest["backend"])
    return {
        "hedged": hedged,
        "hedge_duplicates": sum(int(e.get("duplicates") or 0) for e in ends),
        "hedge_prompt_tokens": prompt,
        "hedge_completion_tokens": completion,
        "hedge_cost_usd": None if cost is None else round(cost, 8),
    }


def _batch_entries(job: Job) -> list[dict[str, Any]]:
    events = list(iter_jsonl(job.log_path)) if job.log_path.exists() else []
    remote = job.manifest.get("remote") or {}
    if info_for(job).is_batch:
        return _openai_batches(job, remote, events)
    if not describe(job.manifest["backend"]).is_batch:
        return _local_runs(job, events)
    return []  # a batch job whose answers were taken in from files: no batch ran


def _openai_batches(job: Job, remote: Remote, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per batch: turnaround from its creation to the first look that saw it ended (both from log.jsonl)."""
    created: dict[str, str] = {}
    ended: dict[str, str] = {}
    for e in events:
        name = e.get("batch")
        if e.get("event") in ("batch_created", "batch_adopted") and name:
            created.setdefault(name, e["at"])
        elif e.get("event") == "batch_status" and e.get("status") in BATCH_TERMINAL and name:
            ended.setdefault(name, e["at"])
    rows = []
    for entry in remote.get("batches", []):
        name, counts = entry["name"], entry.get("request_counts") or {}
        start, end = created.get(name), ended.get(name)
        rows.append(
            {
                "job_id": job.id,
                "name": name,
                "kind": "openai",
                "batch_id": entry.get("batch_id"),
                "attempt": entry.get("attempt", 1),
                "status": entry.get("status") or ("not sent" if entry.get("skipped") else "sending"),
                "lines": entry["lines"],
                "completed": counts.get("completed", 0),
                "failed": counts.get("failed", 0),
                "created_at": start,
                "ended_at": end,
                "seconds": _seconds_between(start, end),
            }
        )
    return rows


def _local_runs(job: Job, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run of the local lane (lane_start … lane_end); a run with no end was interrupted."""
    rows: list[dict[str, Any]] = []
    for e in events:
        if e.get("event") == "lane_start":
            rows.append(
                {
                    "job_id": job.id,
                    "name": f"local-{len(rows) + 1}",
                    "kind": "local",
                    "batch_id": None,
                    "attempt": len(rows) + 1,
                    "status": "interrupted",
                    "lines": 0,
                    "completed": 0,
                    "failed": 0,
                    "created_at": e["at"],
                    "ended_at": None,
                    "seconds": None,
                }
            )
        elif e.get("event") == "lane_end" and rows and rows[-1]["ended_at"] is None:
            rows[-1].update(
                status="completed",
                lines=e.get("sent", 0),
                completed=e.get("answered", 0),
                failed=e.get("failed", 0),
                ended_at=e["at"],
                seconds=e.get("seconds"),
            )
    return rows


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
