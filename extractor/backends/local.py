"""The local lane: every request line answered by one OpenAI-compatible chat server, as fast as it allows.

Works with llama.cpp's server (embedded or `--local-url http://host:8080`), vLLM, Ollama or any
endpoint that speaks `/v1/chat/completions`. Concurrency is the caller's number if given, else the
server's slot count (llama.cpp's `/props` or `/slots`), else 4: one request per slot keeps every
slot busy without queueing inside the server. A fixed set of workers pulls lines lazily from the
input, so a million-line job holds as many requests in memory as there are workers.

Retries: connection errors, timeouts, 408, 429 and 5xx are retried up to `max_retries` times with
exponential backoff and full jitter; a timed-out attempt is retried with twice the timeout (up to
8x), since the server cancels it and a busy CPU would time out the same way again.

What lands on disk, and when:
- every answer is appended to `output_path` as an OpenAI batch *output* line the moment it
  arrives (flushed and fsynced per line), so `kill -9` loses at most the requests in flight;
- a rerun reads the custom_ids already in `output_path` and never sends them again;
- terminal failures (4xx other than 408/429, or retries used up) go to `error_path` in the same
  format. A rerun sends them again (`resend_errors=False` skips them) and, when it ends, drops
  every error line whose custom_id has since been answered, keeping only the latest error per
  custom_id: after a finished run each custom_id appears at most once across both files, and a
  reader should let an output line win over an error line in any case;
- if the server stops answering mid-run, the lane polls its `/health` for up to
  `server_wait_s`, then carries on; if it never comes back, ServiceUnavailable (exit 4), with
  the answers received so far kept.

GPU knobs: the embedded server runs in this process and inherits its environment
(`GGML_CUDA_DISABLE_GRAPHS`, `CUDA_VISIBLE_DEVICES`, ...); an external server takes them from
wherever it is started. Nothing here touches the environment.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import orjson

from ..errors import BadInput, ExtractorError, ServiceUnavailable
from ..storage import JsonlAppender, atomic_write_jsonl, iter_jsonl
from .chat_server import (HEALTH_POLL_S, NO_KEY, api_urls, check_health, describe_error, health_verdict,
                          server_slots)

DEFAULT_CONCURRENCY = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
MAX_TIMEOUT_GROWTH = 8  # a retried timeout waits up to this many times --timeout
CHAT_URL = "/v1/chat/completions"


@dataclass
class LaneStats:
    """What one run of the lane did; latencies are of the attempt that got the answer."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    skipped_already_done: int = 0
    retries: int = 0
    concurrency: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile_ms(self, q: float) -> float | None:
        """Latency at quantile q (0..1), linearly interpolated; None when nothing was answered."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    def p50(self) -> float | None:
        return self.percentile_ms(0.50)

    def p95(self) -> float | None:
        return self.percentile_ms(0.95)

    def p99(self) -> float | None:
        return self.percentile_ms(0.99)

    def documents_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Totals, percentiles and rates for logs, the manifest and `status`; not the raw latency list."""
        data = asdict(self)
        del data["latencies_ms"]
        data.update(p50_ms=self.p50(), p95_ms=self.p95(), p99_ms=self.p99(),
                    documents_per_s=self.documents_per_s(), completion_tokens_per_s=self.completion_tokens_per_s())
        return data


@dataclass(frozen=True)
class LaneEvent:
    """One line finished (answered or failed): what a progress bar advances on."""

    kind: Literal["answered", "failed"]
    stats: LaneStats  # live running totals, for rates and ETA; read, don't keep
    elapsed_s: float
    custom_id: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: str = ""


def done_ids(path: Path) -> set[str]:
    """custom_ids that already have a line in an output or error file (a torn last line does not count)."""
    if not path.exists():
        return set()
    return {row["custom_id"] for row in iter_jsonl(path) if isinstance(row, dict) and "custom_id" in row}


def compact_errors(error_path: Path, answered: set[str]) -> set[str]:
    """Drop error lines whose custom_id was answered since, keep the latest per custom_id; returns those kept."""
    if not error_path.exists():
        return set()
    latest: dict[str, Any] = {}
    total = 0
    for row in iter_jsonl(error_path):
        total += 1
        custom_id = row.get("custom_id") if isinstance(row, dict) else None
        if isinstance(custom_id, str) and custom_id not in answered:
            latest.pop(custom_id, None)  # re-insert so the file keeps the order of the latest attempts
            latest[custom_id] = row
    if len(latest) != total:
        atomic_write_jsonl(error_path, latest.values())
    return set(latest)


