"""`run --pipeline`: the gate job to its decisions, then the usual run over the documents that passed.

Each stage is its own job found again by its content key, so re-running after a crash at any point
continues: a collected gate job is reused (its decisions are re-derived from results.jsonl, which is
free), and the extraction job — whose key is that of exactly the passing documents — resumes in
`run_pipeline` as any run does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from extractor.errors import BadInput, ExitCode
from extractor.jobs import Job, JobsLock, JobStore
from extractor.lanes import describe
from extractor.prepare.stage import PrepareOptions, document_estimates, prepare_job
from extractor.run.engine import (
    Progress,
    RunOptions,
    RunReport,
    SilentProgress,
    crash_point,
    record_in_ledger,
    run_pipeline,
)
from extractor.run.gate import GATE_FILE, Admission, decide, gate_prepare_options, run_gate
from extractor.run.pipeline_file import ExtractStage, Pipeline


@dataclass
class GatedReport:
    pipeline: str
    gate: dict[str, Any] = field(default_factory=dict)
    extract: RunReport | None = None
    nothing_passed: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.gate.get("pending"):
            return ExitCode.PARTIAL
        code = self.extract.exit_code if self.extract is not None else ExitCode.OK
        # failed gate answers kept out by the "reject" policy are documents this run did not process
        if code is ExitCode.OK and self.gate.get("on_failure") == "reject" and self.gate.get("failed"):
            return ExitCode.PARTIAL
        return code

    def as_dict(self) -> dict[str, Any]:
        extract = self.extract.as_dict() if self.extract is not None else None
        costs = [self.gate.get("cost_usd"), extract.get("cost_usd") if extract else 0.0]
        return {
            "pipeline": self.pipeline,
            "exit_code": int(self.exit_code),
            "gate": self.gate,
            "extract": extract,
            "nothing_passed": self.nothing_passed,
            "cost_usd": None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 6),
            "saved_usd": self.gate.get("saved_usd"),
            "seconds": round(self.seconds, 2),
        }


def extract_prepare_options(stage: ExtractStage, base: PrepareOptions | None = None) -> PrepareOptions:
    """How the extraction job is prepared: the stage's spec, lane, model and budget (every document until admitted)."""
    options = replace(
        base or PrepareOptions(),
        backend=stage.backend,
        model=stage.model,
        spec_path=stage.spec,
        max_tokens=stage.max_tokens,
        prompt=None,
        admit=None,
    )
    if not describe(stage.backend).openai_api:
        return replace(options, reasoning_effort=None, verbosity=None, endpoint="chat")
    given: dict[str, Any] = {
        k: v
        for k, v in (
            ("reasoning_effort", stage.reasoning_effort),
            ("verbosity", stage.verbosity),
            ("endpoint", stage.endpoint),
        )
        if v is not None
    }
    return replace(options, **given)


def run_gated(
    store: JobStore,
    docs_dir: Path,
    pipeline: Pipeline,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> GatedReport:
    """Gate every document, then run extraction (verify, commit…) on the ones the gate lets through."""
    options = options or RunOptions()
    progress = progress or SilentProgress()
    if options.auto:
        raise BadInput(f"{pipeline.source}: --backend auto does not apply to a pipeline — each stage names its backend")
    started = time.monotonic()
    report = GatedReport(pipeline=pipeline.name)
    extract_options = extract_prepare_options(pipeline.extract, options.prepare)
    with JobsLock(store.root):  # two cron runs must not both send the gate batch
        gate = run_gate(store, docs_dir, pipeline.gate, options, progress=progress)
        if gate.pending:
            report.gate = _gate_report(gate.job, None, resumed=gate.resumed, pending=gate.pending)
            report.seconds = time.monotonic() - started
            return report
        decisions = decide(gate.job, pipeline.gate, extraction_estimates(docs_dir, extract_options))
        report.gate = _gate_report(gate.job, decisions, resumed=gate.resumed, pending=None)
        # the gate job's calls and cost go to the ledger like any job's; a failure only warns (`report` re-syncs)
        if options.ledger and (error := record_in_ledger(store, gate.job).error) is not None:
            report.gate.setdefault("warnings", []).append(f"ledger not updated for the gate job ({error})")
    crash_point("gate")  # after gate.json is written
    admission = Admission.from_decisions(decisions)
    if not admission:
        report.nothing_passed = True
        gate.job.log("gate_nothing_passed")
    else:
        run_options = replace(options, prepare=replace(extract_options, admit=admission))
        if options.submit.max_cost is not None:  # one cap for the run: what the gate spent counts against it
            gate_usd = float((gate.job.manifest.get("cost") or {}).get("usd") or 0.0)
            run_options = replace(run_options, submit=replace(options.submit, spent_before_usd=gate_usd))
        report.extract = run_pipeline(store, docs_dir, run_options, progress)
        report.gate["extraction_job_id"] = report.extract.job_id
        gate.job.log("gate_extraction", job_id=report.extract.job_id)
    report.seconds = time.monotonic() - started
    return report


def prepare_gated(
    store: JobStore, docs_dir: Path, pipeline: Pipeline, base: PrepareOptions | None = None
) -> dict[str, Any]:
    """Prepare the gate job and price both stages; extraction is priced for every document (an upper bound)."""
    gate = prepare_job(store, docs_dir, gate_prepare_options(pipeline.gate, base), resume=True)
    options = extract_prepare_options(pipeline.extract, base)
    estimates = extraction_estimates(docs_dir, options)
    extraction = _sum(estimates.values())
    return {
        "pipeline": pipeline.name,
        "gate": gate.as_dict(),
        "extract": {
            "backend": options.backend,
            "model": options.resolved_model(),
            "documents": len(estimates),
            "estimated_cost_usd_max": extraction,
        },
        "estimated_cost_usd": _sum([gate.estimated_cost_usd, extraction]),
    }


def extraction_estimates(docs_dir: Path, options: PrepareOptions) -> dict[str, float | None]:
    """Each document's extraction cost by sha256, as prepare prices it: exact input, output at max_tokens."""
    return document_estimates(docs_dir, options)


def _sum(values: Any) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 6)


def _gate_report(job: Job, decisions: dict[str, Any] | None, *, resumed: bool, pending: str | None) -> dict[str, Any]:
    m = job.manifest
    summary = (decisions or {}).get("summary", {})
    return {
        "job_id": job.id,
        "backend": m["backend"],
        "model": m["model"],
        "state": m["state"],
        "resumed": resumed,
        "pending": pending,
        "gate_file": str(job.path / GATE_FILE) if decisions else None,
        **{k: v for k, v in summary.items() if k not in ("gate_cost_usd", "gate_tokens")},
        "cost_usd": (m.get("cost") or {}).get("usd"),
        "tokens": summary.get("gate_tokens", {}),
    }
