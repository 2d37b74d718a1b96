"""`report`: cost, latency and quality per job and per backend from the ledger, trends, and the quality check for cron.

Rates, each over what it can be measured on:
  schema_valid_rate = answers valid against the schema / answers returned (ok + schema_invalid + truncated + refusal)
  grounded_rate     = entities found in their own document (grounded + fuzzy) / entities verified
  leak_rate         = entities found only in other documents of the job / entities verified
  quarantine_rate   = documents quarantined / documents verified
A job's trend compares it with the trailing average of up to `window` earlier jobs of the same backend and
model; a watched rate more than `threshold` (absolute, 0.10 = ten points) below that average is flagged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from extractor.errors import BadInput
from extractor.jobs import utcnow
from extractor.lanes import describe
from extractor.prepare.stage import DEFAULT_OPENAI_MODEL
from extractor.pricing import estimate_cost
from extractor.reports.ledger import Ledger
from extractor.stats import percentile

REPORT_FORMAT = "extractor.report/1"
WATCHED = ("grounded_rate", "schema_valid_rate")
TRENDED = ("cost_per_document", "schema_valid_rate", "grounded_rate", "leak_rate", "quarantine_rate")
ANSWER_OUTCOMES = ("n_ok", "n_schema_invalid", "n_truncated", "n_refusal")
VERDICTS = ("grounded", "fuzzy", "leaked", "ungrounded")


@dataclass(frozen=True)
class ReportOptions:
    since: datetime | None = None
    threshold: float = 0.10
    window: int = 5
    price_model: str = DEFAULT_OPENAI_MODEL  # what local tokens are priced as on the OpenAI lanes


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """YYYY-MM-DD (midnight UTC), an ISO timestamp, or Nd (N days ago, for cron lines); a typo names the formats."""
    if (days := re.fullmatch(r"(\d{1,4})d", text.strip())) is not None:
        return (now or datetime.now(UTC)) - timedelta(days=int(days.group(1)))
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"--since {text!r} is not a date — use YYYY-MM-DD, an ISO timestamp like "
            "2026-01-31T02:00:00+00:00, or 7d for the last seven days"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_report(ledger: Ledger, options: ReportOptions) -> dict[str, Any]:
    """Every job's figures and trend (earlier jobs count for trends even when --since hides them), per backend
    totals.
    """
    requests, batches = _by_job(ledger.requests()), _by_job(ledger.batches())
    figures = [_job_figures(j, requests[j["job_id"]], batches[j["job_id"]], options) for j in ledger.jobs()]
    _add_trends(figures, options)
    shown = [f for f in figures if options.since is None or _when(f["created_at"]) >= options.since]
    return {
        "format": REPORT_FORMAT,
        "generated_at": utcnow(),
        "ledger": str(ledger.path),
        "since": options.since.isoformat() if options.since else None,
        "threshold": options.threshold,
        "window": options.window,
        "price_model": options.price_model,
        "jobs": shown,
        "backends": _backend_figures(shown, requests, batches),
        "alerts": [a for f in shown for a in f["flags"]],
        "saved_by_gates_usd": _round(sum(f["gate"]["saved_usd"] or 0.0 for f in shown if f["gate"])),
        "check": _check(figures, shown, options),
    }


def _job_figures(
    job: dict[str, Any], requests: list[dict[str, Any]], batches: list[dict[str, Any]], options: ReportOptions
) -> dict[str, Any]:
    documents = job["documents"] or 0
    cost = job["cost_usd"] if requests else None
    entities = _sum(job, VERDICTS)
    return {
        "job_id": job["job_id"],
        "created_at": job["created_at"],
        "state": job["state"],
        "backend": job["backend"],
        "model": job["model"],
        "documents": documents,
        "answers": _sum(job, ANSWER_OUTCOMES),
        "valid_answers": job["n_ok"],
        "cost_usd": cost,
        "cost_per_document": _ratio(cost, documents),
        "tokens": {"prompt": job["prompt_tokens"] or 0, "completion": job["completion_tokens"] or 0},
        "latency_ms": _latency(job["backend"], requests, batches),
        "schema_valid_rate": _ratio(job["n_ok"], _sum(job, ANSWER_OUTCOMES)),
        "grounded_rate": _ratio(_sum(job, ("grounded", "fuzzy")), entities),
        "leak_rate": _ratio(job["leaked"], entities),
        "quarantine_rate": _ratio(job["quarantined"], _sum(job, ("clean", "quarantined", "failed"))),
        "entities": {v: job[v] for v in VERDICTS},
        "quarantined": job["quarantined"],
        "lanes": _lanes(job, cost, options) if requests else None,
        "gate": None
        if job.get("gate_passed") is None
        else {
            "passed": job["gate_passed"],
            "rejected": job["gate_rejected"],
            "failed": job["gate_failed"],
            "saved_usd": job["gate_saved_usd"],
        },
        "trend": {},
        "flags": [],
    }


def _latency(backend: str, requests: list[dict[str, Any]], batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Per request where each request was timed (local lane); per batch turnaround where only batches were (OpenAI)."""
    per_request = [r["latency_ms"] for r in requests if r["latency_ms"] is not None]
    if per_request or _per_request_lane(backend):
        return {"kind": "request", **_percentiles(per_request)}
    return {"kind": "batch", **_percentiles([b["seconds"] * 1000 for b in batches if b["seconds"] is not None])}


