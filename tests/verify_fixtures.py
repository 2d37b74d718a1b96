"""Jobs for verify tests, built the way users build them: `prepare` on a folder, answers ingested with
`collect --output-file`."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from extractor.jobs import Job, JobStore
from tests.job_fixtures import invoke

runner = CliRunner()


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def write_docs(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def prepare(folder: Path, *extra: str) -> Job:
    result = invoke("prepare", str(folder), "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return store().load(orjson.loads(result.stdout)["job_id"])


def output_line(custom_id: str, answer: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI batch output line answering `custom_id` with `answer`."""
    body = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": orjson.dumps(answer).decode()},
            }
        ],
        "model": "gpt-4.1-mini",
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "body": body},
        "error": None,
    }


def error_line(custom_id: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "server_error", "message": "the model crashed"},
    }


def ingest(job: Job, answers: dict[str, dict[str, Any]], tmp_path: Path, errors: tuple[str, ...] = ()) -> Job:
    """Answer each document (by file name) and collect; documents named in `errors` get an error line."""
    by_path = {d["path"]: d["custom_id"] for d in job.documents()}
    out = tmp_path / f"output-{job.id}.jsonl"
    out.write_bytes(b"".join(orjson.dumps(output_line(by_path[p], a)) + b"\n" for p, a in answers.items()))
    args = ["collect", job.id, "--output-file", str(out), "--json"]
    if errors:
        err = tmp_path / f"errors-{job.id}.jsonl"
        err.write_bytes(b"".join(orjson.dumps(error_line(by_path[p])) + b"\n" for p in errors))
        args += ["--error-file", str(err)]
    result = invoke(*args)
    assert result.exit_code in (0, 6), result.stderr
    return store().load(job.id)


def answer(entities: list[tuple[str, str]], relations: list[tuple[str, str, str, str]] = ()) -> dict[str, Any]:
    return {
        "entities": [{"name": n, "type": t} for n, t in entities],
        "relations": [{"source": s, "type": k, "target": t, "evidence": e} for s, k, t, e in relations],
    }


def verify(job: Job, *args: str) -> tuple[int, dict[str, Any]]:
    """Exit code and verify.json of `verify ID ARGS`."""
    result = invoke("verify", job.id, *args)
    assert result.exit_code in (0, 3), result.stderr + result.stdout
    return result.exit_code, orjson.loads(job.verify_path.read_bytes())


def by_path(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["path"]: d for d in report["documents"]}


def entity(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["entities"] if e["name"] == name)


class StrictHTML(HTMLParser):
    """A well-formedness check: every non-void element closed in order, ids unique, a doctype first."""

    VOID = frozenset(
        ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"]
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.marks: list[dict[str, Any]] = []
        self.doctype = False
        self._mark: dict[str, Any] | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"] or "")
        if tag == "a":
            self.links.append(attributes.get("href") or "")
        if tag == "mark":
            self._mark = {**attributes, "text": ""}
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "mark" and self._mark is not None:
            self.marks.append(self._mark)
            self._mark = None

    def handle_data(self, data: str) -> None:
        if self._mark is not None:
            self._mark["text"] += data

    @classmethod
    def check(cls, html: str) -> StrictHTML:
        parser = cls()
        parser.feed(html)
        parser.close()
        assert parser.doctype, "no <!DOCTYPE html>"
        assert not parser.problems, parser.problems[:5]
        assert not parser.stack, f"unclosed: {parser.stack}"
        assert len(parser.ids) == len(set(parser.ids)), "duplicate ids"
        return parser
