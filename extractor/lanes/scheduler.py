"""The local lane's scheduler: one queue of request lines, a fleet of servers each drawing from it as its room allows.

`run_local_lane` (local.py) builds one and runs it; the module docstring there says what it guarantees.
Each attempt is a task; the loop wakes whenever one ends, a server comes or goes, a Retry-After pause
runs out or a request falls due for hedging, and fills every server's room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import orjson

from extractor.errors import BadInput, ServiceUnavailable
from extractor.lanes.chat_server import HEALTH_POLL_S, NO_KEY, WARMUP_PROMPT, describe_error, health_verdict, slots_of
from extractor.lanes.fleet import LATENCY_WINDOW, FleetServer, retry_after_s
from extractor.lanes.lane_stats import LaneEvent, LaneStats
from extractor.stats import percentile
from extractor.storage import JsonlAppender

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
PROBE_CAP_S = 5.0  # a down server is probed at 0.5, 1, 2, 4, 5, 5 ... seconds
MAX_TIMEOUT_GROWTH = 8  # a retried timeout waits up to this many times --timeout
MAX_REQUEUES = 20  # 429s and outages a request may meet before it is recorded as failed
HEDGE_MIN_ANSWERS = 20  # answers needed before a latency percentile means anything


@dataclass
class Work:
    """One request line on its way: in the queue, in flight (once, or twice when hedged), or done."""

    custom_id: str
    body: dict[str, Any]
    timeout_s: float
    attempts: int = 0  # attempts that count against max_retries
    requeues: int = 0  # 429s and outages met, which do not
    hedged: bool = False
    flying: dict[int, tuple[FleetServer, float]] = field(default_factory=dict)  # attempt id -> (server, sent at)


class Scheduler:
    """The async part: one queue, one dispatcher filling every server's room, one writer thread, one watch per
    outage.
    """

    def __init__(
        self,
        *,
        servers: list[FleetServer],
        api_key: str | None,
        output_path: Path,
        error_path: Path,
        timeout_s: float,
        max_retries: int,
        server_wait_s: float,
        hedge_after: float | None,
        model: str | None,
        stats: LaneStats,
        started: float,
        progress: Callable[[LaneEvent], None] | None,
        log: Callable[[dict[str, Any]], None] | None,
        notice: Callable[[str], None] | None,
    ):
        self.servers = servers
        self.api_key = api_key or NO_KEY
        self.output_path, self.error_path = output_path, error_path
        self.timeout_s, self.max_retries, self.server_wait_s = timeout_s, max_retries, server_wait_s
        self.hedge_after, self.model = hedge_after, model
        self.stats, self.started = stats, started
        self.progress, self.log, self.notice = progress, log, notice
        self.answered_ids: set[str] = set()
        self.began = False  # a server passed its check and lane_start was logged
        self._queue: deque[Work] = deque()
        self._flying: dict[str, Work] = {}
        self._delayed = 0  # works sleeping out a backoff before they rejoin the queue
        self._exhausted = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._attempt_ids = 0
        self._attempt_tasks: dict[int, asyncio.Task[None]] = {}
        self._fatal: BaseException | None = None
        self._wake = asyncio.Event()
        self._down_since: float | None = time.monotonic()  # no server up yet
        self._ever_up = False
        self._rejected: list[BadInput] = []
        self._details: dict[str, str] = {}
        self._recent_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._hedge_ms: float | None = None
        self._answers_seen = 0
        self._out: JsonlAppender | None = None
        self._err: JsonlAppender | None = None

    # -- the loop

    async def run(self, first: dict[str, Any], pending: Iterator[dict[str, Any]]) -> None:
        self._first: dict[str, Any] | None = first
        self._pending = pending
        # fsync can take milliseconds on slow disks: one writer thread keeps it off the event loop.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lane-writer")
        self._clients = {
            id(s): openai.AsyncOpenAI(base_url=s.v1, api_key=self.api_key, max_retries=0, timeout=self.timeout_s)
            for s in self.servers
        }
        self._http = httpx.AsyncClient(headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            now = time.monotonic()
            for server in self.servers:
                server.start(now)
                self._spawn(self._watch(server, starting=True))
            await self._loop()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for client in self._clients.values():
                await client.close()
            await self._http.aclose()
            self._writer.shutdown(wait=True)
            for appender in (self._out, self._err):
                if appender is not None:
                    appender.close()

    async def _loop(self) -> None:
        while True:
            if self._fatal is not None:
                raise self._fatal
            self._check_outage()
            self._dispatch()
            if self._finished():
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_deadline())

    def _finished(self) -> bool:
        return self._exhausted and not self._queue and not self._flying and not self._delayed

    def _next_deadline(self) -> float:
        """Seconds until something changes without an event: a pause ends, a hedge falls due, the wait runs out."""
        now = time.monotonic()
        times = [s.paused_until for s in self.servers if s.up and s.paused_until > now]
        if self._down_since is not None:
            times.append(self._down_since + self.server_wait_s)
        if self._hedge_ms is not None and self._exhausted:
            threshold = self._hedge_ms / 1000
            times += [
                sent + threshold
                for w in self._flying.values()
                if not w.hedged
                for _, sent in w.flying.values()
                if sent + threshold > now
            ]
        return max(0.01, min(times, default=now + 1.0) - now)

    def _check_outage(self) -> None:
        if self._rejected and len(self._rejected) == len(self.servers):
            raise self._rejected[0]
        if self._down_since is None or time.monotonic() - self._down_since < self.server_wait_s:
            return
        if any(s.name not in self._details for s in self.servers if not s.up):
            return  # a first probe still under way (its own timeouts bound it): give up with what it found
        seen = "; ".join(f"{s.name}: {self._details.get(s.name, 'not answering')}" for s in self.servers if not s.up)
        if not self._ever_up:
            what = f"at {self.servers[0].name}" if len(self.servers) == 1 else f"at any of {len(self.servers)} servers"
            raise ServiceUnavailable(
                f"no chat server answering {what} after {self.server_wait_s:g}s ({seen}); "
                "start it, or check --local-url"
            )
        who = f"the chat server at {self.servers[0].name}" if len(self.servers) == 1 else "every chat server"
        raise ServiceUnavailable(
            f"{who} stopped answering and was not back within {self.server_wait_s:g}s ({seen}); "
            f"{self.stats.answered} answers of this run are saved in {self.output_path}; run again to send the rest"
        )

    def _dispatch(self) -> None:
        """Fill every server's room: requeued work first, then new lines, then (in the tail) overdue requests
        to hedge.
        """
        now = time.monotonic()
        for server in sorted(self.servers, key=FleetServer.expected_ms):
            while server.can_take(now):
                work, hedge = self._next_work(server, now)
                if work is None:
                    break
                self._send(work, server, hedge=hedge)

    def _next_work(self, server: FleetServer, now: float) -> tuple[Work | None, bool]:
        if self._queue:
            return self._queue.popleft(), False
        if not self._exhausted:
            line = self._first if self._first is not None else next(self._pending, None)
            self._first = None
            if line is not None:
                self.stats.sent += 1
                return Work(line["custom_id"], line["body"], self.timeout_s), False
            self._exhausted = True
        # Hedge only once every line is out: mid-night a slow answer holds nobody up (the other servers carry
        # on), and a second copy would take a slot from new work; in the tail it is what the night waits for.
        if self._hedge_ms is not None:
            for work in self._flying.values():
                if work.hedged or len(work.flying) != 1:
                    continue
                [(other, sent)] = work.flying.values()
                if other is not server and (now - sent) * 1000 >= self._hedge_ms:
                    return work, True
        return None, False

    def _send(self, work: Work, server: FleetServer, *, hedge: bool) -> None:
        self._attempt_ids += 1
        attempt_id = self._attempt_ids
        now = time.monotonic()
        work.flying[attempt_id] = (server, now)
        self._flying[work.custom_id] = work
        server.sent()
        if hedge:
            work.hedged = True
            self.stats.hedged += 1
            server.stats.hedges_sent += 1
            if self.log:
                self.log({"event": "hedge", "custom_id": work.custom_id, "server": server.name})
        self._attempt_tasks[attempt_id] = self._spawn(self._attempt(work, server, attempt_id, now, hedge))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._fatal is None:
            self._fatal = task.exception()
        self._wake.set()

    # -- one attempt

    async def _attempt(self, work: Work, server: FleetServer, attempt_id: int, sent: float, hedge: bool) -> None:
        timeout_s = work.timeout_s
        try:
            raw = await self._clients[id(server)].post(
                "/chat/completions", body=work.body, cast_to=bytes, options={"timeout": timeout_s}
            )
        except openai.APITimeoutError:
            outcome: Failure | dict[str, Any] = Failure("timeout", f"no answer within {timeout_s:g}s")
        except openai.APIConnectionError as exc:
            outcome = Failure("connection_error", str(exc) or type(exc).__name__)
        except openai.APIStatusError as exc:
            outcome = Failure.from_status(exc)
        except asyncio.CancelledError:
            self._attempt_tasks.pop(attempt_id, None)
            if work.flying.pop(attempt_id, None) is not None:  # called off by the lane (a stalled server)
                server.in_flight -= 1
                self._settle(work)
            raise
        else:
            try:
                outcome = orjson.loads(raw)
                if not isinstance(outcome, dict):
                    raise orjson.JSONDecodeError("not an object", "", 0)
            except orjson.JSONDecodeError:
                outcome = Failure("invalid_json", f"HTTP 200 with a body that is not a JSON object: {raw[:200]!r}")
        now = time.monotonic()
        self._attempt_tasks.pop(attempt_id, None)
        if work.flying.pop(attempt_id, None) is None:
            return  # called off while the answer was on its way; the work went back to the queue
        server.in_flight -= 1
        if isinstance(outcome, dict):
            # An answer: its slot can be refilled while the line waits for the writer thread. (A failure is
            # judged first: a 429 lowers the server's limit or pauses it before anything else goes there.)
            self._wake.set()
            await self._answered(work, server, outcome, (now - sent) * 1000, hedge)
        else:
            await self._failed(work, server, outcome, sent, now)
        self._settle(work)

    def _settle(self, work: Work) -> None:
        if not work.flying and self._flying.get(work.custom_id) is work:
            del self._flying[work.custom_id]
        self._wake.set()

    async def _answered(
        self, work: Work, server: FleetServer, answer: dict[str, Any], latency_ms: float, hedge: bool
    ) -> None:
        usage = answer.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        duplicate = work.custom_id in self.answered_ids  # the other copy of a hedged request answered first
        server.answered(latency_ms, prompt, completion, time.monotonic(), kept=not duplicate)
        self._recent_ms.append(latency_ms)
        self._answers_seen += 1
        if (
            self.hedge_after is not None
            and self._answers_seen >= HEDGE_MIN_ANSWERS
            and (self._hedge_ms is None or self._answers_seen % 16 == 0)
        ):  # a sort per answer would cost CPU for nothing
            self._hedge_ms = percentile(self._recent_ms, self.hedge_after)
        if duplicate:
            self.stats.duplicates += 1
            self.stats.duplicate_prompt_tokens += prompt
            self.stats.duplicate_completion_tokens += completion
            if self.log:
                self.log(
                    {
                        "event": "duplicate_answer",
                        "custom_id": work.custom_id,
                        "server": server.name,
                        "latency_ms": round(latency_ms, 1),
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "kept": "the first answer",
                    }
                )
            return
        self.answered_ids.add(work.custom_id)  # before the write: nothing else may write this custom_id
        line = {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": work.custom_id,
            "response": {"status_code": 200, "request_id": answer.get("id"), "body": answer},
            "error": None,
            "server": server.name,
        }
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write_out, line)
        stats = self.stats
        stats.answered += 1
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        stats.latencies_ms.append(latency_ms)
        if hedge:
            stats.hedge_wins += 1
        if self.log:
            self.log(
                {
                    "event": "request",
                    "custom_id": work.custom_id,
                    "server": server.name,
                    "latency_ms": round(latency_ms, 1),
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "attempts": work.attempts + 1,
                    "status": 200,
                    **({"hedge": True} if hedge else {}),
                }
            )
        self._emit(
            "answered", work.custom_id, latency_ms=latency_ms, prompt_tokens=prompt, completion_tokens=completion
        )

    async def _failed(self, work: Work, server: FleetServer, failure: Failure, sent: float, now: float) -> None:
        if work.custom_id in self.answered_ids:
            return  # the other copy of a hedged request already answered
        requeue = False  # back to the queue without counting an attempt: not the request's fault
        if failure.code == "timeout":
            server.congested(sent, now)
            # A timed-out request is cancelled and starts again from nothing: on a server that is merely
            # slow (a busy CPU), the same timeout would fail the same way, so give it longer.
            work.timeout_s = min(work.timeout_s * 2, self.timeout_s * MAX_TIMEOUT_GROWTH)
            if server.timed_out() and server.up:
                self._server_down(
                    server,
                    f"{server.consecutive_timeouts} requests in a row got no answer within "
                    f"{failure.message.rsplit(' ', 1)[-1]}",
                    stalled=True,
                )
        elif failure.code == "connection_error":
            if not server.up:
                requeue = True
            else:
                detail = await self._health(server)
                if detail and server.up:
                    self._server_down(server, detail)
                requeue = bool(detail) or not server.up
                if work.custom_id in self.answered_ids:
                    return  # its hedged copy answered while we looked
        elif failure.status_code == 429:
            server.stats.rate_limited += 1
            self.stats.rate_limited += 1
            server.congested(sent, now)
            requeue = True
        else:
            server.stats.errors += 1
        if failure.status_code in (429, 503) and (wait := retry_after_s(failure.headers)) is not None:
            server.pause(wait, now)
        if work.flying:
            return  # its other copy is still in flight: that one decides
        if requeue and work.requeues < MAX_REQUEUES:
            work.requeues += 1
            self.stats.retries += 1
            self._log_retry(work, server, failure, requeued=True)
            self._queue.appendleft(work)
            return
        work.attempts += 1
        if not failure.retryable or work.attempts > self.max_retries or requeue:
            await self._record_failure(work, server, failure)
            return
        self.stats.retries += 1
        self._log_retry(work, server, failure, requeued=False)
        if failure.code in ("timeout", "connection_error"):
            self._queue.appendleft(work)
            return
        # 5xx, 408, an answer that is not JSON: give the server a moment before anyone tries again.
        delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (work.attempts - 1)))
        self._delayed += 1
        asyncio.get_running_loop().call_later(delay, self._rejoin, work)

    def _rejoin(self, work: Work) -> None:
        self._delayed -= 1
        self._queue.append(work)
        self._wake.set()

    def _log_retry(self, work: Work, server: FleetServer, failure: Failure, *, requeued: bool) -> None:
        if self.log:
            self.log(
                {
                    "event": "retry",
                    "custom_id": work.custom_id,
                    "server": server.name,
                    "attempt": work.attempts,
                    "requeued": requeued,
                    "code": failure.code,
                    "status": failure.status_code,
                    "message": failure.message,
                }
            )

    async def _record_failure(self, work: Work, server: FleetServer, failure: Failure) -> None:
        response = None
        if failure.status_code is not None:
            response = {"status_code": failure.status_code, "request_id": failure.request_id, "body": failure.body}
        line = {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": work.custom_id,
            "response": response,
            "error": {"code": failure.code, "message": failure.message},
            "server": server.name,
        }
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write_error, line)
        self.stats.failed += 1
        if self.log:
            self.log(
                {
                    "event": "request",
                    "custom_id": work.custom_id,
                    "server": server.name,
                    "latency_ms": None,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "attempts": work.attempts,
                    "status": failure.status_code or failure.code,
                    "error": failure.message,
                }
            )
        self._emit("failed", work.custom_id, message=failure.message)

    def _write_out(self, line: dict[str, Any]) -> None:
        # Opened on the first answer: a run that never reached a server leaves no empty output file.
        if self._out is None:
            self._out = JsonlAppender(self.output_path)
        self._out.write(line)

    def _write_error(self, line: dict[str, Any]) -> None:
        if self._err is None:
            self._err = JsonlAppender(self.error_path)
        self._err.write(line)

    # -- servers going and coming

    def _server_down(self, server: FleetServer, detail: str, *, stalled: bool = False) -> None:
        server.set_up(False)
        server.stalled = stalled
        self._details[server.name] = detail
        if not any(s.up for s in self.servers):
            self._down_since = time.monotonic()
        others = sum(s.up for s in self.servers)
        then = (
            f"its requests go to the other {others} server{'s' if others > 1 else ''}; probing it"
            if others
            else f"waiting up to {self.server_wait_s:g}s for it"
        )
        self._say(f"{server.name} stopped answering ({detail}); {then}")
        if self.log:
            self.log({"event": "server_down", "base_url": server.name, "detail": detail, "stalled": stalled})
        if stalled:  # its other requests would time out the same way: hand them to the others now
            for task_work in list(self._flying.values()):
                for attempt_id, (where, _) in list(task_work.flying.items()):
                    if where is server:
                        self._call_off(task_work, attempt_id, server)
        self._spawn(self._watch(server, starting=False))

    def _call_off(self, work: Work, attempt_id: int, server: FleetServer) -> None:
        work.flying.pop(attempt_id, None)
        task = self._attempt_tasks.pop(attempt_id, None)
        if task is not None:
            task.cancel()
        server.in_flight -= 1
        if not work.flying and work.custom_id not in self.answered_ids:
            work.requeues += 1
            self._queue.appendleft(work)
        self._settle(work)

    async def _watch(self, server: FleetServer, *, starting: bool) -> None:
        """Probe a server with backoff until it passes /health and a one-token request, then let it take work."""
        delay = HEALTH_POLL_S
        while True:
            try:
                detail = await self._probe(server)
            except BadInput as exc:  # it refuses our requests (wrong model name): no use probing it again
                self._rejected.append(exc)
                self._details[server.name] = "it rejected a test request"
                self._say(exc.message)
                self._wake.set()
                return
            if not detail:
                break
            self._details[server.name] = detail
            self._wake.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, PROBE_CAP_S)
        if server.source == "default":
            slots = await slots_of(self._http, server.root)
            if slots:
                server.max_concurrency, server.source = slots, "slots"
                server.limit = float(min(server.limit, slots)) if self.began else float(slots)
        server.set_up(True)
        self._down_since = None
        self._ever_up = True
        if not self.began:
            self.began = True
            if self.log:
                self.log(
                    {
                        "event": "lane_start",
                        "servers": [{"url": s.name} for s in self.servers],
                        "base_url": server.name,
                        "concurrency": server.max_concurrency,
                        "skipped_already_done": self.stats.skipped_already_done,
                    }
                )
        if starting:
            if self.log:
                self.log(
                    {
                        "event": "server_up",
                        "base_url": server.name,
                        "concurrency": server.max_concurrency,
                        "concurrency_source": server.source,
                    }
                )
            if len(self.servers) > 1 and server.name in self._details:
                self._say(f"{server.name} is up; it takes its share from now on")
        else:
            self._say(f"{server.name} is back; carrying on")
            if self.log:
                self.log({"event": "server_back", "base_url": server.name})
        self._wake.set()

    async def _probe(self, server: FleetServer) -> str:
        detail = await self._health(server)
        if detail:
            return detail
        # A cold model can take tens of seconds to load; pay that here, not in the first documents' latency.
        probe = {
            "model": self.model or "default",
            "messages": [{"role": "user", "content": WARMUP_PROMPT}],
            "max_tokens": 1,
            "temperature": 0,
        }
        try:
            answer = await self._http.post(
                f"{server.v1}/chat/completions", json=probe, timeout=max(5.0, min(self.timeout_s, self.server_wait_s))
            )
        except httpx.HTTPError as exc:
            return describe_error(exc)
        if answer.status_code == 200:
            return ""
        detail = f"HTTP {answer.status_code} to a test request"
        if 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
            raise BadInput(
                f"{server.name}/v1/chat/completions rejected a test request for model {probe['model']!r} "
                f"({detail}: {answer.text[:200]})"
            )
        return detail

    async def _health(self, server: FleetServer) -> str:
        try:
            answer = await self._http.get(f"{server.root}/health", timeout=5.0)
        except httpx.HTTPError as exc:
            return describe_error(exc)
        return health_verdict(answer)

    def _say(self, message: str) -> None:
        if self.notice:
            self.notice(message)

    def _emit(self, kind: Literal["answered", "failed"], custom_id: str, **fields: Any) -> None:
        if self.progress:
            self.progress(
                LaneEvent(
                    kind=kind,
                    stats=self.stats,
                    elapsed_s=time.perf_counter() - self.started,
                    custom_id=custom_id,
                    **fields,
                )
            )


@dataclass(frozen=True)
class Failure:
    """Why one attempt failed, and whether another attempt may help."""

    code: str
    message: str
    status_code: int | None = None
    request_id: str | None = None
    body: Any = None
    retryable: bool = True
    headers: Mapping[str, str] | None = None

    @classmethod
    def from_status(cls, exc: openai.APIStatusError) -> Failure:
        status = exc.status_code
        body = exc.body
        error = body.get("error", body) if isinstance(body, dict) else None
        code = str(error.get("type") or error.get("code") or "") if isinstance(error, dict) else ""
        message = str(error.get("message") or "") if isinstance(error, dict) else str(body or "")
        # 408/429 and 5xx are the server's momentary trouble; any other 4xx will fail the same way again.
        retryable = status in (408, 429) or status >= 500
        return cls(
            code=code or f"http_{status}",
            message=message or exc.message,
            status_code=status,
            request_id=exc.request_id,
            body=body,
            retryable=retryable,
            headers=exc.response.headers,
        )
