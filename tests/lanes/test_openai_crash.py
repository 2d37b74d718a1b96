"""A submit killed (SIGKILL) right after the API acted, before the manifest recorded it: the re-run pays for nothing
twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from typer.testing import CliRunner

from extractor.cli import app
from extractor.jobs import JobStore, State
from extractor.prepare.stage import PrepareOptions, prepare_job
from tests.openai_emulator import BatchEmulator, DropConnection
from tests.redocred import load_redocred, write_documents

REPO = Path(__file__).resolve().parents[2]


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def killer(calls: int, victim: dict[str, subprocess.Popen]) -> Callable[[dict], None]:
    """An emulator hook: on its `calls`-th call, SIGKILL the client after the API acted and before it answers."""
    seen: list[str] = []

    def hook(payload: dict) -> None:
        seen.append(payload["id"])
        if len(seen) == calls:
            os.kill(victim["process"].pid, signal.SIGKILL)
            victim["process"].wait()
            raise DropConnection

    return hook


def submit_in_a_process(job_id: str, victim: dict[str, subprocess.Popen]) -> int:
    victim["process"] = subprocess.Popen(
        [sys.executable, "-m", "extractor.cli", "submit", "--job", job_id],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return victim["process"].wait(timeout=120)


def test_a_submit_killed_after_upload_and_after_create_sends_each_shard_once(
    emu: BatchEmulator, tmp_path: Path
) -> None:
    write_documents(load_redocred()[:4], tmp_path / "docs")
    options = PrepareOptions(backend="openai", max_lines_per_file=2, count_tokens=False)
    job = prepare_job(store(), tmp_path / "docs", options).job
    victim: dict[str, subprocess.Popen] = {}

    # 1. killed right after the first file was uploaded
    emu.behaviour.hooks = {"POST /v1/files": killer(1, victim)}
    assert submit_in_a_process(job.id, victim) == -signal.SIGKILL
    first = store().load(job.id).manifest["remote"]["batches"][0]
    assert "input_file_id" not in first and "uploading_since" in first and len(emu.files) == 1

    # 2. the re-run adopts that file, then is killed right after the second batch was created
    emu.behaviour.hooks = {"POST /v1/batches": killer(2, victim)}
    assert submit_in_a_process(job.id, victim) == -signal.SIGKILL
    entries = store().load(job.id).manifest["remote"]["batches"]
    assert entries[0]["input_file_id"] == next(iter(emu.files))
    assert entries[0]["batch_id"] and "batch_id" not in entries[1] and "creating_since" in entries[1]
    assert len(emu.batches) == 2  # the API has a batch the manifest does not know of

    # 3. the third run finds it by its metadata
    emu.behaviour.hooks = {}
    rerun = CliRunner().invoke(app, ["submit", "--job", job.id, "--json"], catch_exceptions=False)

    assert rerun.exit_code == 0, rerun.stderr
    assert (orjson.loads(rerun.stdout)["created"], orjson.loads(rerun.stdout)["adopted"]) == (0, 1)
    job = store().load(job.id)
    assert job.state is State.SUBMITTED
    shards = sorted(b.obj["metadata"]["extractor_shard"] for b in emu.batches.values())
    assert shards == ["00000", "00001"]  # exactly one batch per shard
    assert sorted(e["batch_id"] for e in job.manifest["remote"]["batches"]) == sorted(emu.batches)
    assert len([f for f in emu.files.values() if f.purpose == "batch"]) == 2  # and one upload per shard
    assert emu.calls["POST /v1/files"] == 2 and emu.calls["POST /v1/batches"] == 2
    events = [orjson.loads(line)["event"] for line in job.log_path.read_bytes().splitlines()]
    assert events.count("file_adopted") == 1 and events.count("batch_adopted") == 1
