"""The texts verify reads: a job's documents exactly as sent to the model, and a wider corpus for leak attribution.

A job's request lines are read back through the job's request template (one slice and one
string parse per line, not a parse of the whole line with its schema and prompt); a line
that is not the template filled in (hand-edited, or written by an older version) falls
back to a full parse. Lines come out in file order, which is manifest order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from extractor.errors import BadInput
from extractor.jobs import Job, JobStore
from extractor.prepare.documents import Document, iter_documents
from extractor.prepare.requests import RequestTemplate, request_text


def iter_job_texts(job: Job) -> Iterator[tuple[str, str]]:
    """(custom_id, text) of every request line, in file order: spans point into what the model saw."""
    raw_template = job.manifest.get("request_template")
    template = RequestTemplate.from_json(raw_template) if raw_template else None
    for path in job.request_files():
        with path.open("rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                parsed = template.parse(raw if raw.endswith(b"\n") else raw + b"\n") if template else None
                if parsed is None:
                    line = orjson.loads(raw)
                    parsed = line["custom_id"], request_text(line)
                yield parsed


class TextCursor:
    """Request texts by custom_id from a stream in (nearly) the same order as the results; out-of-order ones wait in a
    dict.
    """

    def __init__(self, lines: Iterator[tuple[str, str]]):
        self._lines = lines
        self._ahead: dict[str, str] = {}

    def take(self, custom_id: str) -> str | None:
        text = self._ahead.pop(custom_id, None)
        if text is not None:
            return text
        for cid, text in self._lines:
            if cid == custom_id:
                return text
            self._ahead[cid] = text
        return None


@dataclass(frozen=True)
class WiderCorpus:
    """Documents outside the job that leaks may come from: a folder, or another job's request lines."""

    kind: str  # "folder" | "job"
    ref: str
    job: Job | None = None

    def iter_texts(self) -> Iterator[tuple[str, str, str]]:
        """(doc_id, path, text) of every document, read one at a time."""
        if self.job is not None:
            doc_by_cid = {d["custom_id"]: d for d in self.job.documents()}
            for custom_id, text in iter_job_texts(self.job):
                doc = doc_by_cid.get(custom_id)
                if doc is not None:
                    yield doc["doc_id"], doc["path"], text
            return
        for item in iter_documents(Path(self.ref)):
            if isinstance(item, Document):
                yield item.doc_id, item.path, item.text

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "ref": self.ref}


def resolve_against(store: JobStore, ref: str) -> WiderCorpus:
    """`--against DIR|JOB`: a job id of the jobs folder, else a folder of documents; BadInput when neither."""
    if ref and "/" not in ref and not ref.startswith(".") and (store.root / ref / "job.json").is_file():
        return WiderCorpus("job", ref, store.load(ref))
    if Path(ref).is_dir():
        return WiderCorpus("folder", str(Path(ref)))
    raise BadInput(
        f"--against {ref}: no such folder, and no job {ref!r} in {store.root} — pass a folder of documents or a job id"
    )
