"""The lanes: how a prepared job's request lines reach a model and its answers come back into the job folder.

Every lane implements the `Lane` protocol (submit, fetch, pending, cancel, resend, progress), and `lane_for(job)`
gives the one a job uses. What the rest of the code needs to know about a lane without loading it (is it a
batch API, does anyone bill it, its defaults) is its `LaneInfo`, from `describe(name)`.

A new lane is one new module here with a class that implements `Lane`, plus one `register(LaneInfo(...))` below.
Nothing outside `extractor/lanes/` tests a lane's name: the names are data (the manifest's `backend`, the
`remote.kind` a lane writes), never a branch.

This module loads no lane: each implementation is imported the first time `lane_for` or `load` needs it, so
reading files (collect, reports) never imports the OpenAI client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from extractor.errors import BadInput, ExitCode, ExtractorError

if TYPE_CHECKING:
    from extractor.jobs import Job
    from extractor.lanes.submit import SubmitOptions

__all__ = [
    "BatchesPending",
    "Lane",
    "LaneDefaults",
    "LaneInfo",
    "Progress",
    "WaitOptions",
    "describe",
    "info_for",
    "lane_for",
    "lane_names",
    "load",
    "register",
]

Progress = Callable[[Any], None]


@dataclass
class WaitOptions:
    """How collect waits: poll every interval (growing by half each time up to max), give up after timeout."""

    wait: bool = False
    poll_interval_s: float = 10.0
    max_interval_s: float = 300.0
    timeout_s: float | None = None


class BatchesPending(ExtractorError):
    """Some batches are still running: nothing is lost, collect again later."""

    exit_code = ExitCode.PARTIAL


@dataclass(frozen=True)
class LaneDefaults:
    """What prepare (and the gate) use for a job of this lane when the command line does not say."""

    model: str
    context_tokens: int  # the context the request must fit in when the model's own is unknown
    max_tokens: int  # output budget per answer
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # extra sampling fields on every line
    gate_model: str | None = None  # the gate's model; None: the same as `model`


@dataclass(frozen=True)
class LaneInfo:
    """A lane as the rest of the code sees it, without loading it."""

    name: str  # the manifest's `backend` and the `remote.kind` the lane records; data, never a branch
    implementation: str  # "module:Class", loaded on first use
    is_batch: bool  # answers come back later from a batch API (polled), billed at the batch discount
    billed: bool  # False: nobody bills per token (the answers cost nothing)
    openai_api: bool  # lines follow the OpenAI model's profile; --reasoning-effort/--verbosity/--endpoint apply
    bounded_arrays: bool  # the schema's arrays are bounded by what max_tokens holds (small local models loop)
    per_request_latency: bool  # each request is timed (the report's latency is per request, not per batch)
    prompt: str  # which prompt variant the lines are written with (extractor/prompts/<name>.<prompt>.txt)
    default_settings: LaneDefaults | None = None  # None: a lane no job is prepared for (answers taken in from files)

    @property
    def preparable(self) -> bool:
        """`prepare --backend NAME` accepts it."""
        return self.default_settings is not None

    @property
    def defaults(self) -> LaneDefaults:
        """What prepare uses when the command line does not say; BadInput for a lane no job is prepared for."""
        if self.default_settings is None:
            raise BadInput(f"no job is prepared for the {self.name!r} lane — use --backend {' or '.join(lane_names())}")
        return self.default_settings


@runtime_checkable
class Lane(Protocol):
    """One way of getting answers: every method takes the job, and leaves its answers as files in the job folder."""

    info: LaneInfo

    def submit(self, job: Job, options: SubmitOptions, progress: Progress | None = None) -> dict[str, Any]:
        """Send every line not yet answered (after submit_job's checks); returns what the submit reports."""
        ...

    def fetch(self, job: Job, wait: WaitOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """Bring answers still held remotely into output/ and errors/; BatchesPending while some are not ready."""
        ...

    def pending(self, job: Job) -> int:
        """Request lines whose answers are not in the job folder yet (a progress bar's total; 0 when none)."""
        ...

    def cancel(self, job: Job) -> dict[str, Any]:
        """Stop what is still running (what finished is kept); returns counts for the cancel summary."""
        ...

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
        """Send these lines again (truncated ones with a larger budget where the lane can).

        The lane first checks it can send at all, then calls `set_aside()` (cost check, earlier lines set
        aside), then records `attempts` and sends; returns what the retry reports.
        """
        ...

    def progress(self, job: Job) -> dict[str, Any]:
        """`status ID`: what the lane knows of the job's requests (one look at remote work); {} when nothing."""
        ...


_LANES: dict[str, LaneInfo] = {}
_LOADED: dict[str, Lane] = {}


def register(info: LaneInfo) -> LaneInfo:
    _LANES[info.name] = info
    return info


def lane_names(*, preparable: bool = True) -> list[str]:
    """The lanes a job can be prepared for (`--backend`), in registration order."""
    return [name for name, info in _LANES.items() if info.preparable or not preparable]


def describe(name: str) -> LaneInfo:
    """The lane of this name (the manifest's `backend`); BadInput for an unknown one."""
    info = _LANES.get(name)
    if info is None:
        raise BadInput(f"unknown backend {name!r} — use {', '.join(lane_names())}")
    return info


def load(name: str) -> Lane:
    """The lane's implementation (imported on first use)."""
    lane = _LOADED.get(name)
    if lane is None:
        info = describe(name)
        module, _, cls = info.implementation.partition(":")
        lane = _LOADED[name] = getattr(importlib.import_module(module), cls)(info)
    return lane


def info_for(job: Job) -> LaneInfo:
    """The description of `lane_for(job)`, without loading the lane."""
    backend = job.manifest["backend"]
    kind = (job.manifest.get("remote") or {}).get("kind") or backend
    if kind not in _LANES:
        raise BadInput(
            f"Job {job.id} names an unknown backend {kind!r} — prepare it again with --backend "
            f"{' or '.join(lane_names())}"
        )
    return _LANES[kind]


def lane_for(job: Job) -> Lane:
    """The lane that holds the job's answers: the one its `remote` record names, else the one it was prepared for."""
    return load(info_for(job).name)


register(
    LaneInfo(
        name="local",
        implementation="extractor.lanes.local:LocalLane",
        is_batch=False,
        billed=False,
        openai_api=False,
        bounded_arrays=True,
        per_request_latency=True,
        prompt="local",
        # A 270M model rambles, so the embedded default output budget is kept short. Gemma 270M loops on entity lists
        # without a repeat penalty (examples/docs: 2 of 4 answers hit max_tokens at frequency_penalty 0.6, none at
        # repeat_penalty 1.3).
        default_settings=LaneDefaults(
            model="gemma-3-270m-q4_k_m", context_tokens=4096, max_tokens=768, extra_body={"repeat_penalty": 1.3}
        ),
    )
)
register(
    LaneInfo(
        name="openai",
        implementation="extractor.lanes.openai_batch:OpenAIBatchLane",
        is_batch=True,
        billed=True,
        openai_api=True,
        bounded_arrays=False,
        per_request_latency=False,
        prompt="openai",
        # Our user's own choice for extraction, and gpt-5.4-nano for the gate.
        default_settings=LaneDefaults(
            model="gpt-5.4-mini", context_tokens=128_000, max_tokens=4096, gate_model="gpt-5.4-nano"
        ),
    )
)
# Answers taken in from files (`collect --output-file`): no job is prepared for it; it stands in for the lane
# the job was prepared for, which still resends (`retry`).
register(
    LaneInfo(
        name="file",
        implementation="extractor.lanes.files:FileLane",
        is_batch=False,
        billed=True,
        openai_api=False,
        bounded_arrays=False,
        per_request_latency=False,
        prompt="openai",
        default_settings=None,
    )
)
