"""The gate stage: one yes/no question per document as its own isolated job, and the decision it makes per document.

The gate job is an ordinary job (prepare → submit → collect) whose spec is `extractor/spec/gate.json` and whose
prompt carries the question; `gate.json` in its folder records, per document, the answer, the reason,
the tokens and the decision (passed / rejected / failed), and whether the document goes on to extraction.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from extractor.collect.results import iter_results
from extractor.job_files import format_tag
from extractor.jobs import Job, JobStore, State
from extractor.lanes import describe
from extractor.prepare.documents import Document, Skipped
from extractor.prepare.requests import Prompt, load_prompt
from extractor.prepare.stage import PrepareOptions, PrepareSummary, prepare_job
from extractor.run.engine import Progress, RunOptions, advance
from extractor.run.pipeline_file import GateStage
from extractor.spec import bundled_spec_path
from extractor.storage import atomic_write_json, read_versioned

GATE_FORMAT = format_tag("run.gate")
GATE_FILE = "gate.json"
GATE_SPEC_PATH = bundled_spec_path("gate")
QUESTION_SLOT = "{question}"
# A yes/no answer and one sentence: a short budget keeps a rambling small model cheap.
DEFAULT_GATE_MAX_TOKENS = 96
# Our user's own choice for the gate on the OpenAI lane, the cheapest current model (set with the lane).
DEFAULT_GATE_OPENAI_MODEL = describe("openai").defaults.gate_model
DECISIONS = ("passed", "rejected", "failed")


def gate_prompt(backend: str, question: str) -> Prompt:
    """The gate prompt with the question in its system message; the document stays alone in the user message."""
    base = load_prompt(backend, "gate")
    # A plain replace, not str.format: a question may hold braces.
    text = base.text.replace(QUESTION_SLOT, question)
    return replace(base, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def gate_prepare_options(stage: GateStage, base: PrepareOptions | None = None) -> PrepareOptions:
    """How the gate job is prepared: the gate spec and prompt, the stage's lane, model and budget, every document."""
    model = stage.model or describe(stage.backend).defaults.gate_model
    options = replace(
        base or PrepareOptions(),
        backend=stage.backend,
        model=model,
        spec_path=GATE_SPEC_PATH,
        max_tokens=stage.max_tokens or DEFAULT_GATE_MAX_TOKENS,
        split_long=False,
        prompt=gate_prompt(stage.backend, stage.question),
        admit=None,
    )
    if not describe(stage.backend).openai_api:  # OpenAI-only settings of the command line do not reach a local gate
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


@dataclass
class GateRun:
    """Where a gate job stands after `run_gate`: collected (ready for `decide`) or still waiting for its batches."""

    job: Job
    resumed: bool
    pending: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    retries: list[dict[str, Any]] = field(default_factory=list)  # always empty: the gate never retries


def run_gate(store: JobStore, docs_dir: Path, stage: GateStage, options: RunOptions, *, progress: Progress) -> GateRun:
    """Prepare (or find, by content key) the gate job and advance it to collected; the caller holds the jobs lock.

    A failed gate answer is a decision (the stage's `on_failure`), not a line to resend, so the gate never retries.
    """
    started = time.monotonic()
    with progress.stage("gate prepare", None) as tick:
        prepared: PrepareSummary = prepare_job(
            store, docs_dir, gate_prepare_options(stage, options.prepare), on_document=tick, resume=True
        )
    job = prepared.job
    run = GateRun(job=job, resumed=prepared.resumed, stages={"gate_prepare": round(time.monotonic() - started, 2)})
    job.log("gate_start", resumed=prepared.resumed, state=job.state.value, question=stage.question)
    deadline = None if options.wait_timeout_s is None else time.monotonic() + options.wait_timeout_s
    advance(
        job,
        replace(options, retry=False),
        until=State.COLLECTED,
        progress=progress,
        deadline=deadline,
        record=run,
        label="gate",
    )
    if run.pending:
        job.log("gate_pending", message=run.pending)
    return run


