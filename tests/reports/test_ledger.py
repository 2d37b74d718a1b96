"""The ledger: its rows are what the job folders hold, it migrates old files, and refuses files it cannot read."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from extractor.errors import BadInput
from extractor.jobs import Job
from extractor.reports.ledger import SCHEMA_VERSION, Ledger, ledger_path, migrate
from tests.job_fixtures import assert_ledger_matches, invoke, invoke_json, job_from_answers, jobs, store
from tests.openai_emulator import BatchEmulator
from tests.redocred import gold_answer, load_redocred, write_documents


def test_ledger_rows_match_the_job_folders(emu: BatchEmulator, tmp_path: Path) -> None:
    docs = load_redocred()[:3]
    written = write_documents(docs, tmp_path / "docs")
    emu.behaviour.fail_fraction = 1 / 3  # one failed first try, set aside by --retry and billed all the same
    run = invoke_json(
        "run", str(tmp_path / "docs"), "--backend", "openai", "--poll-interval", "0.05", "--retry", "--no-commit"
    )
    names = sorted(written)
    # A second job from answers taken in by hand: one valid, one not JSON, one cut off.
    job_from_answers(
        tmp_path / "docs",
        {names[0]: gold_answer(written[names[0]]), names[1]: "not json", names[2]: '{"entities": [{"name": "Ab'},
        tmp_path,
    )

    report = invoke_json("report")  # report syncs the ledger from the folders

    with Ledger.for_jobs(store()) as ledger:
        assert len(ledger.jobs()) == 2
        assert_ledger_matches(ledger, store())
        view = {row["job_id"]: row for row in map(dict, ledger.db.execute("SELECT * FROM job_quality"))}
        for job in report["jobs"]:  # the view a sqlite3 user queries says what `report` says
            for rate in ("schema_valid_rate", "grounded_rate", "leak_rate", "quarantine_rate"):
                assert view[job["job_id"]][rate] == pytest.approx(job[rate], abs=1e-4)
        run_rows = ledger.requests(run["job_id"])
        assert [r["superseded"] for r in run_rows].count(1) == 1
        assert all(r["batch"] == 1 and r["latency_ms"] is None for r in run_rows)  # batch lane: timed per batch


def test_sync_skips_unchanged_folders_and_keeps_rows_of_deleted_ones(tmp_path: Path) -> None:
    written = write_documents(load_redocred()[:2], tmp_path / "docs")
    job = job_from_answers(tmp_path / "docs", {n: gold_answer(d) for n, d in written.items()}, tmp_path)

    with Ledger.for_jobs(store()) as ledger:
        assert ledger.sync_store(store()) == 1
        assert ledger.sync_store(store()) == 0
        job.log("note", text="anything written to the folder")
        assert ledger.sync_store(store()) == 1
        shutil.rmtree(job.path)
        assert ledger.sync_store(store()) == 0
        assert [row["job_id"] for row in ledger.jobs()] == [job.id]  # the ledger outlives the job folders


def test_the_ledger_lives_beside_the_jobs_dir_unless_the_env_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ledger_path(tmp_path / "jobs") == tmp_path / "jobs.ledger.sqlite"
    monkeypatch.setenv("EXTRACTOR_LEDGER", str(tmp_path / "elsewhere" / "ledger.db"))
    assert ledger_path(tmp_path / "jobs") == tmp_path / "elsewhere" / "ledger.db"

    assert invoke("report").exit_code == 0
    assert (tmp_path / "elsewhere" / "ledger.db").is_file() and not (tmp_path / "jobs.ledger.sqlite").exists()


def test_a_version_1_ledger_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, upto=1) == 1
    db.execute(
        "INSERT INTO jobs (job_id, created_at, state, backend, model, cost_usd, fingerprint) "
        "VALUES ('20250101-020000-abc', '2025-01-01T02:00:00+00:00', 'committed', 'openai', 'gpt-4o-mini', 0.5, 'f')"
    )
    db.close()

    with Ledger(path) as ledger:
        version = ledger.db.execute("PRAGMA user_version").fetchone()[0]
        [row] = ledger.jobs()
        assert version == SCHEMA_VERSION == 4
        assert (
            row["job_id"],
            row["cost_usd"],
            row["rel_grounded"],
            row["gate_saved_usd"],
            row["hedged"],
            row["fingerprint"],
        ) == (
            "20250101-020000-abc",
            0.5,
            None,
            None,
            None,
            None,
        )  # new columns empty, fingerprint cleared for a re-read
        assert ledger.servers("20250101-020000-abc") == []
        assert ledger.batches() == []


def test_a_ledger_from_a_newer_extractor_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = ledger_path(store().root)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(BadInput):
        Ledger(path)
    result = invoke("report")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: {path}: ledger schema version {SCHEMA_VERSION + 1} is newer than this "
        f"extractor knows ({SCHEMA_VERSION}) — upgrade extractor, or set EXTRACTOR_LEDGER "
        "to another file"
    )


def test_a_file_that_is_not_sqlite_is_refused_with_a_fix() -> None:
    path = ledger_path(store().root)
    path.write_bytes(b"these are not the bytes of a database" * 100)

    result = invoke("report")

    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"Error: {path}: not a usable ledger (")
    assert result.stderr.strip().endswith("move it aside, or set EXTRACTOR_LEDGER to another file")


def test_a_run_whose_ledger_cannot_be_written_still_finishes_and_warns(emu: BatchEmulator, tmp_path: Path) -> None:
    write_documents(load_redocred()[:1], tmp_path / "docs")
    ledger_path(store().root).parent.mkdir(parents=True, exist_ok=True)
    ledger_path(store().root).write_bytes(b"not a database" * 100)

    result = invoke("run", str(tmp_path / "docs"), "--backend", "openai", "--poll-interval", "0.05", "--no-commit")

    assert result.exit_code == 0, result.stderr
    assert "warning: " in result.stderr and "not a usable ledger" in result.stderr
    [job] = jobs()
    assert isinstance(job, Job) and job.state.value == "verified"
