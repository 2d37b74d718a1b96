"""`collect --output-file/--error-file`: take in batch files downloaded elsewhere (e.g. from the dashboard)."""

from __future__ import annotations

import shutil
from pathlib import Path

from extractor.errors import BadInput
from extractor.jobs import Job, State


def ingest_files(job: Job, output_file: Path | None, error_file: Path | None) -> None:
    """Copy the files into the job folder under a fresh name, so collect reads them like any other."""
    job.require(State.PREPARED, State.SUBMITTED, State.COLLECTED, State.VERIFIED, doing="take in result files")
    for src, directory in ((output_file, job.output_dir), (error_file, job.errors_dir)):
        if src is None:
            continue
        if not src.is_file():
            raise BadInput(f"No such file: {src} — pass the batch output/error .jsonl you downloaded")
        directory.mkdir(parents=True, exist_ok=True)
        n = len(list(directory.glob("ingested-*.jsonl")))
        tmp = directory / f".ingested-{n:03d}.jsonl.tmp"
        try:
            shutil.copyfile(src, tmp)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.filename is None:  # a full disk fails the copy without naming the file
                raise type(exc)(exc.errno, exc.strerror, str(tmp)) from exc
            raise
        tmp.replace(directory / f"ingested-{n:03d}.jsonl")
        job.log("ingest", file=str(src), into=str(directory.name))
    if job.state is State.PREPARED:
        job.transition(State.SUBMITTED, remote={"kind": "file", "complete": True})
    elif job.state is not State.SUBMITTED:
        job.transition(State.SUBMITTED)
