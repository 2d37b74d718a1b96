"""Atomic, versioned file writes: temp file + fsync + os.replace, so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from extractor.errors import BadInput
from extractor.redaction import redact_bytes

JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
# mkstemp creates 0600 files; job files and reports are as readable as anything else the user writes.
FILE_MODE = 0o644
TAIL_BLOCK = 64 * 1024  # how much of a torn log is read at a time when looking for its last whole line


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only once the block finished: temp file, fsync, os.replace."""
    if path.is_dir():  # os.replace would fail only after the whole file was written, naming the temp file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write (disk full) names no file: name it
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, redact_bytes(orjson.dumps(obj, option=JSON_OPTS)) + b"\n")


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write every row as one JSON line, atomically; returns the number of lines."""
    count = 0
    with atomic_file(path) as fh:
        for row in rows:
            fh.write(redact_bytes(orjson.dumps(row)))
            fh.write(b"\n")
            count += 1
    return count


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


class DamagedFile(BadInput):
    """A persisted file that cannot be read: not JSON, not an object, or a format version this code does not know."""

    def __init__(self, path: Path, problem: str, fix: str | None = None):
        self.path, self.problem = path, problem
        self.fix = fix or f"restore {path.name} from a backup, or upgrade extractor if a newer version wrote it"
        super().__init__(f"{path}: damaged file ({problem}) — {self.fix}")


Migration = Callable[[dict[str, Any]], dict[str, Any]]


def check_version(
    path: Path,
    kind: str,
    found: str | None,
    migrations: Mapping[str | None, Migration],
    data: dict[str, Any],
    *,
    damaged: type[DamagedFile] = DamagedFile,
) -> dict[str, Any]:
    """`data` at the version this code reads: as it is, through the migration hook for `found`, or DamagedFile."""
    from extractor.job_files import format_tag

    expected = format_tag(kind)
    if found == expected:
        return data
    if found in migrations:
        try:
            return migrations[found](data)
        except ValueError as exc:  # the hook's own word on a file it cannot migrate
            raise damaged(path, str(exc)) from None
    raise damaged(path, f"unknown {kind} format {found!r} (expected {expected})")


def read_versioned(
    path: Path,
    kind: str,
    migrations: Mapping[str | None, Migration] | None = None,
    *,
    damaged: type[DamagedFile] = DamagedFile,
) -> dict[str, Any]:
    """The one reader of every versioned JSON file we persist (job.json, commit.json, verify.json).

    The file's `"format"` must be `extractor.<kind>/<n>` at this code's version (`job_files.FORMATS`). An older one
    goes through `migrations[old_format]` (the hook: old dict → current dict, ValueError when it cannot; `None` keys
    a file from before it had a format), anything else is a `damaged` error naming the file and the fix.
    """
    try:
        data = read_json(path)
    except orjson.JSONDecodeError as exc:
        raise damaged(path, f"not valid JSON: {exc}") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise damaged(path, f"cannot be read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise damaged(path, "not a JSON object")
    found = data.get("format")
    return check_version(path, kind, found if isinstance(found, str) else None, migrations or {}, data, damaged=damaged)


def iter_jsonl(path: Path) -> Iterable[Any]:
    """Yield every complete JSON line; a torn last line (crash mid-append) is skipped, not fatal."""
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                return  # torn tail of an append interrupted by a crash
            raw = raw.strip()
            if raw:
                yield orjson.loads(raw)


class JsonlAppender:
    """Append one JSON object per line, flushed and fsynced per write (crash loses at most the line in flight).

    Opening one costs the same at any file size: only the file's tail is read, never the whole file.
    Every line goes through redaction first (secrets never reach a job file).
    """

    def __init__(self, path: Path, fsync: bool = True):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail(path)
        self._fh = path.open("ab")
        self._fsync = fsync

    @staticmethod
    def _repair_tail(path: Path) -> None:
        # A line torn by kill -9 would glue itself to the next append; cut it off first. Only the last
        # byte is read when the file is whole; a torn line is found by reading backwards block by block.
        try:
            fh = path.open("rb+")
        except FileNotFoundError:
            return
        with fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            end = size
            while end > 0:
                start = max(0, end - TAIL_BLOCK)
                fh.seek(start)
                at = fh.read(end - start).rfind(b"\n")
                if at >= 0:
                    fh.truncate(start + at + 1)
                    return
                end = start
            fh.truncate(0)

    def write(self, obj: Any) -> None:
        try:
            self._fh.write(redact_bytes(orjson.dumps(obj)) + b"\n")
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            if exc.filename is None:  # a failed write (disk full) names no file: name it
                raise type(exc)(exc.errno, exc.strerror, self._fh.name) from exc
            raise

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