def run_local_lane(
    lines: Iterable[dict],
    *,
    output_path: Path,
    error_path: Path,
    base_url: str,
    api_key: str | None = None,
    concurrency: int | None = None,
    timeout_s: float = 120,
    max_retries: int = 4,
    server_wait_s: float = 60,
    resend_errors: bool = True,
    progress: Callable[[LaneEvent], None] | None = None,
    log: Callable[[dict], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> LaneStats:
    """Answer every line not yet answered in output_path; see the module docstring for the guarantees.

    `progress` gets one LaneEvent per finished line; `log` gets one dict per request, retry and
    server outage (for log.jsonl); `notice` gets a sentence when the server goes away or comes back.
    """
    stats = LaneStats()
    started = time.perf_counter()
    answered = done_ids(output_path)
    errored = compact_errors(error_path, answered)
    skip = answered | (set() if resend_errors else errored)
    pending = _pending(lines, skip, stats)
    first = next(pending, None)
    if first is None:  # nothing left to send: don't require a server at all
        stats.seconds = time.perf_counter() - started
        return stats
    check_health(base_url, server_wait_s, model=first["body"].get("model"), api_key=api_key)
    stats.concurrency = concurrency or server_slots(base_url) or DEFAULT_CONCURRENCY
    lane = _Lane(base_url=base_url, api_key=api_key, output_path=output_path, error_path=error_path,
                 timeout_s=timeout_s, max_retries=max_retries, server_wait_s=server_wait_s,
                 stats=stats, started=started, progress=progress, log=log, notice=notice)
    if log:
        log({"event": "lane_start", "base_url": base_url, "concurrency": stats.concurrency,
             "skipped_already_done": stats.skipped_already_done})
    try:
        asyncio.run(lane.run(chain([first], pending)))
    finally:
        stats.seconds = time.perf_counter() - started
        compact_errors(error_path, answered | lane.answered_ids)
        if log:
            log({"event": "lane_end", **stats.as_dict()})
    return stats


def _pending(lines: Iterable[dict], skip: set[str], stats: LaneStats) -> Iterator[dict]:
    """Lines still to send, lazily; a custom_id met twice is sent once."""
    for line in lines:
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not isinstance(line.get("body"), dict):
            raise BadInput(f"request line without a custom_id or body: {str(line)[:120]}")
        if line.get("url", CHAT_URL) != CHAT_URL:
            raise BadInput(f"request {custom_id}: the local lane only sends {CHAT_URL}, not {line.get('url')}")
        if custom_id in skip:
            stats.skipped_already_done += 1
            continue
        skip.add(custom_id)
        yield line


class _Lane:
    """The async part: `concurrency` workers sharing one lazy iterator, one writer thread, one server watch."""

    def __init__(self, *, base_url: str, api_key: str | None, output_path: Path, error_path: Path, timeout_s: float,
                 max_retries: int, server_wait_s: float, stats: LaneStats, started: float,
                 progress: Callable[[LaneEvent], None] | None, log: Callable[[dict], None] | None,
                 notice: Callable[[str], None] | None):
        self.root, self.v1 = api_urls(base_url)
        self.api_key = api_key or NO_KEY
        self.output_path, self.error_path = output_path, error_path
        self.timeout_s, self.max_retries, self.server_wait_s = timeout_s, max_retries, server_wait_s
        self.stats, self.started = stats, started
        self.progress, self.log, self.notice = progress, log, notice
        self.answered_ids: set[str] = set()
        self._err: JsonlAppender | None = None
        self._outage: asyncio.Task[None] | None = None

    async def run(self, pending: Iterator[dict]) -> None:
        # fsync can take milliseconds on slow disks: one writer thread keeps it off the event loop.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lane-writer")
        client = openai.AsyncOpenAI(base_url=self.v1, api_key=self.api_key, max_retries=0, timeout=self.timeout_s)
        try:
            with JsonlAppender(self.output_path) as out:
                self._writer, self._out, self._client = writer, out, client
                async with httpx.AsyncClient() as health:
                    self._health = health
                    async with asyncio.TaskGroup() as group:
                        for _ in range(self.stats.concurrency):
                            group.create_task(self._work(pending))
        except BaseExceptionGroup as group:
            raise _first_domain_error(group) from None
        finally:
            await client.close()
            writer.shutdown(wait=True)
            if self._err is not None:
                self._err.close()

    async def _work(self, pending: Iterator[dict]) -> None:
        # Sharing one iterator is safe: next() runs to completion between awaits.
        for line in pending:
            await self._answer(line["custom_id"], line["body"])

    async def _answer(self, custom_id: str, body: dict) -> None:
        self.stats.sent += 1
        attempt = 0
        timeout_s = self.timeout_s
        while True:
            attempt += 1
            began = time.perf_counter()
            try:
                raw = await self._client.post("/chat/completions", body=body, cast_to=bytes,
                                              options={"timeout": timeout_s})
            except openai.APITimeoutError:
                failure = _Failure("timeout", f"no answer within {timeout_s:g}s")
                # A timed-out request is cancelled and starts again from nothing: on a server that is merely
                # slow (a busy CPU), the same timeout would fail the same way, so give it longer.
                timeout_s = min(timeout_s * 2, self.timeout_s * MAX_TIMEOUT_GROWTH)
            except openai.APIConnectionError as exc:
                failure = _Failure("connection_error", str(exc) or type(exc).__name__)
                await self._wait_for_server()
            except openai.APIStatusError as exc:
                failure = _Failure.from_status(exc)
            else:
                latency_ms = (time.perf_counter() - began) * 1000
                try:
                    answer = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    failure = _Failure("invalid_json", f"HTTP 200 with a body that is not JSON: {raw[:200]!r}")
                else:
                    await self._record_answer(custom_id, answer, latency_ms, attempt)
                    return
            if not failure.retryable or attempt > self.max_retries:
                await self._record_failure(custom_id, failure, attempt)
                return
            self.stats.retries += 1
            if self.log:
                self.log({"event": "retry", "custom_id": custom_id, "attempt": attempt, "code": failure.code,
                          "message": failure.message})
            if failure.code != "connection_error":  # after an outage the server is back: no need to wait more
                await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))))

    async def _record_answer(self, custom_id: str, answer: dict, latency_ms: float, attempts: int) -> None:
        line = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id,
                "response": {"status_code": 200, "request_id": answer.get("id"), "body": answer}, "error": None}
        await asyncio.get_running_loop().run_in_executor(self._writer, self._out.write, line)
        usage = answer.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        stats = self.stats
        stats.answered += 1
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        stats.latencies_ms.append(latency_ms)
        self.answered_ids.add(custom_id)
        if self.log:
            self.log({"event": "request", "custom_id": custom_id, "latency_ms": round(latency_ms, 1),
                      "prompt_tokens": prompt, "completion_tokens": completion, "attempts": attempts, "status": 200})
        self._emit("answered", custom_id, latency_ms=latency_ms, prompt_tokens=prompt, completion_tokens=completion)

    async def _record_failure(self, custom_id: str, failure: _Failure, attempts: int) -> None:
        response = None
        if failure.status_code is not None:
            response = {"status_code": failure.status_code, "request_id": failure.request_id, "body": failure.body}
        line = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response,
                "error": {"code": failure.code, "message": failure.message}}
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write_error, line)
        self.stats.failed += 1
        if self.log:
            self.log({"event": "request", "custom_id": custom_id, "latency_ms": None, "prompt_tokens": 0,
                      "completion_tokens": 0, "attempts": attempts, "status": failure.status_code or failure.code,
                      "error": failure.message})
        self._emit("failed", custom_id, message=failure.message)

    def _write_error(self, line: dict) -> None:
        # Opened on the first failure only: a clean run leaves no empty errors file behind.
        if self._err is None:
            self._err = JsonlAppender(self.error_path)
        self._err.write(line)

    async def _wait_for_server(self) -> None:
        """All workers that lose the connection share one bounded wait for the server to come back."""
        if self._outage is None or self._outage.done():
            self._outage = asyncio.ensure_future(self._poll_until_up())
        await asyncio.shield(self._outage)

    async def _poll_until_up(self) -> None:
        deadline = time.monotonic() + self.server_wait_s
        detail = await self._health_detail()
        if not detail:
            return  # a dropped connection, not a dead server
        self._say(f"{self.root} stopped answering ({detail}); waiting up to {self.server_wait_s:g}s for it")
        if self.log:
            self.log({"event": "server_down", "base_url": self.root, "detail": detail})
        while detail and time.monotonic() < deadline:
            await asyncio.sleep(HEALTH_POLL_S)
            detail = await self._health_detail()
        if detail:
            raise ServiceUnavailable(
                f"the chat server at {self.root} stopped answering and was not back within {self.server_wait_s:g}s "
                f"({detail}); {self.stats.answered} answers of this run are saved in {self.output_path}; "
                "run again to send the rest"
            )
        self._say(f"{self.root} is back; carrying on")
        if self.log:
            self.log({"event": "server_back", "base_url": self.root})

    async def _health_detail(self) -> str:
        try:
            answer = await self._health.get(f"{self.root}/health", timeout=5.0)
        except httpx.HTTPError as exc:
            return describe_error(exc)
        return health_verdict(answer)

    def _say(self, message: str) -> None:
        if self.notice:
            self.notice(message)

    def _emit(self, kind: Literal["answered", "failed"], custom_id: str, **fields: Any) -> None:
        if self.progress:
            self.progress(LaneEvent(kind=kind, stats=self.stats, elapsed_s=time.perf_counter() - self.started,
                                    custom_id=custom_id, **fields))


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, and whether another attempt may help."""

    code: str
    message: str
    status_code: int | None = None
    request_id: str | None = None
    body: Any = None
    retryable: bool = True

    @classmethod
    def from_status(cls, exc: openai.APIStatusError) -> _Failure:
        status = exc.status_code
        body = exc.body
        error = body.get("error", body) if isinstance(body, dict) else None
        code = str(error.get("type") or error.get("code") or "") if isinstance(error, dict) else ""
        message = str(error.get("message") or "") if isinstance(error, dict) else str(body or "")
        # 408/429 and 5xx are the server's momentary trouble; any other 4xx will fail the same way again.
        retryable = status in (408, 429) or status >= 500
        return cls(code=code or f"http_{status}", message=message or exc.message, status_code=status,
                   request_id=exc.request_id, body=body, retryable=retryable)


def _first_domain_error(group: BaseExceptionGroup) -> BaseException:
    """The error to show from a failed worker group: an expected one if any, else the first."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = _first_domain_error(exc)
        if isinstance(exc, ExtractorError):
            return exc
    return group.exceptions[0]
