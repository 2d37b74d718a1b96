"""The OpenAI Batch lane: each request shard uploaded and sent as one batch, polled, and its answers downloaded.

The manifest's `remote.batches` holds one entry per batch (a shard of `requests/`, or a retry's
child input under `retries/<attempt>/`). Each step is recorded the moment it is taken, and the two
steps that create something remotely are marked *before* they are taken (`uploading_since`,
`creating_since`): a re-run after a crash that finds such a mark looks for what the crashed run
created — the file by its unique name, the batch by its metadata — and adopts it instead of paying
for it twice.

When a batch ends early (expired, cancelled, failed) the requests it never ran get error lines of
their own in `errors/<name>.unanswered.jsonl`, in the documented batch format (`batch_expired`,
`batch_cancelled`, `batch_failed`), so results.py classifies every document from files alone.

Batches go out in waves. Each model has an enqueued-token limit (the Batch API's "batch queue limit": input
tokens of its unfinished batches); a batch over it fails whole with `token_limit_exceeded` ("Enqueued token
limit reached ... Please try again once some in_progress batches have been completed", openai-python#2084).
So a shard is sent only while the tokens of this job's unfinished batches plus its own stay under
`remote.max_enqueued_tokens`; the rest wait, and each poll sends what then fits. A batch that fails with
`token_limit_exceeded` anyway (other jobs share the limit) is put back in the queue and created again
later, under a new `extractor_try` metadata value so that a crashed re-create never adopts the failed one.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from extractor.collect.results import answered_ids
from extractor.errors import BadInput, ExtractorError
from extractor.jobs import Job, State, utcnow
from extractor.lanes import BatchesPending, LaneInfo, Progress, WaitOptions
from extractor.lanes.openai_client import BatchApi, NotFound
from extractor.prepare.models import ENDPOINT_URLS, enqueued_limit
from extractor.prepare.requests import ShardWriter, iter_request_lines
from extractor.storage import atomic_write_jsonl, iter_jsonl

if TYPE_CHECKING:
    from extractor.lanes.submit import SubmitOptions

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
UNANSWERED = {
    "expired": ("batch_expired", "the batch's 24h window ended before this request ran"),
    "cancelled": ("batch_cancelled", "the batch was cancelled before this request ran"),
    "failed": ("batch_failed", "the batch failed before running any request"),
}
# Clock skew allowed between this machine and the API when looking for what a crashed run created.
LOOKUP_SLACK_S = 3600.0
POLL_GROWTH = 1.5
# A truncated answer is retried with twice the output budget per attempt, up to this many tokens.
RETRY_MAX_TOKENS_CAP = 32_768
TOKEN_LIMIT = "token_limit_exceeded"
# Input tokens of a request file whose tokens were not counted at prepare: at most one per 3 bytes of
# JSON (English runs ~4 characters a token), so the wave stays under the limit.
BYTES_PER_TOKEN_FLOOR = 3


def is_openai(job: Job) -> bool:
    return job.manifest.get("remote", {}).get("kind") == "openai"


def entries(job: Job) -> list[dict[str, Any]]:
    return job.manifest["remote"]["batches"]


# ---------------------------------------------------------------- submit


def submit_openai(
    job: Job, *, progress: Progress | None = None, max_enqueued_tokens: int | None = None
) -> dict[str, Any]:
    """Upload and create a batch for every shard that fits the enqueued-token budget; a re-run sends only what is
    missing.
    """
    remote = job.manifest.get("remote")
    if remote and remote.get("kind") == "file":
        raise BadInput(
            f"Job {job.id} took in result files (collect --output-file), so it is not sent again — "
            f"run `extractor retry {job.id}` for the documents still without an answer"
        )
    api = BatchApi.from_env(log=job.log)
    if not remote or remote.get("kind") != "openai":
        remote = job.manifest["remote"] = {
            "kind": "openai",
            "batches": [
                {
                    "name": Path(s["file"]).stem,
                    "attempt": 1,
                    "input": s["file"],
                    "lines": s["lines"],
                    "bytes": s["bytes"],
                    "tokens": shard_tokens(s),
                }
                for s in job.manifest["shards"]
            ],
        }
    remote["endpoint"] = api.endpoint
    if max_enqueued_tokens is not None or "max_enqueued_tokens" not in remote:
        remote["max_enqueued_tokens"] = enqueued_limit(job.manifest["model"], max_enqueued_tokens)
    check_fits(job)
    for entry in remote["batches"]:
        entry.pop("skipped", None)  # an explicit submit sends what a cancel held back
    job.save()
    sent = send_pending(job, api, progress)
    if job.state is not State.SUBMITTED:
        job.transition(State.SUBMITTED)
    return {
        "job_id": job.id,
        "backend": "openai",
        "endpoint": api.endpoint,
        "batches": len(remote["batches"]),
        "requests": sum(e["lines"] for e in remote["batches"]),
        "max_enqueued_tokens": remote["max_enqueued_tokens"],
        **sent,
    }


def shard_tokens(shard: Mapping[str, Any]) -> int:
    """The input tokens a request file puts in the queue: counted at prepare, else bounded from its size."""
    counted = shard.get("input_tokens")
    return int(counted) if isinstance(counted, int) else -(-int(shard["bytes"]) // BYTES_PER_TOKEN_FLOOR)


def _limit(job: Job) -> int:
    remote = job.manifest["remote"]
    return remote.get("max_enqueued_tokens") or enqueued_limit(job.manifest["model"])


def check_fits(job: Job) -> None:
    """Refuse (exit 2, before anything is sent) a request file that alone holds more tokens than the budget."""
    limit = _limit(job)
    for entry in entries(job):
        if not entry.get("batch_id") and not entry.get("skipped") and _tokens(entry) > limit:
            raise BadInput(
                f"Job {job.id}: {entry['input']} holds about {_tokens(entry):,} input tokens, over the "
                f"enqueued-token limit of {limit:,} for {job.manifest['model']} — prepare again with a "
                "smaller --max-lines-per-file, or raise --max-enqueued-tokens (env "
                "EXTRACTOR_MAX_ENQUEUED_TOKENS) to your organisation's batch queue limit"
            )


def _tokens(entry: dict[str, Any]) -> int:
    return int(entry["tokens"]) if isinstance(entry.get("tokens"), int) else shard_tokens(entry)


def enqueued_tokens(job: Job) -> int:
    """Input tokens of this job's batches that are created and not finished: what the queue holds for it."""
    return sum(_tokens(e) for e in entries(job) if e.get("batch_id") and e.get("status") not in TERMINAL)


