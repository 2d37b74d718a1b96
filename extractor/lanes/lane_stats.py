"""What one run of the local lane did, in total and per line: for logs, the manifest, `status` and progress bars."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from extractor.stats import percentile


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
    rate_limited: int = 0
    hedged: int = 0
    hedge_wins: int = 0
    duplicates: int = 0
    duplicate_prompt_tokens: int = 0
    duplicate_completion_tokens: int = 0
    servers: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def percentile_ms(self, q: float) -> float | None:
        """Latency at quantile q (0..1), linearly interpolated; None when nothing was answered."""
        return percentile(self.latencies_ms, q)

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
        data.update(
            p50_ms=self.p50(),
            p95_ms=self.p95(),
            p99_ms=self.p99(),
            documents_per_s=self.documents_per_s(),
            completion_tokens_per_s=self.completion_tokens_per_s(),
        )
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
