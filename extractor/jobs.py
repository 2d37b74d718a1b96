"""The job folder: manifest, state machine, atomic writes, the structured event log and the jobs-dir lock."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from extractor.errors import BadInput, LockHeld
from extractor.job_files import DocumentEntry, Manifest, format_tag
from extractor.storage import DamagedFile, JsonlAppender, atomic_write_json, read_versioned

JOB_FORMAT = format_tag("job")
# The JSON-lines files of the folder keep plain rows; their versions live in the manifest (`formats`).
LINE_FILES = ("results", "log")
MANIFEST = "job.json"


class State(StrEnum):
    PREPARED = "prepared"
    SUBMITTED = "submitted"
    COLLECTED = "collected"
    VERIFIED = "verified"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Which states each state may move to. Re-running a stage (collect twice, verify twice) is allowed;
# skipping one is not.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PREPARED: frozenset({State.PREPARED, State.SUBMITTED, State.FAILED, State.CANCELLED}),
    State.SUBMITTED: frozenset({State.SUBMITTED, State.COLLECTED, State.FAILED, State.CANCELLED}),
    State.COLLECTED: frozenset({State.SUBMITTED, State.COLLECTED, State.VERIFIED, State.FAILED}),
    # verified → rolled_back: a commit killed halfway leaves the job verified with a partial graph write.
    State.VERIFIED: frozenset({State.SUBMITTED, State.COLLECTED, State.VERIFIED, State.COMMITTED, State.ROLLED_BACK}),
    State.COMMITTED: frozenset({State.COMMITTED, State.ROLLED_BACK}),
    State.ROLLED_BACK: frozenset({State.COMMITTED, State.ROLLED_BACK}),
    State.FAILED: frozenset({State.SUBMITTED, State.FAILED}),
    State.CANCELLED: frozenset({State.CANCELLED, State.SUBMITTED}),
}

# What to run next from each state, for error messages that say how to fix them.
NEXT_COMMAND: dict[State, str] = {
    State.PREPARED: "submit --job {id}",
    State.SUBMITTED: "collect {id} --wait",
    State.COLLECTED: "verify {id}",
    State.VERIFIED: "commit {id}",
    State.COMMITTED: "rollback {id}",
    State.ROLLED_BACK: "commit {id}",
    State.FAILED: "retry {id}",
    State.CANCELLED: "retry {id}",
}


def utcnow() -> str:
    # milliseconds: jobs created within one second must still sort in creation order
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_job_id(key: str) -> str:
    """Sortable by creation time, tagged with the content key so a glance tells runs of the same input apart."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{key[:6]}{secrets.token_hex(3)}"


@dataclass
class Job:
    """One job folder; the manifest is the only mutable record of its state."""

    path: Path
    manifest: Manifest

    @property
    def id(self) -> str:
        return str(self.manifest["job_id"])

    @property
    def state(self) -> State:
        return State(self.manifest["state"])

    @property
    def requests_dir(self) -> Path:
        return self.path / "requests"

    @property
    def output_dir(self) -> Path:
        return self.path / "output"

    @property
    def errors_dir(self) -> Path:
        return self.path / "errors"

    @property
    def results_path(self) -> Path:
        return self.path / "results.jsonl"

    @property
    def verify_path(self) -> Path:
        return self.path / "verify.json"

    @property
    def commit_path(self) -> Path:
        return self.path / "commit.json"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def request_files(self) -> list[Path]:
        return sorted(self.requests_dir.glob("*.jsonl"))

    def save(self) -> None:
        self.manifest["updated_at"] = utcnow()
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def require(self, *allowed: State, doing: str) -> None:
        """Refuse a command in the wrong state, saying which command comes next."""
        if self.state in allowed:
            return
        hint = NEXT_COMMAND[self.state].format(id=self.id)
        raise BadInput(f"Job {self.id} is {self.state.value}, so it cannot {doing} — run `extractor {hint}` first")

    def transition(self, new: State, **fields: Any) -> None:
        if new not in TRANSITIONS[self.state]:
            raise BadInput(f"Job {self.id} cannot go from {self.state.value} to {new.value}")
        self.manifest.update(fields)  # type: ignore[typeddict-item]  # each stage's own keys of Manifest
        self.manifest["state"] = new.value
        self.manifest.setdefault("history", []).append({"state": new.value, "at": utcnow()})
        self.save()
        self.log("state", state=new.value)

    def log(self, event: str, **fields: Any) -> None:
        with JsonlAppender(self.log_path, fsync=False) as out:
            out.write({"at": utcnow(), "event": event, **fields})

    def documents(self) -> list[DocumentEntry]:
        return self.manifest.get("documents", [])


class DamagedJob(DamagedFile):
    """A job.json that cannot be read: not JSON, not a job, or a format this version does not know."""

    def __init__(self, path: Path, problem: str, fix: str | None = None):
        fix = fix or (
            f"restore {path.name} from a backup, or move the folder {path.parent} out of the jobs dir; "
            "other jobs are not affected"
        )
        super().__init__(path, problem, fix)
        self.message = f"{path}: damaged job ({problem}) — {self.fix}"
        self.args = (self.message,)


def _line_formats_v0(manifest: dict[str, Any]) -> dict[str, Any]:
    """Migration hook: jobs written before `formats` existed hold version-1 rows in results.jsonl and log.jsonl."""
    return manifest


_REQUIRED = {"job_id": str, "state": str, "backend": str, "model": str, "documents": list}


