"""The local lane: every request line answered by one or more OpenAI-compatible chat servers, as fast as they allow.

Works with llama.cpp's server (embedded or `--local-url http://host:8080`), vLLM, Ollama or any
endpoint that speaks `/v1/chat/completions`, and with several of them at once (a fleet). The lines
of a job form one queue; each server draws from it whenever it has room, so a fast server does more
of the work and nothing is pinned to a slow one. A server's room is its AIMD limit (`fleet.py`):
at most its slot count (llama.cpp's `/props` or `/slots`), or `--concurrency [URL=]N`, or 4, halved
on a 429 or a timeout and regrown slowly on clean answers. Lines are pulled from the input only when
a server has room, so a million-line job holds as many requests in memory as are in flight.

Retries: 408, 5xx and answers that are not JSON are retried up to `max_retries` times with
exponential backoff and full jitter; a timed-out attempt is retried with twice the timeout (up to
8x), since the server cancels it and a busy CPU would time out the same way again. A 429 or a
request lost with a server that died is not the request's fault: it goes back to the queue for any
server (up to MAX_REQUEUES times), and a `Retry-After` pauses the server that sent it.

Servers that die or stall: a request whose connection fails sends its server's `/health` a look; a
dead server (or one whose requests timed out STALL_TIMEOUTS times in a row) stops taking work, its
requests in flight go back to the queue, and it is probed with backoff (`/health`, then a one-token
chat request) until it answers again, with one `notice` line at each change. If every server is
down for `server_wait_s`, ServiceUnavailable (exit 4), with the answers received so far kept.

Hedging (`hedge_after=0.95`, off by default): once every line has been sent, a request in flight longer
than that quantile of recent latencies is sent once more, to another server with room; the first
answer is kept and the other, if it comes, is logged as a duplicate with its tokens (they are billed on
a paid endpoint). Only the tail is hedged: before it, a slow answer holds nothing up.

What lands on disk, and when:
- every answer is appended to `output_path` as an OpenAI batch *output* line the moment it
  arrives (flushed and fsynced per line, with the `server` that answered), so `kill -9` loses at
  most the requests in flight; a custom_id is written at most once per run;
- a rerun reads the custom_ids already in `output_path` and never sends them again;
- terminal failures (4xx other than 408/429, or retries used up) go to `error_path` in the same
  format. A rerun sends them again (`resend_errors=False` skips them) and, when it ends, drops
  every error line whose custom_id has since been answered, keeping only the latest error per
  custom_id: after a finished run each custom_id appears at most once across both files, and a
  reader should let an output line win over an error line in any case.

GPU knobs: the embedded server runs in this process and inherits its environment
(`GGML_CUDA_DISABLE_GRAPHS`, `CUDA_VISIBLE_DEVICES`, ...); an external server takes them from
wherever it is started. Nothing here touches the environment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractor.errors import BadInput
from extractor.jobs import Job, State
from extractor.lanes import LaneInfo, Progress, WaitOptions
from extractor.lanes.chat_server import api_urls
from extractor.lanes.fleet import DEFAULT_CONCURRENCY, FleetServer, server_key
from extractor.lanes.lane_stats import LaneEvent, LaneStats
from extractor.lanes.scheduler import Scheduler
from extractor.prepare.requests import iter_request_lines
from extractor.storage import atomic_write_jsonl, iter_jsonl

if TYPE_CHECKING:
    from extractor.lanes.submit import SubmitOptions

__all__ = ["LaneEvent", "LaneStats", "LocalLane", "compact_errors", "done_ids", "run_local_lane"]

CHAT_URL = "/v1/chat/completions"
LOCAL_OUTPUT = "local.jsonl"


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
    lines: Iterable[dict[str, Any]],
    *,
    output_path: Path,
    error_path: Path,
    base_url: str | Sequence[str],
    api_key: str | None = None,
    concurrency: int | None = None,
    concurrency_by_url: Mapping[str, int] | None = None,
    timeout_s: float = 120,
    max_retries: int = 4,
    server_wait_s: float = 60,
    resend_errors: bool = True,
    hedge_after: float | None = None,
    progress: Callable[[LaneEvent], None] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> LaneStats:
    """Answer every line not yet answered in output_path; see the module docstring for the guarantees.

    `base_url` is one server or several. `concurrency` caps every server, `concurrency_by_url` one
    (keyed by `fleet.server_key`); otherwise a server's slot count, else DEFAULT_CONCURRENCY.
    `progress` gets one LaneEvent per finished line; `log` gets one dict[str, Any] per request, retry, duplicate
    and server outage (for log.jsonl); `notice` gets a sentence when a server goes away or comes back.
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
    servers = _fleet([base_url] if isinstance(base_url, str) else list(base_url), concurrency, concurrency_by_url or {})
    lane = Scheduler(
        servers=servers,
        api_key=api_key,
        output_path=output_path,
        error_path=error_path,
        timeout_s=timeout_s,
        max_retries=max_retries,
        server_wait_s=server_wait_s,
        hedge_after=hedge_after,
        model=first["body"].get("model"),
        stats=stats,
        started=started,
        progress=progress,
        log=log,
        notice=notice,
    )
    try:
        asyncio.run(lane.run(first, pending))
    finally:
        stats.seconds = time.perf_counter() - started
        now = time.monotonic()
        stats.servers = [server.as_dict(stats.seconds, now) for server in servers]
        stats.concurrency = sum(server.max_concurrency for server in servers)
        compact_errors(error_path, answered | lane.answered_ids)
        if log and lane.began:
            log({"event": "lane_end", **stats.as_dict()})
    return stats