def send_pending(job: Job, api: BatchApi, progress: Progress | None = None) -> dict[str, int]:
    """Send, in order, the unsent batches that fit under the enqueued-token budget; the rest wait for the next call."""
    counts: Counter[str] = Counter()
    limit, held = _limit(job), enqueued_tokens(job)
    for entry in entries(job):
        if entry.get("batch_id") or entry.get("skipped"):
            continue
        # An interrupted create is finished first, whatever the budget: it may already exist remotely.
        over = held + _tokens(entry) > limit
        # Refused for the limit before: "try again once some in_progress batches have been completed".
        refused_before = bool(entry.get("token_limit_failures")) and held > 0
        if "creating_since" not in entry and held > 0 and (over or refused_before):
            counts["waiting"] += 1
            continue
        if not counts["created"] and not counts["adopted"]:
            job.manifest["remote"]["waves"] = job.manifest["remote"].get("waves", 0) + 1
        entry["wave"] = job.manifest["remote"]["waves"]
        counts[_send(job, api, entry)] += 1
        held += _tokens(entry)
        if progress is not None:
            for _ in range(entry["lines"]):
                progress(None)
    if counts["waiting"]:
        job.log("batches_waiting", batches=counts["waiting"], enqueued_tokens=held, limit=limit)
    return {"created": counts["created"], "adopted": counts["adopted"], "waiting": counts["waiting"]}


