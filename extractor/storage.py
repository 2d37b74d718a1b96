"""Atomic, versioned file writes: temp file + fsync + os.replace, so a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
# mkstemp creates 0600 files; job files and reports are as readable as anything else the user writes.
FILE_MODE = 0o644


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only once the block finished: temp file, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, orjson.dumps(obj, option=JSON_OPTS) + b"\n")


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write every row as one JSON line, atomically; returns the number of lines."""
    count = 0
    with atomic_file(path) as fh:
        for row in rows:
            fh.write(orjson.dumps(row))
            fh.write(b"\n")
            count += 1
    return count


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


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
    """Append one JSON object per line, flushed and fsynced per write (crash loses at most the line in flight)."""

    def __init__(self, path: Path, fsync: bool = True):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail(path)
        self._fh = path.open("ab")
        self._fsync = fsync

    @staticmethod
    def _repair_tail(path: Path) -> None:
        # A line torn by kill -9 would glue itself to the next append; cut it off first.
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)

    def write(self, obj: Any) -> None:
        self._fh.write(orjson.dumps(obj) + b"\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
