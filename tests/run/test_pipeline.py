"""`run` for cron: the jobs-dir lock, the bounded wait for batches, --no-commit, --backend auto (OpenAI through the
emulator)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from extractor.jobs import State
from tests.job_fixtures import REPO, cli_process, invoke, invoke_json, jobs, store
from tests.openai_emulator import BatchEmulator
from tests.redocred import load_redocred, write_documents

FAST_POLL = ("--poll-interval", "0.05")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write_documents(load_redocred()[:2], tmp_path / "docs")
    return tmp_path / "docs"


def lock_note() -> dict:
    raw = (store().root / ".lock").read_bytes() if (store().root / ".lock").exists() else b""
    return orjson.loads(raw) if raw else {}


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_second_run_exits_5_at_once_naming_the_holder(emu: BatchEmulator, docs: Path) -> None:
    emu.behaviour.auto_complete = False  # the first run waits for its batch until the test lets it finish
    first = cli_process("run", str(docs), "--backend", "openai", "--no-commit", *FAST_POLL)
    try:
        wait_for(lambda: emu.batches and lock_note().get("pid") == first.pid)

        started = time.monotonic()
        second = invoke("run", str(docs), "--backend", "openai", "--no-commit", *FAST_POLL)

        assert second.exit_code == 5 and time.monotonic() - started < 5
        note = lock_note()
        assert second.stderr.strip() == (
            f"Error: Another run holds {store().root / '.lock'} "
            f"(pid {first.pid}, started {note['started_at']}) — wait for it to finish"
        )
        status = invoke_json("status")
        assert status["running"] == {"pid": first.pid, "started_at": note["started_at"]}
    finally:
        emu.complete_all()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    assert len(jobs()) == 1 and len(emu.batches) == 1
    assert lock_note() == {} and invoke_json("status")["running"] is None


def test_a_lock_left_by_a_killed_process_is_taken_over(emu: BatchEmulator, docs: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from extractor.jobs import JobsLock; "
            "lock = JobsLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True); time.sleep(600)",
            str(store().root),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline() == b"held\n"
    assert invoke("run", str(docs), "--backend", "openai", "--no-commit", *FAST_POLL).exit_code == 5
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_note()["pid"] == holder.pid  # its note is still there: only the kernel's lock went with it
    assert invoke_json("status")["running"] is None

    data = invoke_json("run", str(docs), "--backend", "openai", "--no-commit", *FAST_POLL)

    assert data["state"] == "verified" and lock_note() == {}


def test_a_wait_that_runs_out_exits_6_and_the_next_run_resumes_it(emu: BatchEmulator, docs: Path) -> None:
    emu.behaviour.auto_complete = False
    args = ("run", str(docs), "--backend", "openai", "--no-commit", *FAST_POLL)

    result = invoke(*args, "--wait-timeout", "0.3", "--json")

    assert result.exit_code == 6
    data = orjson.loads(result.stdout)
    [job] = jobs()
    assert (data["job_id"], data["state"], data["exit_code"]) == (job.id, "submitted", 6)
    assert data["pending"].startswith(
        f"Job {job.id}: 1 of 1 batches not finished (1 validating; 0/2 requests done) when the wait ran out"
    )
    assert "not finished: Job" in result.stderr

    emu.complete_all()
    again = invoke_json(*args, "--wait-timeout", "30")

    assert (again["job_id"], again["resumed"], again["pending"], again["state"]) == (job.id, True, None, "verified")
    assert len(emu.batches) == 1 and emu.calls["POST /v1/files"] == 1


def test_no_commit_stops_after_verify_and_the_next_run_commits_the_same_job(emu: BatchEmulator, docs: Path) -> None:
    args = ("run", str(docs), "--backend", "openai", *FAST_POLL)
    verified = invoke_json(*args, "--no-commit")
    assert verified["state"] == "verified" and verified["commit"] == {}

    committed = invoke_json(*args)

    assert committed["job_id"] == verified["job_id"] and committed["resumed"]
    assert committed["state"] == "committed" and committed["commit"]["documents"] == 2
    assert list(committed["stages_seconds"]) == ["prepare", "commit"]  # nothing else was done twice
    assert len(emu.batches) == 1


def test_backend_auto_decides_before_prepare_and_records_why(emu: BatchEmulator, docs: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"

    data = invoke_json(
        "run", str(docs), "--backend", "auto", "--local-url", dead, "--health-timeout", "0.3", "--no-commit", *FAST_POLL
    )

    [job] = jobs()
    assert job.manifest["backend"] == "openai" and job.manifest["model"] == "gpt-5.4-mini"
    assert job.manifest["prompt"]["backend"] == "openai"  # prepared for the lane chosen, not the local default
    assert data["backend_choice"] == job.manifest["backend_choice"]
    assert data["backend_choice"]["reason"].startswith(f"local lane unavailable: {dead}")
    assert job.state is State.VERIFIED and len(emu.batches) == 1


def test_run_without_a_key_for_openai_says_what_to_do(docs: Path) -> None:
    result = invoke("run", str(docs), "--backend", "openai")

    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr
    [job] = jobs()
    assert job.state is State.PREPARED  # kept: the same command with a key continues it