def _send(job: Job, api: BatchApi, entry: dict[str, Any]) -> str:
    if not entry.get("input_file_id"):
        path = job.path / entry["input"]
        filename = f"{job.id}.{entry['name']}.jsonl"  # unique per job and batch: how a re-run recognises it
        found = None
        if "uploading_since" in entry:
            found = api.find_file(filename, path.stat().st_size, entry["uploading_since"] - LOOKUP_SLACK_S)
            if found:
                job.log("file_adopted", batch=entry["name"], file_id=found)
        if found is None:
            entry["uploading_since"] = time.time()
            job.save()
            found = api.upload(path, filename, entry["uploading_since"] - LOOKUP_SLACK_S)
            job.log("file_uploaded", batch=entry["name"], file_id=found, bytes=path.stat().st_size)
        entry["input_file_id"] = found
        entry.pop("uploading_since")
        job.save()

    metadata = _metadata(job, entry)
    batch, outcome = None, "adopted"
    if "creating_since" in entry:
        batch = api.find_batch(metadata, entry["creating_since"] - LOOKUP_SLACK_S)
    if batch is None:
        entry["creating_since"] = time.time()
        job.save()
        since = entry["creating_since"] - LOOKUP_SLACK_S
        url = ENDPOINT_URLS[job.manifest.get("settings", {}).get("endpoint", "chat")]
        batch, outcome = api.create_batch(entry["input_file_id"], url, metadata, since), "created"
    entry.pop("creating_since")
    record(entry, batch)
    job.save()
    job.log(f"batch_{outcome}", batch=entry["name"], batch_id=entry["batch_id"], lines=entry["lines"])
    return outcome


def _metadata(job: Job, entry: dict[str, Any]) -> dict[str, str]:
    tried = len(entry.get("token_limit_failures", []))
    return {
        "extractor_job": job.id,
        "extractor_shard": entry["name"],
        "extractor_attempt": str(entry["attempt"]),
        **({"extractor_try": str(tried + 1)} if tried else {}),
    }


def record(entry: dict[str, Any], batch: dict[str, Any]) -> bool:
    """Copy what the API says about a batch into its entry; True when its status or counts changed."""
    before = (entry.get("status"), entry.get("request_counts"))
    counts = batch.get("request_counts") or {}
    entry.update(
        batch_id=batch["id"],
        status=batch["status"],
        request_counts={k: int(counts.get(k) or 0) for k in ("total", "completed", "failed")},
        output_file_id=batch.get("output_file_id"),
        error_file_id=batch.get("error_file_id"),
    )
    errors = (batch.get("errors") or {}).get("data") or []
    if errors:
        entry["errors"] = [
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") else "")
            for e in errors[:20]
        ]
    return before != (entry["status"], entry["request_counts"])


def requeue(job: Job, entry: dict[str, Any]) -> None:
    """A batch refused for the enqueued-token limit: forget it and send the same file again when there is room."""
    failed = entry["batch_id"]
    entry.setdefault("token_limit_failures", []).append(failed)
    for key in ("batch_id", "status", "request_counts", "output_file_id", "error_file_id", "errors"):
        entry.pop(key, None)
    job.save()
    job.log(
        "batch_requeued",
        batch=entry["name"],
        failed_batch_id=failed,
        reason=TOKEN_LIMIT,
        enqueued_tokens=enqueued_tokens(job),
        limit=_limit(job),
    )


# ---------------------------------------------------------------- poll and download


def pending_requests(job: Job) -> int:
    """Request lines in batches whose answers are not downloaded yet (the progress bar's total)."""
    return sum(e["lines"] for e in entries(job) if not e.get("collected")) if is_openai(job) else 0