def decide(job: Job, stage: GateStage, estimates: dict[str, float | None]) -> dict[str, Any]:
    """Write gate.json (and the manifest's `gate` summary) from a collected gate job; returns gate.json's content.

    `estimates` is each document's extraction cost (upper bound) by sha256: what the gate saved is the sum
    over the documents it kept out of extraction.
    """
    extract_failed = stage.on_failure == "extract"
    sha_by_id = {doc["custom_id"]: doc["sha256"] for doc in job.documents()}
    documents: list[dict[str, Any]] = []
    for row in iter_results(job):
        sha = sha_by_id[row["custom_id"]]
        answer = row.get("answer") if row["outcome"] == "ok" else None
        usage = row.get("usage") or {}
        if isinstance(answer, dict):
            decision = "passed" if answer["answer"] == stage.pass_answer else "rejected"
        else:
            decision = "failed"
        documents.append(
            {
                "doc_id": row["doc_id"],
                "custom_id": row["custom_id"],
                "path": row["path"],
                "sha256": sha,
                "outcome": row["outcome"],
                "answer": answer["answer"] if answer else None,
                "reason": answer["reason"] if answer else None,
                "errors": row.get("errors") or [],
                "decision": decision,
                "extract": decision == "passed" or (decision == "failed" and extract_failed),
                "tokens": {
                    "prompt": int(usage.get("prompt_tokens") or 0),
                    "completion": int(usage.get("completion_tokens") or 0),
                },
                "cost_usd": row.get("cost_usd"),
                "extraction_estimate_usd": estimates.get(sha),
            }
        )
    # Documents the gate could not read (too long for its model, unreadable): a failed gate answer, by path.
    skipped = [
        {"path": s["path"], "reason": s["reason"], "decision": "failed", "extract": extract_failed}
        for s in job.manifest.get("skipped", [])
    ]
    data: dict[str, Any] = {
        "format": GATE_FORMAT,
        "job_id": job.id,
        "question": stage.question,
        "pass_answer": stage.pass_answer,
        "on_failure": stage.on_failure,
        "summary": _summary(job, stage, documents, skipped),
        "documents": documents,
        "skipped": skipped,
    }
    atomic_write_json(job.path / GATE_FILE, data)
    job.manifest["gate"] = data["summary"]
    job.save()
    job.log("gate_decided", **{k: v for k, v in data["summary"].items() if k in DECISIONS})
    return data


def _summary(
    job: Job, stage: GateStage, documents: list[dict[str, Any]], skipped: list[dict[str, Any]]
) -> dict[str, Any]:
    counts = {d: sum(1 for doc in documents + skipped if doc["decision"] == d) for d in DECISIONS}
    extracted = [doc for doc in documents if doc["extract"]]
    kept_out = [doc for doc in documents if not doc["extract"]]
    cost = job.manifest.get("cost") or {}
    return {
        "question": stage.question,
        "pass_answer": stage.pass_answer,
        "on_failure": stage.on_failure,
        "documents": len(documents) + len(skipped),
        **counts,
        "extracted": len(extracted) + sum(1 for s in skipped if s["extract"]),
        "kept_out": len(kept_out) + sum(1 for s in skipped if not s["extract"]),
        "gate_cost_usd": cost.get("usd"),
        "gate_tokens": {"prompt": cost.get("prompt_tokens", 0), "completion": cost.get("completion_tokens", 0)},
        # upper bounds (output at max_tokens), as `prepare` estimates: None when a price is unknown
        "extraction_estimate_usd": _total(documents),
        "extraction_estimate_passed_usd": _total(extracted),
        "saved_usd": _total(kept_out),
    }


def _total(documents: list[dict[str, Any]]) -> float | None:
    values = [doc["extraction_estimate_usd"] for doc in documents]
    return None if any(v is None for v in values) else round(float(sum(values)), 6)


def read_decisions(job: Job) -> dict[str, Any]:
    return read_versioned(job.path / GATE_FILE, "run.gate")


@dataclass(frozen=True)
class Admission:
    """The documents the gate lets through: by content, and by path for those the gate could not read."""

    sha256: frozenset[str]
    paths: frozenset[str]

    @classmethod
    def from_decisions(cls, data: dict[str, Any]) -> Admission:
        return cls(
            frozenset(d["sha256"] for d in data["documents"] if d["extract"]),
            frozenset(s["path"] for s in data["skipped"] if s["extract"]),
        )

    def __call__(self, item: Document | Skipped) -> bool:
        # by content, so a file changed since the gate saw it is not let through on its name
        if isinstance(item, Document):
            return item.sha256 in self.sha256 or item.path in self.paths
        return item.path in self.paths

    def __bool__(self) -> bool:
        return bool(self.sha256 or self.paths)