def read_manifest(path: Path) -> Manifest:
    """A job.json, checked enough that commands can rely on its shape; DamagedJob names the file otherwise.

    The JSON-lines files' versions are checked here too: a `formats` entry this code does not read is as damaged
    as an unknown job format (a newer extractor wrote the folder); a job from before `formats` is migrated.
    """
    try:
        manifest = read_versioned(path, "job", damaged=DamagedJob)
    except FileNotFoundError as exc:
        raise DamagedJob(path, f"cannot be read: {exc.strerror}") from None
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise DamagedJob(path, f"{key!r} is missing or not a {kind.__name__}")
    if manifest["state"] not in State._value2member_map_:
        raise DamagedJob(path, f"unknown state {manifest['state']!r}")
    formats = manifest.get("formats")
    if formats is None:
        manifest = _line_formats_v0(manifest)
    elif not isinstance(formats, dict):
        raise DamagedJob(path, "'formats' is not an object")
    else:
        for name in LINE_FILES:
            if formats.get(f"{name}.jsonl", format_tag(name)) != format_tag(name):
                raise DamagedJob(
                    path,
                    f"{name}.jsonl is format {formats.get(f'{name}.jsonl')!r}, this extractor reads {format_tag(name)}",
                    fix="upgrade extractor to read this job",
                )
    return manifest  # type: ignore[return-value]  # checked above as far as commands rely on it


class JobStore:
    """The jobs directory: create, find and list job folders."""

    def __init__(self, root: Path):
        self.root = root

    def create(self, manifest: Manifest, staging: Path) -> Job:
        """Publish a fully written staging folder as a job in one rename, so a crash never leaves half a job."""
        job_id = manifest["job_id"]
        manifest.setdefault("format", JOB_FORMAT)
        manifest.setdefault("formats", {f"{kind}.jsonl": format_tag(kind) for kind in LINE_FILES})
        manifest.setdefault("created_at", utcnow())
        manifest.setdefault("history", [{"state": manifest["state"], "at": manifest["created_at"]}])
        job = Job(staging, manifest)
        job.save()
        final = self.root / job_id
        os.replace(staging, final)
        job.path = final
        job.log("state", state=manifest["state"])
        return job

    def staging_dir(self) -> Path:
        self.check_root()
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".staging-{secrets.token_hex(6)}"
        path.mkdir()
        return path

    def discard_staging(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def load(self, job_id: str) -> Job:
        self.check_root()
        path = self.root / job_id
        manifest_path = path / MANIFEST
        if not job_id or "/" in job_id or job_id.startswith(".") or not manifest_path.is_file():
            raise BadInput(f"No job {job_id!r} in {self.root} — run `extractor status` to list jobs")
        return Job(path, read_manifest(manifest_path))

    def __iter__(self) -> Iterator[Job]:
        """Every readable job; a damaged one is passed over (see `damaged`), so it never stops another."""
        for path in self._job_folders():
            try:
                yield self.load(path.name)
            except DamagedJob:
                continue

    def damaged(self) -> list[dict[str, str]]:
        """The job folders whose job.json cannot be read: the file, what is wrong and the fix."""
        found = []
        for path in self._job_folders():
            try:
                read_manifest(path / MANIFEST)
            except DamagedJob as exc:
                found.append(
                    {"job_id": path.name, "file": str(path / MANIFEST), "problem": exc.problem, "fix": exc.fix}
                )
        return found

    def _job_folders(self) -> list[Path]:
        self.check_root()
        if not self.root.is_dir():
            return []
        return [p for p in sorted(self.root.iterdir()) if not p.name.startswith(".") and (p / MANIFEST).is_file()]

    def check_root(self) -> None:
        """A jobs dir that is a file is a usage error naming it, not an OSError somewhere later."""
        if self.root.exists() and not self.root.is_dir():
            raise BadInput(
                f"{self.root}: the jobs dir is a file, not a folder — pass --jobs-dir a folder "
                "(or set EXTRACTOR_JOBS_DIR to one)"
            )

    def find_resumable(self, key: str) -> Job | None:
        """The newest unfinished job built from the same input and options, for `run` after a crash."""
        finished = {State.COMMITTED, State.ROLLED_BACK, State.CANCELLED}
        for job in sorted(self, key=lambda j: j.manifest.get("created_at", ""), reverse=True):
            if job.manifest.get("key") == key:
                return None if job.state in finished else job
        return None


class JobsLock:
    """An fcntl lock on `<jobs-dir>/.lock`: overlapping runs exit 5; a dead holder's lock is free by construction."""

    def __init__(self, root: Path):
        self.path = root / ".lock"
        self._fh: Any = None

    def acquire(self) -> None:
        JobStore(self.path.parent).check_root()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            fh.seek(0)
            holder = _parse_holder(fh.read())
            fh.close()
            raise LockHeld(f"Another run holds {self.path} ({holder}) — wait for it to finish") from None
        # The kernel drops the flock when its holder dies, so a stale lock is taken over here silently;
        # the file's text is only there to tell a person who holds it.
        fh.seek(0)
        fh.truncate()
        fh.write(orjson.dumps({"pid": os.getpid(), "started_at": utcnow(), "since": time.time()}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JobsLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse_holder(raw: bytes) -> str:
    try:
        info = orjson.loads(raw)
        return f"pid {info['pid']}, started {info['started_at']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "holder unknown"
