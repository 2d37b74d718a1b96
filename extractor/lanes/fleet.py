"""One server of the local lane's fleet: how many requests it may hold, what it did, and the flags that name it.

Concurrency per server is additive-increase / multiplicative-decrease (AIMD, as TCP's congestion
window): it starts at the server's maximum (its slot count, `--concurrency URL=N`, or the default),
is halved on a 429 or a timeout (once per round trip: answers to requests sent before the last cut
don't cut again), and grows by one for every `limit` clean answers, never past the maximum.
A `Retry-After` (or OpenAI's `retry-after-ms`) pauses the whole server, as RFC 6585 §4 asks: the
header says when the client may send *a new request*, not just this one.

Nothing here does I/O: the scheduler in `local.py` drives these objects.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from extractor.errors import BadInput
from extractor.stats import percentile

DEFAULT_CONCURRENCY = 4  # for servers that publish no slot count (vLLM, Ollama, hosted endpoints)
URLS_ENV = "EXTRACTOR_LOCAL_URLS"
DECREASE_FACTOR = 0.5
MAX_RETRY_AFTER_S = 300.0  # a longer promise is capped: the lane probes again rather than sleep through the night
STALL_TIMEOUTS = 2  # this many timeouts in a row, no answer between: the server counts as stalled
LATENCY_WINDOW = 1000  # recent answers a percentile is taken over (hedging threshold, server ordering)


def display_url(url: str) -> str:
    """The URL without userinfo (`user:secret@`), for logs, notices, output lines and the ledger."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def resolve_urls(given: str | Sequence[str] | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """`--local-url` values (once or several times), else EXTRACTOR_LOCAL_URLS (comma-separated); [] for neither."""
    if isinstance(given, str):
        given = [given]
    urls = [u.strip() for u in (given or []) if u and u.strip()]
    if not urls:
        urls = [u.strip() for u in environ.get(URLS_ENV, "").split(",") if u.strip()]
    seen: dict[str, str] = {}
    for url in urls:
        key = url.rstrip("/").removesuffix("/v1")
        if key in seen:
            raise BadInput(
                f"--local-url {display_url(url)} is given twice — name each server once, "
                f"and give it more requests with --concurrency {display_url(url)}=N"
            )
        seen[key] = url
    return list(seen.values())


def parse_concurrency(values: int | str | Iterable[str] | None) -> tuple[int | None, dict[str, int]]:
    """`--concurrency N` (every server) and `--concurrency URL=N` (one server) → (N or None, {server root: N})."""
    if values is None:
        return None, {}
    if isinstance(values, (int, str)):
        values = [str(values)]
    every: int | None = None
    per_url: dict[str, int] = {}
    for value in values:
        url, sep, number = str(value).rpartition("=")
        try:
            n = int(number)
        except ValueError:
            n = 0
        if n < 1:
            raise BadInput(
                f"--concurrency {value!r}: give a whole number of requests of 1 or more, as N for "
                "every server or URL=N for one (--concurrency http://gpu-box:8000=16)"
            )
        if sep:
            per_url[server_key(url)] = n
        else:
            every = n
    return every, per_url


def server_key(url: str) -> str:
    """What identifies a server in --concurrency URL=N: its root without userinfo, /v1 or a trailing slash."""
    return display_url(url).removesuffix("/v1")


def parse_hedge_after(value: str | float | None) -> float | None:
    """`--hedge-after p95` (or `95`) → 0.95; None when hedging is off."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower().removeprefix("p")
    try:
        q = float(text)
    except ValueError:
        q = -1.0
    if not 50 <= q < 100:
        raise BadInput(f"--hedge-after {value!r}: give a latency percentile between p50 and p99.9, e.g. p95")
    return q / 100


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a 429/503 asks the client to wait: `retry-after-ms` (OpenAI), else `Retry-After` as seconds or an
    HTTP date (RFC 9110 §10.2.3); None when absent or unreadable. Capped at MAX_RETRY_AFTER_S."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    delay: float | None = None
    if "retry-after-ms" in lowered:
        try:
            delay = float(lowered["retry-after-ms"]) / 1000
        except ValueError:
            delay = None
    if delay is None and "retry-after" in lowered:
        raw = lowered["retry-after"].strip()
        try:
            delay = float(raw)
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                return None
            delay = when.timestamp() - (time.time() if now is None else now)
    if delay is None or not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class ServerStats:
    """What one server did in one run of the lane."""

    answered: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    errors: int = 0
    outages: int = 0
    hedges_sent: int = 0
    duplicates: int = 0
    peak_in_flight: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class FleetServer:
    """One server's state: up or down, paused by Retry-After, its AIMD limit and its figures."""

    def __init__(self, url: str, root: str, v1: str, *, max_concurrency: int, source: str):
        self.url, self.root, self.v1 = url, root, v1
        self.name = display_url(root)
        self.max_concurrency = max_concurrency
        self.source = source  # where max_concurrency came from: "given", "slots" or "default"
        self.limit = float(max_concurrency)
        self.in_flight = 0
        self.up = False
        self.stalled = False
        self.paused_until = 0.0
        self.consecutive_timeouts = 0
        self.stats = ServerStats()
        self.recent_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_cut = -math.inf
        self._limit_area = 0.0  # integral of the limit over time, for its time-weighted mean
        self._limit_since: float | None = None
        self._started: float | None = None
        self._expected_ms = 0.0
        self._seen = 0  # answers seen, kept or not

    # -- taking work

    def capacity(self) -> int:
        return max(1, math.floor(self.limit + 1e-9))

    def can_take(self, now: float) -> bool:
        return self.up and now >= self.paused_until and self.in_flight < self.capacity()

    def sent(self) -> None:
        self.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)

    def expected_ms(self) -> float:
        """Median of recent answers (refreshed every few answers); 0 for a server not yet measured, so it gets work."""
        return self._expected_ms

    # -- AIMD

    def answered(
        self, latency_ms: float, prompt_tokens: int, completion_tokens: int, now: float, *, kept: bool = True
    ) -> None:
        """A clean answer: grows the limit. `kept=False` for a duplicate, which counts as the server's work but
        not as one of its documents."""
        self.consecutive_timeouts = 0
        if kept:
            self.stats.answered += 1
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.stats.latencies_ms.append(latency_ms)
        else:
            self.stats.duplicates += 1
        self.recent_ms.append(latency_ms)
        self._seen += 1
        if _refresh_due(self._seen):
            self._expected_ms = percentile(self.recent_ms, 0.5) or 0.0
        if self.limit < self.max_concurrency:
            self._set_limit(min(float(self.max_concurrency), self.limit + 1 / self.limit), now)

    def congested(self, sent_at: float, now: float) -> bool:
        """A 429 or a timeout: halve the limit, once per round trip; True when it was cut."""
        if sent_at < self._last_cut:
            return False  # sent before the last cut: that cut already answered this congestion
        self._last_cut = now
        self._set_limit(max(1.0, self.limit * DECREASE_FACTOR), now)
        return True

    def pause(self, seconds: float, now: float) -> None:
        self.paused_until = max(self.paused_until, now + seconds)

    def timed_out(self) -> bool:
        """Count a timeout; True when this many in a row mean the server stalled."""
        self.stats.timeouts += 1
        self.consecutive_timeouts += 1
        return self.consecutive_timeouts >= STALL_TIMEOUTS

    # -- up and down

    def start(self, now: float) -> None:
        self._started = now
        self._limit_since = now

    def set_up(self, up: bool) -> None:
        if not up and self.up:
            self.stats.outages += 1
        self.up = up
        if up:
            self.stalled = False
            self.consecutive_timeouts = 0

    def _set_limit(self, value: float, now: float) -> None:
        if self._limit_since is not None:
            self._limit_area += self.limit * (now - self._limit_since)
        self._limit_since = now
        self.limit = value

    def mean_limit(self, now: float) -> float:
        if self._started is None or now <= self._started:
            return self.limit
        since = self._limit_since if self._limit_since is not None else now
        return (self._limit_area + self.limit * (now - since)) / (now - self._started)

    def as_dict(self, seconds: float, now: float) -> dict[str, Any]:
        """Per-server figures for log.jsonl, the manifest, `status` and the ledger."""
        s = self.stats
        lat = s.latencies_ms
        return {
            "url": self.name,
            "concurrency_max": self.max_concurrency,
            "concurrency_source": self.source,
            "concurrency_final": round(self.limit, 2),
            "concurrency_mean": round(self.mean_limit(now), 2),
            "peak_in_flight": s.peak_in_flight,
            "answered": s.answered,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "completion_tokens_per_s": round(s.completion_tokens / seconds, 2) if seconds else 0.0,
            "documents_per_s": round(s.answered / seconds, 3) if seconds else 0.0,
            "p50_ms": _round(percentile(lat, 0.50)),
            "p95_ms": _round(percentile(lat, 0.95)),
            "p99_ms": _round(percentile(lat, 0.99)),
            "rate_limited": s.rate_limited,
            "timeouts": s.timeouts,
            "errors": s.errors,
            "outages": s.outages,
            "hedges_sent": s.hedges_sent,
            "duplicates": s.duplicates,
        }


def _refresh_due(seen: int) -> bool:
    """Refresh a server's median on its 3rd answer, then every 16th: sorting on every answer costs CPU for nothing."""
    return seen == 3 or seen % 16 == 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
