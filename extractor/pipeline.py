"""`run`: prepare → submit → collect → verify → commit, each stage skipped when the job folder says it is done."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import ExitCode
from .jobs import JobsLock, JobStore, State
from .prepare import PrepareOptions, prepare_job
from .results import collect_job, iter_results
from .submission import SubmitOptions, submit_job
from .verify.verdicts import Policy, verify_job


class Progress(Protocol):
    """How the core reports progress without knowing about terminals: the CLI passes a rich implementation."""

    def stage(self, name: str, total: int | None) -> AbstractContextManager[Callable[..., None]]: ...


class SilentProgress:
    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Callable[..., None]]:
        yield lambda *args, **kwargs: None


@dataclass
class RunOptions:
    prepare: PrepareOptions = field(default_factory=PrepareOptions)
    submit: SubmitOptions = field(default_factory=SubmitOptions)
    graph_uri: str = "embedded"
    database: str | None = None
    data_dir: Path = Path(".")
    commit: bool = True
    strict: bool = False


@dataclass
class RunReport:
    job_id: str = ""
    resumed: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    prepare: dict[str, Any] = field(default_factory=dict)
    collect: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    commit: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.verify.get("quarantined"):
            return ExitCode.QUARANTINED
        if self.verify.get("failed") or self.prepare.get("skipped"):
            return ExitCode.PARTIAL
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "resumed": self.resumed, "exit_code": int(self.exit_code),
            "prepare": self.prepare, "collect": self.collect, "verify": self.verify, "commit": self.commit,
            "tokens": self.tokens, "stages_seconds": self.stages, "seconds": round(self.seconds, 2),
        }


def run_pipeline(store: JobStore, docs_dir: Path, options: RunOptions, progress: Progress | None = None) -> RunReport:
    """Runs under the jobs-dir lock; re-running the same command after a crash continues the same job."""
    progress = progress or SilentProgress()
    report = RunReport()
    started = time.monotonic()
    with JobsLock(store.root):
        with _timed(report, "prepare"), progress.stage("prepare", None) as tick:
            prepared = prepare_job(store, docs_dir, options.prepare, on_document=tick, resume=True)
        job = prepared.job
        report.job_id, report.resumed, report.prepare = job.id, prepared.resumed, prepared.as_dict()

        if job.state in (State.PREPARED, State.FAILED, State.CANCELLED):
            with _timed(report, "submit"), progress.stage("submit", prepared.requests) as tick:
                submit_job(job, options.submit, progress=tick)
        if job.state is State.SUBMITTED:
            with _timed(report, "collect"), progress.stage("collect", None):
                collect_job(job)
        if job.state is State.COLLECTED:
            with _timed(report, "verify"), progress.stage("verify", None):
                verify_job(job, policy=Policy.strict() if options.strict else Policy())
        if options.commit and job.state is State.VERIFIED:
            from .publishing import commit_stage  # the graph drivers load only when a run commits

            clean = job.manifest["verify"]["clean"]
            with _timed(report, "commit"), progress.stage("commit", clean) as tick:
                commit_stage(job, uri=options.graph_uri, database=options.database,
                             data_dir=options.data_dir, progress=tick)

        report.collect = job.manifest.get("outcomes", {})
        report.verify = job.manifest.get("verify", {})
        report.commit = job.manifest.get("commit", {})
        report.tokens = job_tokens(job)
    report.seconds = time.monotonic() - started
    return report


def job_tokens(job) -> dict[str, int]:
    prompt = completion = 0
    if job.results_path.exists():
        for row in iter_results(job):
            usage = row.get("usage") or {}
            prompt += usage.get("prompt_tokens") or 0
            completion += usage.get("completion_tokens") or 0
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


@contextmanager
def _timed(report: RunReport, stage: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        report.stages[stage] = round(report.stages.get(stage, 0.0) + time.monotonic() - start, 2)
