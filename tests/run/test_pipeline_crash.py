"""`run` SIGKILLed right after each stage, then run again: one job, one batch per shard and retry, one commit."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from extractor.jobs import State
from extractor.reports.ledger import Ledger
from extractor.storage import iter_jsonl
from tests.job_fixtures import cli_process, invoke_json, jobs, store
from tests.openai_emulator import BatchEmulator
from tests.redocred import load_redocred, write_documents

pytestmark = pytest.mark.graph
STAGES = ["prepare", "submit", "collect", "retry", "verify", "commit", "ledger"]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write_documents(load_redocred()[:3], tmp_path / "docs")
    return tmp_path / "docs"


@pytest.mark.parametrize("stage", STAGES)
def test_a_run_killed_after_a_stage_is_finished_by_the_next_run(stage: str, emu: BatchEmulator, docs: Path) -> None:
    # One of the three requests fails in the first batch (a seeded third); its retry batch of one line does not.
    emu.behaviour.fail_fraction = 1 / 3
    args = ("run", str(docs), "--backend", "openai", "--poll-interval", "0.05", "--retry")

    crashed = cli_process(*args, crash_after=stage)
    _, err = crashed.communicate(timeout=120)
    assert crashed.returncode == -signal.SIGKILL, err.decode()

    data = invoke_json(*args)

    [job] = jobs()  # never a second job, whatever stage the first run died after
    assert data["job_id"] == job.id and job.state is State.COMMITTED
    assert data["up_to_date"] is (stage in ("commit", "ledger"))
    assert data["exit_code"] == 0 and data["verify"]["clean"] == 3
    assert len(emu.batches) == 2 and emu.calls["POST /v1/batches"] == 2  # the first batch and one retry batch
    assert len([f for f in emu.files.values() if f.purpose == "batch"]) == 2
    states = [h["state"] for h in job.manifest["history"]]
    assert states.count("committed") == 1 and states.count("verified") == 1
    assert job.manifest["commit"]["documents"] == 3
    assert {r["outcome"] for r in iter_jsonl(job.results_path)} == {"ok"}
    with Ledger.for_jobs(store()) as ledger:
        [row] = ledger.jobs()
        assert (row["job_id"], row["state"], row["n_ok"], row["clean"]) == (job.id, "committed", 3, 3)
        requests = ledger.requests(job.id)
        assert len(requests) == 4 and sum(r["superseded"] for r in requests) == 1  # the failed first try is kept


def test_a_second_run_after_a_finished_one_is_a_no_op(emu: BatchEmulator, docs: Path) -> None:
    args = ("run", str(docs), "--backend", "openai", "--poll-interval", "0.05")
    first = invoke_json(*args)
    again = invoke_json(*args)

    assert (again["job_id"], again["up_to_date"], again["state"]) == (first["job_id"], True, "committed")
    assert len(jobs()) == 1 and len(emu.batches) == 1
    hidden = [p.name for p in store().root.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert hidden == []  # the twin prepared to find the key was removed, not left as a half job


def test_a_rolled_back_job_is_run_again_as_a_new_job(emu: BatchEmulator, docs: Path) -> None:
    args = ("run", str(docs), "--backend", "openai", "--poll-interval", "0.05")
    first = invoke_json(*args)
    invoke_json("rollback", first["job_id"])
    again = invoke_json(*args)

    assert again["job_id"] != first["job_id"] and not again["up_to_date"]
    assert again["commit"]["documents"] == 3
    assert len(jobs()) == 2 and len(emu.batches) == 2
