"""The ledger: one SQLite file beside the jobs dir with every job, answer and batch, queryable long after the folders.

Rows are rebuilt from the job folders (`entries.py`), a job at a time, whenever its folder changed: the
ledger never holds a figure its job folder does not. Jobs whose folders were deleted keep their rows.
The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes a database from version i to i+1.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from extractor.errors import BadInput
from extractor.jobs import Job, JobStore, utcnow
from extractor.redaction import redact
from extractor.reports.entries import fingerprint, read_entries

LEDGER_ENV = "EXTRACTOR_LEDGER"
BUSY_TIMEOUT_S = 30.0


def ledger_path(jobs_root: Path) -> Path:
    """$EXTRACTOR_LEDGER, else `<jobs-dir>.ledger.sqlite` beside the jobs dir (./jobs → ./jobs.ledger.sqlite)."""
    if env := os.environ.get(LEDGER_ENV):
        return Path(env)
    root = jobs_root.absolute()
    return root.parent / f"{root.name}.ledger.sqlite"


def _v1(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY, created_at TEXT, updated_at TEXT, state TEXT NOT NULL,
        backend TEXT NOT NULL, model TEXT NOT NULL, spec_name TEXT, schema_sha256 TEXT, prompt_sha256 TEXT,
        source TEXT, documents INTEGER, skipped INTEGER, requests INTEGER,
        prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, superseded_usd REAL, batch_discount REAL,
        n_ok INTEGER, n_http_error INTEGER, n_schema_invalid INTEGER, n_truncated INTEGER, n_refusal INTEGER,
        n_expired INTEGER, n_missing INTEGER,
        verified INTEGER, clean INTEGER, quarantined INTEGER, failed INTEGER,
        grounded INTEGER, fuzzy INTEGER, leaked INTEGER, ungrounded INTEGER,
        committed_nodes INTEGER, committed_relationships INTEGER,
        fingerprint TEXT, synced_at TEXT)""")
    db.execute("""CREATE TABLE requests (
        job_id TEXT NOT NULL, custom_id TEXT NOT NULL, attempt INTEGER NOT NULL, superseded INTEGER NOT NULL,
        doc_id TEXT, backend TEXT, model TEXT, prompt_sha256 TEXT, schema_sha256 TEXT,
        outcome TEXT NOT NULL, schema_valid INTEGER, truncated INTEGER, refused INTEGER,
        prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, batch INTEGER,
        latency_ms REAL, finish_reason TEXT, error TEXT)""")
    db.execute("CREATE INDEX requests_by_job ON requests (job_id)")


def _v2(db: sqlite3.Connection) -> None:
    """Batches (OpenAI batches and local lane runs), relation verdicts, the prompt version."""
    db.execute("""CREATE TABLE batches (
        job_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, batch_id TEXT, attempt INTEGER,
        status TEXT, lines INTEGER, completed INTEGER, failed INTEGER,
        created_at TEXT, ended_at TEXT, seconds REAL, PRIMARY KEY (job_id, name))""")
    for column in (
        "prompt_version TEXT",
        "rel_grounded INTEGER",
        "rel_fuzzy INTEGER",
        "rel_leaked INTEGER",
        "rel_ungrounded INTEGER",
    ):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
    # The rates `report` shows, for whoever opens the file with sqlite3 (NULL where nothing was measured).
    db.execute("""CREATE VIEW job_quality AS SELECT
        job_id, created_at, backend, model, documents, cost_usd,
        cost_usd / NULLIF(documents, 0) AS cost_per_document,
        1.0 * n_ok / NULLIF(n_ok + n_schema_invalid + n_truncated + n_refusal, 0) AS schema_valid_rate,
        1.0 * (grounded + fuzzy) / NULLIF(grounded + fuzzy + leaked + ungrounded, 0) AS grounded_rate,
        1.0 * fuzzy / NULLIF(grounded + fuzzy + leaked + ungrounded, 0) AS fuzzy_rate,
        1.0 * leaked / NULLIF(grounded + fuzzy + leaked + ungrounded, 0) AS leak_rate,
        1.0 * ungrounded / NULLIF(grounded + fuzzy + leaked + ungrounded, 0) AS ungrounded_rate,
        1.0 * quarantined / NULLIF(clean + quarantined + failed, 0) AS quarantine_rate
        FROM jobs""")
    # Rows written by version 1 lack the new figures: the next sync re-reads every folder still on disk.
    db.execute("UPDATE jobs SET fingerprint = NULL")


def _v3(db: sqlite3.Connection) -> None:
    """Gate jobs (`run --pipeline`): their decisions and the extraction money they saved."""
    for column in ("gate_passed INTEGER", "gate_rejected INTEGER", "gate_failed INTEGER", "gate_saved_usd REAL"):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
    db.execute("UPDATE jobs SET fingerprint = NULL")


