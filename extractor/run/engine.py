"""`run`: prepare → submit → wait → collect → retry → verify → commit, each stage skipped when the job folder says it is
done.

Re-running the same command after any crash continues the same job: `prepare` finds the unfinished job
with the same content key (documents, spec, prompt, model, settings), and each later stage starts from
the state that job's manifest records. A job of the same key that was already committed makes the run
a no-op ("up to date"), so a cron line over an unchanged folder never pays twice.

`advance` is the one stage engine: it takes any prepared job (a run's, a gate's, a pipeline's extraction)
from the state its manifest records up to a target state. `crash_point` and `record_in_ledger` are the one
fault-injection hook and the one ledger write every run uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from extractor.collect.results import collect_job, iter_results
from extractor.errors import BadInput, ExitCode
from extractor.job_files import BackendChoice as BackendChoiceRecord
from extractor.jobs import Job, JobsLock, JobStore, State
from extractor.lanes import describe
from extractor.lanes.submit import BackendChoice, SubmitOptions, choose_backend, submit_job
from extractor.prepare.stage import PrepareOptions, PrepareSummary, prepare_job
from extractor.verify.verdicts import Policy, verify_job

# Fault injection for the crash-resume tests and for rehearsing recovery by hand: the process SIGKILLs
# itself right after the named stage (prepare, submit, collect, retry, verify, commit, ledger) finished.
CRASH_AFTER_ENV = "EXTRACTOR_TEST_CRASH_AFTER"
DEFAULT_POLL_INTERVAL_S = 10.0


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
    auto: bool = False  # --backend auto: pick the lane with choose_backend before prepare
    health_timeout_s: float = 60.0
    wait_timeout_s: float | None = None  # bounds the whole wait for OpenAI batches, retries included
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    retry: bool = False
    max_attempts: int = 2
    ledger: bool = True


@dataclass
class RunReport:
    job_id: str = ""
    backend: str = ""
    model: str = ""
    state: str = ""
    resumed: bool = False
    up_to_date: bool = False
    pending: str | None = None  # set when the wait for batches ran out: the next run resumes waiting
    backend_choice: BackendChoiceRecord | None = None
    stages: dict[str, float] = field(default_factory=dict)
    prepare: dict[str, Any] = field(default_factory=dict)
    collect: dict[str, Any] = field(default_factory=dict)
    retries: list[dict[str, Any]] = field(default_factory=list)
    verify: dict[str, Any] = field(default_factory=dict)
    commit: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    ledger: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.verify.get("quarantined"):
            return ExitCode.QUARANTINED
        if self.pending or self.verify.get("failed") or self.prepare.get("skipped"):
            return ExitCode.PARTIAL
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "backend": self.backend,
            "model": self.model,
            "state": self.state,
            "resumed": self.resumed,
            "up_to_date": self.up_to_date,
            "pending": self.pending,
            "exit_code": int(self.exit_code),
            "backend_choice": self.backend_choice,
            "prepare": self.prepare,
            "collect": self.collect,
            "retries": self.retries,
            "verify": self.verify,
            "commit": self.commit,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "ledger": self.ledger,
            "warnings": self.warnings,
            "stages_seconds": self.stages,
            "seconds": round(self.seconds, 2),
        }


def run_pipeline(store: JobStore, docs_dir: Path, options: RunOptions, progress: Progress | None = None) -> RunReport:
    """Runs under the jobs-dir lock (a second run exits 5 at once); see the module docstring for resuming."""
    progress = progress or SilentProgress()
    report = RunReport()
    started = time.monotonic()
    with JobsLock(store.root):
        job = _prepare(store, docs_dir, options, report, progress)
        try:
            if not report.up_to_date:
                until = State.COMMITTED if options.commit else State.VERIFIED
                advanced = advance(
                    job,
                    options,
                    until=until,
                    progress=progress,
                    deadline=_deadline(options.wait_timeout_s),
                    record=report,
                )
                if advanced.pending:
                    job.log("run_pending", message=advanced.pending)
        finally:
            _summarise(job, report)
            if options.ledger:
                synced = record_in_ledger(store, job)
                report.ledger = synced.path
                if synced.error is None:
                    crash_point("ledger")
                elif isinstance(synced.error, BadInput):  # e.g. a ledger of a newer extractor: the results stand
                    report.warnings.append(synced.error.message)
                else:
                    report.warnings.append(
                        f"ledger not updated ({synced.error}); `extractor report` brings it up to date"
                    )
    report.seconds = time.monotonic() - started
    if not report.up_to_date:
        job.log("run_end", exit_code=int(report.exit_code), state=report.state, seconds=round(report.seconds, 2))
    return report


def _prepare(store: JobStore, docs_dir: Path, options: RunOptions, report: RunReport, progress: Progress) -> Job:
    with _timed(report, "prepare"):
        choice = _choose_lane(store, docs_dir, options) if options.auto else None
        prepare_options = replace(options.prepare, backend=choice.backend) if choice else options.prepare
        with progress.stage("prepare", None) as tick:
            prepared = prepare_job(store, docs_dir, prepare_options, on_document=tick, resume=True)
        job = prepared.job
        if not prepared.resumed and (done := _committed_twin(store, job)) is not None:
            _discard(job)  # nothing was sent for it: the same input is already in the graph
            job, report.up_to_date = done, True
        elif choice and "backend_choice" not in job.manifest:
            job.manifest["backend_choice"] = choice.as_dict()
            job.save()
            job.log("backend_choice", **choice.as_dict())
    report.job_id, report.resumed, report.prepare = job.id, prepared.resumed, _prepare_summary(prepared, job)
    report.backend_choice = job.manifest.get("backend_choice")
    if not report.up_to_date:  # which runs touched a job, and as which process, for whoever reads log.jsonl
        job.log("run_start", pid=os.getpid(), resumed=prepared.resumed, state=job.state.value)
    crash_point("prepare")
    return job


def _choose_lane(store: JobStore, docs_dir: Path, options: RunOptions) -> BackendChoice:
    """An OpenAI job of this folder with batches in flight is continued (they are paid for); else a fresh
    health check.
    """
    for job in sorted(store, key=lambda j: j.manifest.get("created_at", ""), reverse=True):
        m = job.manifest
        choice = m.get("backend_choice")
        if m.get("source") != str(docs_dir) or choice is None or choice.get("requested") != "auto":
            continue
        sent = any(e.get("batch_id") for e in (m.get("remote") or {}).get("batches", []))
        if describe(m["backend"]).is_batch and sent and job.state in (State.SUBMITTED, State.COLLECTED, State.VERIFIED):
            return BackendChoice(m["backend"], f"continuing job {job.id}, whose batches were already sent")
        break
    return choose_backend(options.submit, options.health_timeout_s)


def _committed_twin(store: JobStore, new: Job) -> Job | None:
    """The newest other job of the same key, when it is committed (a rolled-back or cancelled one is run again)."""
    twins = [j for j in store if j.id != new.id and j.manifest.get("key") == new.manifest.get("key")]
    if not twins:
        return None
    newest = max(twins, key=lambda j: (j.manifest.get("created_at", ""), j.id))
    return newest if newest.state is State.COMMITTED else None


def _discard(job: Job) -> None:
    """Renamed away first, so a crash mid-delete leaves a hidden folder that no command takes for a job."""
    hidden = job.path.with_name(f".discarded-{job.id}")
    os.replace(job.path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


class StageRecord(Protocol):
    """Where `advance` writes what it did: seconds per stage, each retry round, and why it stopped short."""

    stages: dict[str, float]
    retries: list[dict[str, Any]]
    pending: str | None


@dataclass
class Advanced:
    """What one `advance` did to a job (a RunReport takes the same fields, so `run` passes its own)."""

    stages: dict[str, float] = field(default_factory=dict)
    retries: list[dict[str, Any]] = field(default_factory=list)
    pending: str | None = None  # the wait for batches ran out: the next call resumes waiting


# The stages `advance` can take a job up to, in order; a job already past `until` is left as it is.
_ORDER = (State.PREPARED, State.SUBMITTED, State.COLLECTED, State.VERIFIED, State.COMMITTED)


def advance(
    job: Job,
    options: RunOptions,
    *,
    until: State = State.COMMITTED,
    progress: Progress | None = None,
    deadline: float | None = None,
    record: StageRecord | None = None,
    label: str = "",
) -> StageRecord:
    """Take a job from the state its manifest records up to `until`: submit → collect → retry → verify → commit.

    Each stage runs only when the job's state calls for it, so a second call after a crash continues where the
    first stopped. Batches still running when `deadline` (time.monotonic) passes end the call with `pending` set
    instead of an error. `label` names the stages of a job that is part of a bigger run ("gate": progress
    "gate submit", seconds "gate_submit", crash point "gate_submit"); the run's own job has none.
    """
    from extractor.lanes import BatchesPending

    if until not in _ORDER[1:]:
        raise ValueError(f"advance: cannot take a job up to {until.value!r}")
    progress = progress or SilentProgress()
    record = record if record is not None else Advanced()
    steps = _Steps(job, options, record, progress, label)
    up_to = _ORDER.index(until)
    try:
        if job.state in (State.PREPARED, State.FAILED):
            with steps.stage("submit", _requests(job)) as tick:
                submit_job(job, options.submit, progress=tick)
            steps.crash_point("submit")
        if job.state is State.SUBMITTED and up_to >= _ORDER.index(State.COLLECTED):
            steps.collect(deadline)
        while options.retry and job.state is State.COLLECTED and steps.retry():
            steps.collect(deadline)
    except BatchesPending as exc:
        record.pending = exc.message
        return record
    if job.state is State.COLLECTED and up_to >= _ORDER.index(State.VERIFIED):
        with steps.stage("verify", None):
            verify_job(job, policy=Policy.strict() if options.strict else Policy())
        steps.crash_point("verify")
    if job.state is State.VERIFIED and up_to >= _ORDER.index(State.COMMITTED):
        from extractor.graph.publishing import commit_stage  # the graph drivers load only when a run commits

        with steps.stage("commit", job.manifest["verify"]["clean"]) as tick:
            commit_stage(
                job, uri=options.graph_uri, database=options.database, data_dir=options.data_dir, progress=tick
            )
        steps.crash_point("commit")
    return record


@dataclass
class _Steps:
    """The stages of one `advance`: each timed into the record, shown by `progress`, followed by its crash point."""

    job: Job
    options: RunOptions
    record: StageRecord
    progress: Progress
    label: str

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Callable[..., None]]:
        key, shown = (f"{self.label}_{name}", f"{self.label} {name}") if self.label else (name, name)
        with _timed(self.record, key), self.progress.stage(shown, total) as tick:
            yield tick

    def crash_point(self, name: str) -> None:
        crash_point(f"{self.label}_{name}" if self.label else name)

    def collect(self, deadline: float | None) -> None:
        from extractor.lanes import WaitOptions, lane_for

        job, options = self.job, self.options
        lane = lane_for(job)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        wait = WaitOptions(
            wait=True,
            poll_interval_s=options.poll_interval_s,
            max_interval_s=max(options.poll_interval_s, 300.0),
            timeout_s=remaining,
        )
        with self.stage("collect", lane.pending(job) or None) as tick:
            collect_job(job, lane, wait=wait, progress=tick)
        self.crash_point("collect")

    def retry(self) -> bool:
        """Resend failed, expired, truncated or missing lines once more; False when none are left under the cap."""
        from extractor.lanes.retry import retry_job

        with self.stage("retry", None) as tick:
            result = retry_job(self.job, self.options.submit, max_attempts=self.options.max_attempts, progress=tick)
        if not result.get("retried"):
            return False
        self.record.retries.append(result)
        self.crash_point("retry")
        return True


def _summarise(job: Job, report: RunReport) -> None:
    m = job.manifest
    report.backend, report.model, report.state = m["backend"], m["model"], m["state"]
    report.collect = m.get("outcomes", {})
    report.verify = m.get("verify", {})
    report.commit = m.get("commit", {})
    report.tokens = job_tokens(job)
    report.cost_usd = (m.get("cost") or {}).get("usd")


@dataclass
class LedgerSync:
    path: str | None = None  # the ledger the job went into
    error: Exception | None = None  # why it did not (sqlite, disk, a ledger of a newer extractor)


def record_in_ledger(store: JobStore, job: Job) -> LedgerSync:
    """Sync one job into the ledger. The ledger is rebuilt from job folders (`report` syncs too), so a failure
    here costs no data: it is returned for the caller to warn about, never raised."""
    from extractor.reports.ledger import Ledger

    synced = LedgerSync()
    try:
        with Ledger.for_jobs(store) as ledger:
            ledger.sync_job(job)
            synced.path = str(ledger.path)
    except (sqlite3.Error, OSError, BadInput) as exc:
        synced.error = exc
    return synced


def _prepare_summary(prepared: PrepareSummary, job: Job) -> dict[str, Any]:
    data = prepared.as_dict()
    if job is not prepared.job:  # up to date: describe the committed job, not the discarded twin
        data.update(job_id=job.id, state=job.state.value)
    return data


def _requests(job: Job) -> int:
    return sum(s["lines"] for s in job.manifest["shards"])


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def crash_point(stage: str) -> None:
    """SIGKILL this process when CRASH_AFTER_ENV names `stage` (prepare, submit, collect, retry, verify, commit,
    ledger; gate after gate.json; gate_submit, gate_collect for the gate job's own stages)."""
    if os.environ.get(CRASH_AFTER_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def job_tokens(job: Job) -> dict[str, int]:
    prompt = completion = 0
    if job.results_path.exists():
        for row in iter_results(job):
            usage = row.get("usage") or {}
            prompt += usage.get("prompt_tokens") or 0
            completion += usage.get("completion_tokens") or 0
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


@contextmanager
def _timed(report: RunReport | StageRecord, stage: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        report.stages[stage] = round(report.stages.get(stage, 0.0) + time.monotonic() - start, 2)