def fetch_batches(job: Job, wait: WaitOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Poll until every batch has ended (or once, without wait) and download each finished batch's files."""
    wait = wait or WaitOptions()
    if all(e.get("collected") for e in entries(job)):
        return batch_progress(job)  # everything is on disk: collect again needs no key and no network
    api = BatchApi.from_env(log=job.log)
    if any(not e.get("batch_id") and not e.get("skipped") for e in entries(job)):
        job.log("submit_resumed", reason="batches recorded but not sent (waiting for room, or an interrupted submit)")
        send_pending(job, api)
    watched = {e["name"] for e in entries(job) if not e.get("collected")}
    deadline = None if wait.timeout_s is None else time.monotonic() + wait.timeout_s
    interval, shown = wait.poll_interval_s, 0
    while True:
        refresh(job, api)
        download_finished(job, api)
        if any(not e.get("batch_id") and not e.get("skipped") for e in entries(job)):
            send_pending(job, api)  # the next wave: what fits now that earlier batches finished
        done = sum(_done(e) for e in entries(job) if e["name"] in watched)
        if progress is not None:
            for _ in range(done - shown):
                progress(None)
        shown = max(shown, done)
        pending = [e for e in entries(job) if not e.get("collected")]
        if not pending:
            return batch_progress(job)
        remaining = None if deadline is None else deadline - time.monotonic()
        if not wait.wait or (remaining is not None and remaining <= 0):
            raise BatchesPending(_pending_message(job, pending, waited=wait.wait))
        pause = interval * random.uniform(0.8, 1.2)  # jitter: many jobs polling together drift apart
        time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
        interval = min(interval * POLL_GROWTH, wait.max_interval_s)


def refresh(job: Job, api: BatchApi) -> None:
    """One look at every unfinished batch; each status change goes to the log."""
    changed = False
    for entry in entries(job):
        if not entry.get("batch_id") or entry.get("status") in TERMINAL:
            continue
        before = entry.get("status")
        changed |= record(entry, api.retrieve(entry["batch_id"]))
        if entry["status"] == "failed" and any(e.startswith(TOKEN_LIMIT) for e in entry.get("errors", [])):
            requeue(job, entry)
            continue
        if entry["status"] != before:
            job.log(
                "batch_status",
                batch=entry["name"],
                batch_id=entry["batch_id"],
                status=entry["status"],
                request_counts=entry["request_counts"],
            )
    if changed:
        job.save()


def download_finished(job: Job, api: BatchApi) -> None:
    """Each ended batch's output and error files into output/ and errors/, once; then its unanswered lines."""
    for entry in entries(job):
        if entry.get("collected"):
            continue
        if entry.get("skipped") and not entry.get("batch_id"):
            _write_unanswered(job, entry, "batch_cancelled", "the job was cancelled before this request was sent")
        elif entry.get("status") in TERMINAL:
            _download(job, api, entry)
        else:
            continue
        # Downloaded once only: a later retry sets superseded lines aside, and they must not come back.
        entry["collected"] = True
        job.save()


def _download(job: Job, api: BatchApi, entry: dict[str, Any]) -> None:
    name, gone = entry["name"], []
    for file_id, directory in (
        (entry.get("output_file_id"), job.output_dir),
        (entry.get("error_file_id"), job.errors_dir),
    ):
        if not file_id:
            continue
        try:
            size = api.download(file_id, directory / f"{name}.jsonl")
        except NotFound:
            gone.append(file_id)
            continue
        job.log("file_downloaded", batch=name, file_id=file_id, into=f"{directory.name}/{name}.jsonl", bytes=size)
    if entry["status"] in UNANSWERED:
        code, message = UNANSWERED[entry["status"]]
        if entry["status"] == "failed" and entry.get("errors"):
            message = f"{message}: {'; '.join(entry['errors'][:3])}"
        _write_unanswered(job, entry, code, message)
    elif gone:
        _write_unanswered(
            job, entry, "output_unavailable", f"the batch's result file {', '.join(gone)} is gone (HTTP 404)"
        )


def _write_unanswered(job: Job, entry: dict[str, Any], code: str, message: str) -> None:
    name = entry["name"]
    answered = answered_ids(job.output_dir / f"{name}.jsonl") | answered_ids(job.errors_dir / f"{name}.jsonl")
    lines = [
        {"id": None, "custom_id": cid, "response": None, "error": {"code": code, "message": message}}
        for cid in input_ids(job, entry)
        if cid not in answered
    ]
    if lines:
        atomic_write_jsonl(job.errors_dir / f"{name}.unanswered.jsonl", lines)
        job.log("unanswered", batch=name, code=code, lines=len(lines))


def input_ids(job: Job, entry: dict[str, Any]) -> list[str]:
    return [line["custom_id"] for line in iter_jsonl(job.path / entry["input"])]


def _done(entry: dict[str, Any]) -> int:
    counts = entry.get("request_counts") or {}
    return min(int(entry["lines"]), int(counts.get("completed", 0)) + int(counts.get("failed", 0)))


def batch_progress(job: Job) -> dict[str, Any]:
    """Per batch and overall: status and completed / failed / total requests, from the manifest."""
    rows, completed, failed = [], 0, 0
    for e in entries(job):
        counts = e.get("request_counts") or {}
        status = e.get("status") or ("not sent" if e.get("skipped") else "waiting")
        rows.append(
            {
                "name": e["name"],
                "attempt": e["attempt"],
                "batch_id": e.get("batch_id"),
                "status": status,
                "completed": counts.get("completed", 0),
                "failed": counts.get("failed", 0),
                "total": e["lines"],
            }
        )
        completed += counts.get("completed", 0)
        failed += counts.get("failed", 0)
    total = sum(e["lines"] for e in entries(job))
    return {"batches": rows, "requests": {"total": total, "completed": completed, "failed": failed}}


def refresh_status(job: Job) -> dict[str, Any]:
    """`status ID` for an OpenAI job: one look at the unfinished batches, then their progress."""
    if job.state is State.SUBMITTED and not all(e.get("status") in TERMINAL for e in entries(job)):
        refresh(job, BatchApi.from_env(log=job.log))
    return batch_progress(job)


def _pending_message(job: Job, pending: list[dict[str, Any]], *, waited: bool) -> str:
    progress = batch_progress(job)["requests"]
    statuses = Counter(e.get("status") or "waiting" for e in pending)
    what = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    return (
        f"Job {job.id}: {len(pending)} of {len(entries(job))} batches not finished ({what}; "
        f"{progress['completed'] + progress['failed']}/{progress['total']} requests done)"
        + (" when the wait ran out" if waited else "")
        + f" — run `extractor collect {job.id} --wait`, or the same command again later"
    )


# ---------------------------------------------------------------- cancel and retry


def cancel_batches(job: Job) -> dict[str, int]:
    """Ask the API to cancel every unfinished batch; what finished stays, what was never sent is held back."""
    api = BatchApi.from_env(log=job.log)
    counts: Counter[str] = Counter()
    for entry in entries(job):
        if not entry.get("batch_id") and "creating_since" in entry:
            found = api.find_batch(_metadata(job, entry), entry["creating_since"] - LOOKUP_SLACK_S)
            if found is not None:
                entry.pop("creating_since")
                record(entry, found)
        if not entry.get("batch_id"):
            entry["skipped"] = True
            counts["not_sent"] += 1
            continue
        if entry.get("status") not in TERMINAL:
            try:
                record(entry, api.cancel(entry["batch_id"]))
            except BadInput:  # it ended between the last look and the cancel: nothing left to stop
                record(entry, api.retrieve(entry["batch_id"]))
            job.log("batch_cancel", batch=entry["name"], batch_id=entry["batch_id"], status=entry["status"])
        counts["finished" if entry["status"] in TERMINAL and entry["status"] != "cancelled" else "cancelled"] += 1
    job.manifest["remote"]["cancel_requested_at"] = utcnow()
    job.save()
    return {"cancelled": counts["cancelled"], "finished": counts["finished"], "not_sent": counts["not_sent"]}


def write_retry_inputs(job: Job, ids: set[str], attempt: int, larger_budget: set[str]) -> list[dict[str, Any]]:
    """The retried request lines as child input files under retries/<round>/, and their (unsent) entries."""
    # Numbered by retry round, not attempt: two rounds may share an attempt number, never a folder or a name.
    round_no = len(job.manifest.get("retries", [])) + 1
    root = job.path / "retries"
    staging, target = root / f".{round_no}.tmp", root / str(round_no)
    shutil.rmtree(staging, ignore_errors=True)  # a crashed earlier try: its content is rebuilt the same
    writer = ShardWriter(staging)
    for line in iter_request_lines(job.request_files()):
        if line["custom_id"] in ids:
            if line["custom_id"] in larger_budget:
                _raise_budget(line["body"], attempt)
            writer.write(orjson.dumps(line) + b"\n")
    shards = writer.close()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    parents = sorted({e["batch_id"] for e in entries(job) if e.get("batch_id") and ids & set(input_ids(job, e))})
    return [
        {
            "name": f"r{round_no}-{Path(s['file']).stem}",
            "attempt": attempt,
            "retry_round": round_no,
            "input": f"retries/{round_no}/{Path(s['file']).name}",
            "lines": s["lines"],
            "bytes": s["bytes"],
            "tokens": shard_tokens(s),
            "retry_of": parents,
        }
        for s in shards
    ]


def _raise_budget(body: dict[str, Any], attempt: int) -> None:
    for key in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        if isinstance(body.get(key), int):
            body[key] = min(RETRY_MAX_TOKENS_CAP, body[key] * 2 ** (attempt - 1))


# ---------------------------------------------------------------- the lane


class OpenAIBatchLane:
    """The `Lane` of the OpenAI Batch API: every step above, behind the protocol."""

    def __init__(self, info: LaneInfo) -> None:
        self.info = info

    def submit(self, job: Job, options: SubmitOptions, progress: Progress | None = None) -> dict[str, Any]:
        return submit_openai(job, progress=progress, max_enqueued_tokens=options.max_enqueued_tokens)

    def fetch(self, job: Job, wait: WaitOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
        return fetch_batches(job, wait, progress) if is_openai(job) else {}

    def pending(self, job: Job) -> int:
        return pending_requests(job)

    def cancel(self, job: Job) -> dict[str, Any]:
        """Cancel the batches; a job with none sent is cancelled outright, else it stays collectable."""
        if not is_openai(job):
            job.transition(State.CANCELLED)
            return {}
        counts = cancel_batches(job)
        if not any(e.get("batch_id") for e in entries(job)):
            job.transition(State.CANCELLED)
            return dict(counts)
        # Submitted (a submit that died halfway included): what finished before the cancel is collected like any answer.
        job.transition(State.SUBMITTED)
        return {**counts, "next": f"extractor collect {job.id} --wait"}

    def resend(
        self,
        job: Job,
        ids: set[str],
        *,
        attempt: int,
        truncated: set[str],
        attempts: dict[str, int],
        options: SubmitOptions,
        progress: Progress | None,
        set_aside: Callable[[], None],
    ) -> dict[str, Any]:
        api = BatchApi.from_env(log=job.log)  # no key, no change: fail before anything is set aside
        remote = job.manifest.get("remote") or {}
        if remote.get("kind") != self.info.name:  # answers taken in from files: the retries are the first batches
            job.manifest["remote"] = {
                "kind": self.info.name,
                "endpoint": api.endpoint,
                "batches": [],
                "ingested": dict(remote),
            }
        set_aside()
        children = write_retry_inputs(job, ids, attempt, truncated)
        job.manifest["remote"]["batches"].extend(children)
        job.manifest.setdefault("retries", []).append(
            {
                "round": children[0]["retry_round"],
                "attempt": attempt,
                "at": utcnow(),
                "requests": len(ids),
                "batches": [c["name"] for c in children],
            }
        )
        # One save records the child batches, the attempt counts and the state: a crash before they are sent
        # leaves them for `collect`, which sends what is recorded but unsent before it polls.
        job.transition(State.SUBMITTED, attempts=attempts)
        return {"backend": self.info.name, "batches": [c["name"] for c in children], **send_pending(job, api, progress)}

    def progress(self, job: Job) -> dict[str, Any]:
        """One look at the unfinished batches; an unreachable API is shown, not fatal, since status reads the folder."""
        if not is_openai(job):
            return {}
        try:
            return refresh_status(job)
        except ExtractorError as exc:
            return {**batch_progress(job), "remote_error": exc.message}