def _fleet(urls: list[str], every: int | None, per_url: Mapping[str, int]) -> list[FleetServer]:
    if not urls:
        raise BadInput(
            "no local server to send to — pass --local-url URL (once per server) or set EXTRACTOR_LOCAL_URLS"
        )
    servers = []
    for url in urls:
        root, v1 = api_urls(url)
        given = per_url.get(server_key(url), every)
        servers.append(
            FleetServer(
                url, root, v1, max_concurrency=given or DEFAULT_CONCURRENCY, source="given" if given else "default"
            )
        )
    unknown = set(per_url) - {server_key(url) for url in urls}
    if unknown:
        raise BadInput(
            f"--concurrency names {', '.join(sorted(unknown))}, which is not one of the --local-url servers "
            f"({', '.join(s.name for s in servers)})"
        )
    return servers


def _pending(lines: Iterable[dict[str, Any]], skip: set[str], stats: LaneStats) -> Iterator[dict[str, Any]]:
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


class LocalLane:
    """The `Lane` of one or more OpenAI-compatible chat servers: answers land in output/ as they come, so there is
    nothing to fetch, poll or cancel remotely."""

    def __init__(self, info: LaneInfo) -> None:
        self.info = info

    def submit(self, job: Job, options: SubmitOptions, progress: Progress | None = None) -> dict[str, Any]:
        import os

        from extractor.lanes.fleet import parse_concurrency, parse_hedge_after, resolve_urls
        from extractor.lanes.submit import _redact, local_endpoints

        every, per_url = parse_concurrency(options.concurrency)
        hedge_after = parse_hedge_after(options.hedge_after)
        embedded = not resolve_urls(options.local_url)
        with local_endpoints(options) as urls:
            job.log(
                "submit",
                backend=self.info.name,
                url=", ".join(_redact(u) for u in urls),
                embedded=embedded,
                **({"hedge_after": hedge_after} if hedge_after else {}),
            )
            stats = run_local_lane(
                iter_request_lines(job.request_files()),
                output_path=job.output_dir / LOCAL_OUTPUT,
                error_path=job.errors_dir / LOCAL_OUTPUT,
                base_url=urls,
                api_key=os.environ.get("EXTRACTOR_LOCAL_API_KEY"),
                concurrency=every,
                concurrency_by_url=per_url,
                hedge_after=hedge_after,
                timeout_s=options.request_timeout_s,
                server_wait_s=options.server_wait_s,
                progress=progress,
                log=lambda event: job.log(event.pop("event", "request"), **event),
                notice=options.notice,
            )
        remote = {
            "kind": self.info.name,
            "url": ", ".join(_redact(u) for u in urls),
            "embedded": embedded,
            "complete": True,
            "stats": stats.as_dict(),
        }
        job.transition(State.SUBMITTED, remote=remote)
        return {"job_id": job.id, "backend": self.info.name, **stats.as_dict()}

    def fetch(self, job: Job, wait: WaitOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
        return {}  # every answer is in output/ or errors/ the moment it arrives

    def pending(self, job: Job) -> int:
        return 0

    def cancel(self, job: Job) -> dict[str, Any]:
        job.transition(State.CANCELLED)  # nothing runs once submit has returned
        return {}

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
        from extractor.lanes.submit import submit_job

        set_aside()
        # The lane sends only lines without an answer line, which are now exactly the retried ones.
        job.transition(State.SUBMITTED, attempts=attempts)
        return submit_job(job, options, progress=progress)

    def progress(self, job: Job) -> dict[str, Any]:
        return {}
