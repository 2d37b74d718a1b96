"""Property tests (hypothesis) for issue 15: `collect` fed arbitrary JSON in every field of an output line,
intake fed arbitrary file names and bytes. Neither may exit 1, and every document ends with an outcome.

Each example goes through the CLI in-process. max_examples is kept moderate so the suite stays fast;
`pytest --hypothesis-show-statistics` prints how many cases each test generated.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
import typer.main
import typer.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from extractor.cli import app
from extractor.collect.results import OUTCOMES
from extractor.jobs import JobStore
from extractor.names import display_name
from tests.job_fixtures import completion_line

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def built_once():
    """typer rebuilds the click command on every invoke (~0.3 s); build it once for the many examples here."""
    command = typer.main.get_command(app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", lambda _app: command)
        yield


VALID = {"entities": [{"name": "Anita Ekberg", "type": "PERSON"}], "relations": []}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

# Every field of a Batch API output line, as a path into it.
FIELDS: list[tuple[Any, ...]] = [
    (),
    ("id",),
    ("custom_id",),
    ("error",),
    ("response",),
    ("response", "status_code"),
    ("response", "body"),
    ("response", "body", "model"),
    ("response", "body", "usage"),
    ("response", "body", "usage", "prompt_tokens"),
    ("response", "body", "usage", "completion_tokens"),
    ("response", "body", "choices"),
    ("response", "body", "choices", 0),
    ("response", "body", "choices", 0, "finish_reason"),
    ("response", "body", "choices", 0, "message"),
    ("response", "body", "choices", 0, "message", "content"),
    ("response", "body", "choices", 0, "message", "refusal"),
]


def _set(line: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    line = copy.deepcopy(line)
    node = line
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return line


mutations = st.lists(st.tuples(st.sampled_from(FIELDS), json_values), max_size=3)


def _job(tmp: Path) -> tuple[Path, str, list[str]]:
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    folder = tmp / "docs"
    folder.mkdir()
    for path in sorted(docs.glob("*.txt"))[:3]:
        shutil.copyfile(path, folder / path.name)
    jobs = tmp / "jobs"
    result = runner.invoke(app, ["--jobs-dir", str(jobs), "prepare", str(folder), "--backend", "openai", "--json"])
    assert result.exit_code == 0, result.stderr
    job_id = orjson.loads(result.stdout)["job_id"]
    return jobs, job_id, [d["custom_id"] for d in JobStore(jobs).load(job_id).documents()]


_collect_state: dict[str, Any] = {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_line=st.lists(mutations, min_size=1, max_size=4), extra=st.lists(json_values, max_size=2))
def test_collect_survives_any_json_in_any_field(
    per_line: list[list[tuple[tuple[Any, ...], Any]]], extra: list[Any]
) -> None:
    if not _collect_state:  # one prepared job for every example: only its answers change
        _collect_state["tmp"] = Path(tempfile.mkdtemp(prefix="collect-props-"))
        _collect_state["job"] = _job(_collect_state["tmp"])
    jobs, job_id, ids = _collect_state["job"]
    job = JobStore(jobs).load(job_id)
    shutil.rmtree(job.output_dir, ignore_errors=True)
    lines = []
    for n, changes in enumerate(per_line):
        line: Any = completion_line(ids[n % len(ids)], json.dumps(VALID))
        for path, value in changes:
            # an earlier change may have replaced a container on this path: nothing to set then
            with contextlib.suppress(KeyError, IndexError, TypeError):
                line = _set(line, path, value)
        lines.append(line)
    lines += extra
    answers = _collect_state["tmp"] / "answers.jsonl"
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")  # big ints too
    result = runner.invoke(app, ["--jobs-dir", str(jobs), "collect", job_id, "--output-file", str(answers), "--json"])
    assert result.exit_code in (0, 6), (result.exit_code, result.stderr)
    data = orjson.loads(result.stdout)
    assert sum(data["outcomes"].values()) == len(ids)
    rows = [orjson.loads(raw) for raw in job.results_path.read_bytes().splitlines()]
    assert [row["custom_id"] for row in rows] == ids
    assert all(row["outcome"] in OUTCOMES for row in rows)


# --- intake ----------------------------------------------------------------------------------------

SUFFIXES = ["", ".txt", ".md", ".html", ".htm", ".pdf", ".jsonl", ".docx"]
name_text = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40)
name_bytes = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_"))
contents = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.tuples(
        st.text(st.characters(max_codepoint=0xFF), min_size=1, max_size=300),
        st.sampled_from(["latin-1", "utf-16-le", "utf-16"]),
    ).map(lambda p: p[0].encode(p[1])),
    # json, not orjson: the values include integers past 64 bits, which orjson refuses to write
    st.lists(json_values, max_size=3).map(lambda rows: b"".join(json.dumps(r).encode() + b"\n" for r in rows)),
)
files = st.lists(
    st.tuples(st.one_of(name_text.map(os.fsencode), name_bytes), st.sampled_from(SUFFIXES), contents),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=files)
def test_intake_survives_any_file_name_and_bytes(files: list[tuple[bytes, str, bytes]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="intake-props-"))
    try:
        folder = os.path.join(os.fsencode(tmp), b"docs")
        os.mkdir(folder)
        written: list[str] = []
        for stem, suffix, data in files:
            name = (stem + suffix.encode())[:200]
            if name.startswith(b".") or name in (b"", b".", b".."):
                continue  # hidden files are never documents
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)
            written.append(display_name(os.fsdecode(name)))
        written = sorted(set(written))
        result = runner.invoke(app, ["--jobs-dir", str(tmp / "jobs"), "prepare", os.fsdecode(folder)])
        assert result.exit_code in (0, 2, 6), (result.exit_code, result.stderr)
        if result.exit_code == 2:
            assert written == [] or result.stderr.startswith("Error: No usable documents in")
            assert result.stderr.count("\n") == 1  # one line, whatever the names
            return
        job = next(iter(JobStore(tmp / "jobs")))
        skipped = job.manifest["skipped"]
        seen = [p for d in job.documents() for p in d["paths"]] + [s["path"] for s in skipped]
        for name in written:  # every file ends as a document (or part of one) or a skipped entry
            assert any(p == name or p.startswith((name + "#", name + ":")) for p in seen), (name, seen)
        assert all("\n" not in p and "\r" not in p for p in seen)
        said = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
        assert len(said) == len(skipped) == len(result.stderr.splitlines())  # one line per skipped file, never more
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
