"""`retry` and `cancel`: resend only the lines that did not come back well; stop what is still running."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from extractor.collect.results import iter_results, malformed_line
from extractor.errors import BadInput
from extractor.jobs import Job, State
from extractor.lanes import describe, lane_for
from extractor.lanes.submit import SubmitOptions
from extractor.prepare.requests import iter_request_lines
from extractor.storage import atomic_write_bytes

DEFAULT_MAX_ATTEMPTS = 2
# Resent: answers that never came, or came cut off (sent again with a larger output budget where the lane
# can). Not resent: schema-invalid answers and refusals — at temperature 0 the same request gets the same answer.
RETRY_OUTCOMES = frozenset({"http_error", "expired", "missing", "truncated"})


def retry_job(
    job: Job,
    options: SubmitOptions,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Set aside the earlier lines of the failed documents (kept in superseded/), then send just those again."""
    job.require(State.COLLECTED, State.VERIFIED, State.FAILED, State.CANCELLED, doing="be retried")
    if not job.results_path.is_file():
        raise BadInput(f"Job {job.id} has no results to retry — run `extractor collect {job.id}` first")
    attempts: dict[str, int] = dict(job.manifest.get("attempts", {}))
    # A deterministic error (400 unsupported_value, invalid schema, unknown model …) fails again: not resent.
    outcome = {
        r["custom_id"]: r["outcome"]
        for r in iter_results(job)
        if r["outcome"] in RETRY_OUTCOMES and (r.get("error") or {}).get("kind") != "deterministic"
    }
    retryable = {cid for cid in outcome if attempts.get(cid, 1) < max_attempts}
    if not retryable:
        return {"job_id": job.id, "retried": 0, "failed": len(outcome), "capped": len(outcome)}
    attempt = max(attempts.get(cid, 1) for cid in retryable) + 1
    truncated = {cid for cid in retryable if outcome[cid] == "truncated"}

    def set_aside_retried() -> None:
        check_retry_cost(
            job,
            retryable,
            truncated,
            attempt,
            options.max_cost if options.max_cost is not None else job.manifest.get("cost_cap_usd"),
        )
        # A crash from here on is repaired by running `retry` again: results.jsonl still names the same
        # documents until the next collect, and setting aside is idempotent.
        set_aside(job, retryable, attempt)
        for cid in retryable:
            attempts[cid] = attempts.get(cid, 1) + 1

    result = lane_for(job).resend(
        job,
        retryable,
        attempt=attempt,
        truncated=truncated,
        attempts=attempts,
        options=options,
        progress=progress,
        set_aside=set_aside_retried,
    )
    return {
        "job_id": job.id,
        "attempt": attempt,
        "retried": len(retryable),
        "capped": len(set(outcome) - retryable),
        **result,
    }


def check_retry_cost(job: Job, ids: set[str], truncated: set[str], attempt: int, cap: float | None) -> None:
    """Refuse (exit 2, before anything is set aside or sent) a retry that would take the job past its cap.

    The cap covers the job's whole life: what collect recorded as spent (superseded answers included), plus
    this retry at its worst — the retried lines' exact input tokens and every answer at its budget, doubled
    for truncated ones as the retry sends them.
    """
    if cap is None or not describe(job.manifest["backend"]).billed:
        return
    from extractor import pricing
    from extractor.lanes.openai_batch import RETRY_MAX_TOKENS_CAP
    from extractor.prepare import tokens

    model = job.manifest["model"]
    input_tokens = output_tokens = 0
    for line in iter_request_lines(job.request_files()):
        if line["custom_id"] not in ids:
            continue
        body = line["body"]
        input_tokens += tokens.count_request_tokens(body)
        budget = next(
            (
                body[k]
                for k in ("max_completion_tokens", "max_output_tokens", "max_tokens")
                if isinstance(body.get(k), int)
            ),
            0,
        )
        if line["custom_id"] in truncated:
            budget = min(RETRY_MAX_TOKENS_CAP, budget * 2 ** (attempt - 1))
        output_tokens += budget
    estimate = pricing.estimate_cost(model, input_tokens, output_tokens, batch=True)
    if estimate is None:
        raise BadInput(
            f"Job {job.id}: no price is known for model {model}, so the cost cap ${cap:.4f} cannot be"
            " checked — retry without --max-cost"
        )
    spent = float((job.manifest.get("cost") or {}).get("usd") or 0.0)
    spent += float(job.manifest.get("cost_cap_spent_before_usd") or 0.0)
    if spent + estimate > cap:
        raise BadInput(
            f"Job {job.id}: retrying {len(ids)} documents could cost up to ${estimate:.4f} ({input_tokens}"
            f" input tokens, up to {output_tokens} output tokens), and ${spent:.4f} is spent already:"
            f" ${spent + estimate:.4f} in all, over the cap of ${cap:.4f} — raise --max-cost, or lower"
            " --max-attempts"
        )


def set_aside(job: Job, ids: set[str], attempt: int) -> int:
    """Move every output/error line of these requests to superseded/attempt-N/, so only a new answer counts."""
    moved_total = 0
    for directory in (job.output_dir, job.errors_dir):
        for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
            keep: list[bytes] = []
            moved: list[bytes] = []
            for raw in _raw_lines(path):
                (moved if _line_id(raw, path) in ids else keep).append(raw)
            if not moved:
                continue
            aside = job.path / "superseded" / f"attempt-{attempt}" / directory.name / path.name
            earlier = list(_raw_lines(aside)) if aside.is_file() else []
            # The copy first, then the removal: a crash in between loses nothing, and a repeat adds nothing twice.
            atomic_write_bytes(aside, b"".join(earlier + [m for m in moved if m not in set(earlier)]))
            atomic_write_bytes(path, b"".join(keep))
            moved_total += len(moved)
    job.log("superseded", attempt=attempt, lines=moved_total, requests=len(ids))
    return moved_total


def _raw_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                yield raw.rstrip(b"\r\n") + b"\n"


def _line_id(raw: bytes, path: Path) -> str | None:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        line = malformed_line(raw.strip(), path)
    return line.get("custom_id") if isinstance(line, dict) else None


def cancel_job(job: Job) -> dict[str, Any]:
    """Stop a job: remote batches are cancelled and what they finished is kept for `collect`."""
    job.require(State.PREPARED, State.SUBMITTED, doing="be cancelled")
    result = lane_for(job).cancel(job)
    return {"job_id": job.id, "state": job.state.value, **result}
