"""The terminal face of `run --pipeline`: options from the `run` command's arguments, the summary of both stages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from extractor.cli import console
from extractor.errors import BadInput
from extractor.jobs import JobStore
from extractor.lanes.submit import SubmitOptions
from extractor.locations import data_dir, graph_uri
from extractor.prepare.stage import PrepareOptions
from extractor.pricing import usd
from extractor.run.engine import RunOptions
from extractor.run.gated import GatedReport, run_gated
from extractor.run.pipeline_file import load_pipeline

# `run` flags that a pipeline file decides per stage: given together with --pipeline they would be ignored.
_STAGE_FLAGS = {
    "schema": "--schema",
    "model": "--model",
    "max_tokens": "--max-tokens",
    "reasoning_effort": "--reasoning-effort",
    "verbosity": "--verbosity",
}


def run_gated_cli(store: JobStore, args: dict[str, Any]) -> int:
    """Run a pipeline file for `extractor run DOCS --pipeline FILE`; `args` are the `run` command's parameters."""
    pipeline = load_pipeline(Path(args["pipeline"]))
    given = [flag for name, flag in _STAGE_FLAGS.items() if args.get(name) is not None]
    if args.get("backend", "local") != "local":
        given.append("--backend")
    if args.get("endpoint", "chat") != "chat":
        given.append("--endpoint")
    if given:
        raise BadInput(
            f"{', '.join(given)} cannot be combined with --pipeline — set them in the gate and extract"
            f" tables of {pipeline.source}"
        )
    options = RunOptions(
        prepare=PrepareOptions(),
        submit=SubmitOptions(
            local_url=args.get("local_url"),
            model_path=args.get("model_path"),
            slots=args.get("slots", 4),
            max_cost=args.get("max_cost"),
            threads=args.get("threads"),
            concurrency=args.get("concurrency"),
            hedge_after=args.get("hedge_after"),
            notice=console.notice,
            max_enqueued_tokens=args.get("max_enqueued_tokens"),
        ),
        graph_uri=graph_uri(args.get("graph")),
        database=args.get("database"),
        data_dir=data_dir(),
        commit=not args.get("no_commit", False),
        strict=args.get("strict", False),
        wait_timeout_s=args.get("wait_timeout"),
        poll_interval_s=args.get("poll_interval", 10.0),
        retry=args.get("retry", False),
        max_attempts=args.get("max_attempts", 2),
    )
    report = run_gated(store, Path(args["docs_dir"]), pipeline, options, console.RichProgress())
    data = report.as_dict()
    if args.get("as_json"):
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        sys.stdout.flush()
    else:
        render_gated(report, data)
    _talk(report, data)
    return int(report.exit_code)


def render_gated(report: GatedReport, data: dict[str, Any]) -> None:
    """Both stages: the gate's decisions and what the gate saved, then the extraction run's own summary."""
    gate = data["gate"]
    console.out.print(
        console.key_value_table(
            f"extractor run · pipeline {data['pipeline']} · gate job {gate['job_id']}",
            {
                "question": gate.get("question") or "",
                "model": f"{gate['model']} ({gate['backend']})" + (" · resumed" if gate.get("resumed") else ""),
                "documents": gate.get("documents", 0),
                "passed": gate.get("passed", 0),
                "rejected": gate.get("rejected", 0),
                "failed": f"{gate.get('failed', 0)} (policy: {gate.get('on_failure', 'extract')})",
                "sent to extraction": gate.get("extracted", 0),
                "gate cost": usd(gate.get("cost_usd")),
                "extraction estimate, all documents": usd(gate.get("extraction_estimate_usd")) + " (upper bound)",
                "saved by the gate": usd(gate.get("saved_usd")),
            },
        )
    )
    extract = data["extract"]
    if extract is not None:
        console.out.print(console.run_summary_table(extract))
        if extract["up_to_date"]:
            console.out.print(f"Up to date: job {extract['job_id']} already committed these documents", markup=False)
        elif extract["commit"]:
            console.out.print(f"To undo this run: extractor rollback {extract['job_id']}", markup=False)
    console.out.print(f"total cost {usd(data['cost_usd'])} · {data['seconds']:.1f}s", markup=False)


def _talk(report: GatedReport, data: dict[str, Any]) -> None:
    def say(text: str) -> None:
        console.err.print(text, markup=False, highlight=False, soft_wrap=True)

    gate, extract = data["gate"], data["extract"]
    if gate.get("pending"):
        say(f"not finished: gate job {gate['job_id']}: {gate['pending']}")
    if report.nothing_passed:
        say(f"no document passed the gate — nothing to extract (see {gate['gate_file']})")
    if extract is not None:
        if extract.get("pending"):
            say(f"not finished: {extract['pending']}")
        if (extract.get("verify") or {}).get("quarantined"):
            say(f"{extract['verify']['quarantined']} document(s) quarantined — see {extract['job_id']}/verify.json")
        for warning in extract.get("warnings", []):
            say(f"warning: {warning}")
    for warning in gate.get("warnings", []):
        say(f"warning: {warning}")
