"""The lanes behind one protocol: every registered lane implements it, lane_for picks by the job's record, and
reading files (collect) never loads the OpenAI lane."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from extractor.errors import BadInput
from extractor.jobs import JobStore
from extractor.lanes import Lane, describe, info_for, lane_for, lane_names, load
from extractor.lanes.files import FileLane
from extractor.lanes.local import LocalLane
from extractor.lanes.openai_batch import OpenAIBatchLane
from extractor.prepare.stage import PrepareOptions, prepare_job

REPO = Path(__file__).resolve().parents[2]


def _job(backend: str, remote: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(id="job-x", manifest={"backend": backend, **({"remote": remote} if remote else {})})


@pytest.mark.parametrize("name", [*lane_names(preparable=False)])
def test_every_registered_lane_implements_the_protocol(name: str) -> None:
    lane = load(name)
    assert isinstance(lane, Lane) and lane.info is describe(name) and lane.info.name == name


def test_the_lanes_a_job_is_prepared_for() -> None:
    assert lane_names() == ["local", "openai"] and "file" in lane_names(preparable=False)
    assert describe("openai").is_batch and describe("openai").billed and describe("openai").openai_api
    assert not describe("local").is_batch and not describe("local").billed and describe("local").bounded_arrays
    with pytest.raises(BadInput):
        describe("file").defaults  # noqa: B018 — no job is prepared for answers taken in from files
    with pytest.raises(BadInput, match="unknown backend"):
        describe("carrier-pigeon")


@pytest.mark.parametrize(
    ("backend", "remote", "expected"),
    [
        ("local", None, LocalLane),
        ("local", {"kind": "local", "complete": True}, LocalLane),
        ("openai", None, OpenAIBatchLane),
        ("openai", {"kind": "openai", "batches": []}, OpenAIBatchLane),
        ("openai", {"kind": "file", "complete": True}, FileLane),
        ("local", {"kind": "file", "complete": True}, FileLane),
    ],
)
def test_lane_for_picks_by_the_remote_record_else_the_backend(
    backend: str, remote: dict[str, Any] | None, expected: type
) -> None:
    job = _job(backend, remote)
    assert type(lane_for(job)) is expected and info_for(job) is lane_for(job).info


def test_lane_for_an_unknown_backend_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown backend 'carrier-pigeon'"):
        lane_for(_job("carrier-pigeon"))


def test_file_lane_sends_through_the_lane_the_job_was_prepared_for() -> None:
    assert type(FileLane.prepared_for(_job("openai", {"kind": "file"}))) is OpenAIBatchLane
    assert type(FileLane.prepared_for(_job("local", {"kind": "file"}))) is LocalLane


@pytest.mark.parametrize("backend", ["local", "openai"])
def test_a_prepared_job_gets_its_backends_lane(backend: str, docs_dir: Path, tmp_path: Path) -> None:
    job = prepare_job(JobStore(tmp_path / "jobs"), docs_dir, PrepareOptions(backend=backend, count_tokens=False)).job
    lane = lane_for(job)
    assert lane.info.name == backend and lane.pending(job) == 0 and lane.progress(job) == {}
    assert lane.fetch(job) == {}  # nothing sent yet: nothing to bring in


def test_collect_does_not_import_the_openai_lane() -> None:
    code = (
        "import sys, extractor.collect.results, extractor.collect.ingest, extractor.reports.entries; "
        "print(sorted(m for m in ('extractor.lanes.openai_batch', 'extractor.lanes.openai_client', 'openai')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