def _v4(db: sqlite3.Connection) -> None:
    """The local lane across a fleet: figures per server and run, the server of each answer, what hedging cost."""
    db.execute("""CREATE TABLE servers (
        job_id TEXT NOT NULL, run TEXT NOT NULL, url TEXT NOT NULL,
        answered INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER,
        documents_per_s REAL, completion_tokens_per_s REAL, p50_ms REAL, p95_ms REAL, p99_ms REAL,
        concurrency_max INTEGER, concurrency_source TEXT, concurrency_mean REAL, concurrency_final REAL,
        peak_in_flight INTEGER, rate_limited INTEGER, timeouts INTEGER, errors INTEGER, outages INTEGER,
        hedges_sent INTEGER, duplicates INTEGER, PRIMARY KEY (job_id, run, url))""")
    db.execute("ALTER TABLE requests ADD COLUMN server TEXT")
    for column in (
        "hedged INTEGER",
        "hedge_duplicates INTEGER",
        "hedge_prompt_tokens INTEGER",
        "hedge_completion_tokens INTEGER",
        "hedge_cost_usd REAL",
    ):
        db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
    db.execute("UPDATE jobs SET fingerprint = NULL")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, *, upto: int = SCHEMA_VERSION, where: Path | str = "ledger") -> int:
    """Apply the missing migrations in order, each in its own transaction; returns the version reached."""
    if _version(db) > SCHEMA_VERSION:
        raise BadInput(
            f"{where}: ledger schema version {_version(db)} is newer than this extractor knows "
            f"({SCHEMA_VERSION}) — upgrade extractor, or set {LEDGER_ENV} to another file"
        )
    for target in range(_version(db) + 1, upto + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if _version(db) < target:  # a second process that waited for the write lock finds the work done
                MIGRATIONS[target - 1](db)
                db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return _version(db)


def _version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


class Ledger:
    """Open (creating and migrating as needed), sync from job folders, read rows back."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            migrate(self.db, where=path)
        except sqlite3.DatabaseError as exc:
            raise BadInput(
                f"{path}: not a usable ledger ({exc}) — move it aside, or set {LEDGER_ENV} to another file"
            ) from None

    @classmethod
    def for_jobs(cls, store: JobStore) -> Ledger:
        return cls(ledger_path(store.root))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing

    def sync_job(self, job: Job) -> bool:
        """Replace the job's rows with what its folder holds now; False when nothing changed since the last sync."""
        known = self.db.execute("SELECT fingerprint FROM jobs WHERE job_id = ?", (job.id,)).fetchone()
        if known is not None and known[0] == fingerprint(job):
            return False
        entries = read_entries(job)  # read the folder before taking the write lock: keep the lock short
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("requests", "batches", "servers"):
                self.db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job.id,))
            self._insert("jobs", [{**entries.job, "synced_at": utcnow()}], replace=True)
            self._insert("requests", entries.requests)
            self._insert("batches", entries.batches)
            self._insert("servers", entries.servers)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return True

    def sync_store(self, store: JobStore) -> int:
        """Sync every job folder of a jobs dir; returns how many changed (a damaged folder is passed over)."""
        return sum(self.sync_job(job) for job in store)

    def _insert(self, table: str, rows: Iterable[dict[str, Any]], *, replace: bool = False) -> None:
        rows = [redact(row) for row in rows]  # an error text that echoes a key stays out of the ledger
        if not rows:
            return
        columns = [c for c in rows[0] if c in self._columns(table)]
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        sql = f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
        self.db.executemany(sql, rows)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    # -- reading

    def jobs(self) -> list[dict[str, Any]]:
        """Every job, oldest first."""
        return self._rows("SELECT * FROM jobs ORDER BY created_at, job_id")

    def requests(self, job_id: str | None = None) -> list[dict[str, Any]]:
        if job_id is None:
            return self._rows("SELECT * FROM requests ORDER BY job_id, rowid")
        return self._rows("SELECT * FROM requests WHERE job_id = ? ORDER BY rowid", (job_id,))

    def batches(self, job_id: str | None = None) -> list[dict[str, Any]]:
        if job_id is None:
            return self._rows("SELECT * FROM batches ORDER BY job_id, created_at, name")
        return self._rows("SELECT * FROM batches WHERE job_id = ? ORDER BY created_at, name", (job_id,))

    def servers(self, job_id: str) -> list[dict[str, Any]]:
        """Per-server figures of each local lane run of a job."""
        return self._rows("SELECT * FROM servers WHERE job_id = ? ORDER BY run, url", (job_id,))

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.execute(sql, params)]
