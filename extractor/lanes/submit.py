"""The submit stage: hand a prepared job's request lines to its backend and record where the answers are."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractor.errors import BadInput, ExtractorError
from extractor.job_files import BackendChoice as BackendChoiceRecord
from extractor.jobs import Job, State
from extractor.lanes import lane_for
from extractor.prepare.isolation import require_isolated


@dataclass
class SubmitOptions:
    local_url: str | Sequence[str] | None = None  # one server or a fleet; none: EXTRACTOR_LOCAL_URLS, else embedded
    model_path: Path | None = None
    slots: int = 4
    ctx: int | None = None
    threads: int | None = None
    max_cost: float | None = None
    request_timeout_s: float = 300.0
    server_wait_s: float = 60.0
    concurrency: int | Sequence[str] | None = None  # N (every server) and/or URL=N; else slot count, else 4
    hedge_after: str | float | None = None  # e.g. "p95": resend a request waiting longer than that; off when None
    notice: Callable[[str], None] | None = None  # told when the local server goes away or comes back
    max_enqueued_tokens: int | None = None  # OpenAI: None is the model's default (extractor/prepare/models.py)
    spent_before_usd: float = 0.0  # what earlier stages of the same run cost (a pipeline's gate): under the same cap


def check_cost_cap(job: Job, max_cost: float | None, spent_before_usd: float = 0.0) -> None:
    """Refuse (exit 2) a job whose estimate — exact input plus output at max_tokens per answer — exceeds max_cost."""
    if max_cost is None:
        return
    if max_cost < 0:
        raise BadInput(f"--max-cost must be 0 or more, not {max_cost}")
    if (job.manifest.get("cost_cap_usd"), job.manifest.get("cost_cap_spent_before_usd", 0.0)) != (
        max_cost,
        spent_before_usd,
    ):
        job.manifest["cost_cap_usd"] = max_cost  # `retry` holds the job's whole life to the same cap
        job.manifest["cost_cap_spent_before_usd"] = spent_before_usd
        job.save()
    estimate = job.manifest.get("estimate", {})
    total = estimate.get("estimated_cost_usd")
    if total is None:
        why = (
            "its input tokens were not counted"
            if estimate.get("input_tokens") is None and estimate.get("output_cost_usd_max") is not None
            else f"no price is known for model {job.manifest['model']}"
        )
        raise BadInput(
            f"Job {job.id}: {why}, so --max-cost cannot be checked — drop --max-cost or pick a model in the price table"
        )
    spent_elsewhere = float(job.manifest.get("cost_cap_spent_before_usd") or 0.0)  # a pipeline's gate
    if total + spent_elsewhere > max_cost:
        before = f" on top of ${spent_elsewhere:.4f} spent by the gate" if spent_elsewhere else ""
        raise BadInput(
            f"Job {job.id}: estimated cost ${total:.4f}{before} (input ${estimate.get('input_cost_usd') or 0:.4f}"
            f" + output up to ${estimate.get('output_cost_usd_max') or 0:.4f}) exceeds --max-cost"
            f" ${max_cost:.4f} — raise the cap, lower --max-tokens or prepare fewer documents"
        )


@contextmanager
def local_endpoints(options: SubmitOptions) -> Iterator[list[str]]:
    """The external servers' URLs as given, or the embedded llama.cpp server for the duration of the block."""
    from extractor.lanes.fleet import resolve_urls

    urls = resolve_urls(options.local_url)
    if urls:
        yield urls
        return
    from extractor.lanes.embedded_llm import EmbeddedLlamaServer

    with EmbeddedLlamaServer(
        options.model_path, slots=options.slots, ctx=options.ctx, threads=options.threads
    ) as base_url:
        yield [base_url]


def submit_job(job: Job, options: SubmitOptions, *, progress: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Send every line not yet answered; a re-run after a crash sends only what is missing."""
    job.require(State.PREPARED, State.SUBMITTED, State.FAILED, State.CANCELLED, doing="be submitted")
    audit = require_isolated(job)  # on the files as they are now, just before anything is sent
    if job.manifest.get("audit") is None:
        job.manifest["audit"] = audit.as_dict()
        job.save()
    check_cost_cap(job, options.max_cost, options.spent_before_usd)
    return lane_for(job).submit(job, options, progress)


DEFAULT_HEALTH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BackendChoice:
    """What `--backend auto` picked, and why: recorded in the manifest as `backend_choice`."""

    backend: str
    reason: str

    def as_dict(self) -> BackendChoiceRecord:
        return {"requested": "auto", "chosen": self.backend, "reason": self.reason}


def choose_backend(options: SubmitOptions, timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S) -> BackendChoice:
    """The local lane if one of its servers passes its health check and a warm-up request within timeout_s, else the
    OpenAI lane."""
    from extractor.lanes.fleet import display_url, resolve_urls

    started = time.monotonic()
    given = resolve_urls(options.local_url)
    where = ", ".join(display_url(u) for u in given) if given else "the embedded llama.cpp server"
    try:
        with local_endpoints(options) as urls:
            passed = _first_healthy(urls, timeout_s)
        if len(urls) > 1:
            where = f"{display_url(passed)} (of {len(urls)} servers)"
    except (ExtractorError, OSError, ImportError, RuntimeError) as exc:  # any reason the lane cannot serve
        reason = f"local lane unavailable: {where}: {getattr(exc, 'message', None) or exc}"
        if not os.environ.get("OPENAI_API_KEY", "").strip():
            raise BadInput(
                f"--backend auto: {reason}; and OPENAI_API_KEY is not set — start the local server, "
                "or set OPENAI_API_KEY for the OpenAI Batch lane"
            ) from None
        return BackendChoice("openai", f"{reason} — using the OpenAI Batch API")
    seconds = time.monotonic() - started
    return BackendChoice("local", f"{where} passed its health check and a warm-up request in {seconds:.1f}s")


def _first_healthy(urls: list[str], timeout_s: float) -> str:
    """The first of the servers to pass its health check and a warm-up request; raises the first's error if
    none does.
    """
    import queue
    import threading

    from extractor.lanes.chat_server import check_health

    api_key = os.environ.get("EXTRACTOR_LOCAL_API_KEY")
    done: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()

    def check(url: str) -> None:
        try:
            check_health(url, timeout_s, api_key=api_key)
        except BaseException as exc:  # handed to the caller, which raises the first if no server passes
            done.put((url, exc))
        else:
            done.put((url, None))

    # Daemon threads: once one server passes, the others' checks run out on their own deadline without
    # holding up the run or the process's exit.
    for url in urls:
        threading.Thread(target=check, args=(url,), daemon=True, name="health-check").start()
    errors: list[BaseException] = []
    for _ in urls:
        url, error = done.get()
        if error is None:
            return url
        errors.append(error)
    raise errors[0]


def _redact(url: str) -> str:
    """Never write credentials embedded in a URL to the job folder."""
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        scheme, rest = url.split("//", 1)
        return f"{scheme}//***@{rest.split('@', 1)[1]}"
    return url