def _per_request_lane(backend: str) -> bool:
    try:
        return describe(backend).per_request_latency
    except BadInput:  # a ledger row of a lane this version does not know
        return False


def _percentiles(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": None if not values else round(percentile(values, q / 100) or 0.0, 1) for q in (50, 95, 99)}


def _lanes(job: dict[str, Any], cost: float | None, options: ReportOptions) -> dict[str, Any]:
    """What the job's tokens cost, or would have cost, on each lane: the local lane bills nothing."""
    priced_as = job["model"] if _priced_as_itself(job["backend"]) else options.price_model
    prompt, completion = job["prompt_tokens"] or 0, job["completion_tokens"] or 0
    batch = estimate_cost(priced_as, prompt, completion, batch=True)
    live = estimate_cost(priced_as, prompt, completion, batch=False)
    return {
        "priced_as": priced_as,
        "local_usd": 0.0,
        "actual_usd": cost,
        "openai_batch_usd": _round(batch),
        "openai_live_usd": _round(live),
        "saved_vs_live_usd": None if live is None or cost is None else _round(live - cost),
    }


def _priced_as_itself(backend: str) -> bool:
    """The job's model has an OpenAI price (its lane sends OpenAI models); else it is priced as price_model."""
    try:
        return describe(backend).openai_api
    except BadInput:
        return False


def _add_trends(figures: list[dict[str, Any]], options: ReportOptions) -> None:
    earlier: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for fig in figures:
        group = earlier[(fig["backend"], fig["model"])]
        for metric in TRENDED:
            past = [f[metric] for f in group if f[metric] is not None][-options.window :]
            if fig[metric] is None or not past:
                continue
            average = sum(past) / len(past)
            delta = fig[metric] - average
            fig["trend"][metric] = {"trailing_average": _round(average), "delta": _round(delta), "jobs": len(past)}
            if metric in WATCHED and delta < -options.threshold:
                fig["flags"].append(
                    {
                        "job_id": fig["job_id"],
                        "metric": metric,
                        "value": fig[metric],
                        "trailing_average": _round(average),
                        "delta": _round(delta),
                        "message": f"{metric.replace('_', ' ')} {fig[metric]:.2f} is {-delta:.2f} below the average "
                        f"{average:.2f} of the {len(past)} earlier {fig['backend']}/{fig['model']} job(s)",
                    }
                )
        group.append(fig)


def _check(figures: list[dict[str, Any]], shown: list[dict[str, Any]], options: ReportOptions) -> dict[str, Any]:
    """With --since every job shown counts; without, the newest job of each backend/model (old alarms don't repeat)."""
    if options.since is not None:
        watched = shown
    else:
        newest: dict[tuple[str, str], dict[str, Any]] = {}
        for fig in figures:
            newest[(fig["backend"], fig["model"])] = fig
        watched = list(newest.values())
    flags = [flag for fig in watched for flag in fig["flags"]]
    return {"failed": bool(flags), "jobs_checked": [f["job_id"] for f in watched], "flags": flags}


def _backend_figures(
    figures: list[dict[str, Any]], requests: dict[str, list[dict[str, Any]]], batches: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    rows = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fig in figures:
        groups[fig["backend"]].append(fig)
    for backend, figs in sorted(groups.items()):
        documents = sum(f["documents"] for f in figs)
        priced = [f["cost_usd"] for f in figs if f["cost_usd"] is not None]
        cost = round(sum(priced), 6) if priced else None
        entities = {v: sum(f["entities"][v] or 0 for f in figs) for v in VERDICTS}
        total = sum(entities.values())
        answers = sum(f["answers"] or 0 for f in figs)
        valid = sum(f["valid_answers"] or 0 for f in figs)
        verified = [f for f in figs if f["quarantine_rate"] is not None]
        lanes = [f["lanes"] for f in figs if f["lanes"]]
        rows.append(
            {
                "backend": backend,
                "jobs": len(figs),
                "documents": documents,
                "cost_usd": cost,
                "cost_per_document": _ratio(cost, documents),
                "tokens": {k: sum(f["tokens"][k] for f in figs) for k in ("prompt", "completion")},
                "latency_ms": _latency(
                    backend,
                    [r for f in figs for r in requests[f["job_id"]]],
                    [b for f in figs for b in batches[f["job_id"]]],
                ),
                "schema_valid_rate": _ratio(valid, answers),
                "grounded_rate": _ratio(entities["grounded"] + entities["fuzzy"], total),
                "leak_rate": _ratio(entities["leaked"], total),
                "quarantine_rate": _ratio(
                    sum(f["quarantined"] or 0 for f in verified), sum(f["documents"] for f in verified)
                )
                if verified
                else None,
                "openai_batch_usd": _round(sum(lane["openai_batch_usd"] or 0 for lane in lanes)) if lanes else None,
                "openai_live_usd": _round(sum(lane["openai_live_usd"] or 0 for lane in lanes)) if lanes else None,
                "saved_vs_live_usd": _round(sum(lane["saved_vs_live_usd"] or 0 for lane in lanes)) if lanes else None,
            }
        )
    return rows


def _by_job(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["job_id"]].append(row)
    return grouped


def _sum(row: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    values = [row[k] for k in keys]
    return None if all(v is None for v in values) else sum(v or 0 for v in values)


def _ratio(part: float | int | None, whole: float | int | None) -> float | None:
    return None if part is None or not whole else round(part / whole, 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _when(stamp: str | None) -> datetime:
    moment = datetime.fromisoformat(stamp) if stamp else datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
