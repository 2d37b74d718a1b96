"""What a hostile night throws at the CLI (issue 15): each case ends as one clear line, the run goes on,
nothing already done is lost, and no secret leaks. Every test goes through the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from extractor.collect.results import MAX_ANSWER_BYTES
from extractor.jobs import JobStore
from extractor.verify.grounding import MAX_NAME_CHARS
from tests.chat_stub import ChatStub
from tests.job_fixtures import completion_line, invoke

runner = CliRunner()
VALID = {"entities": [{"name": "Anita Ekberg", "type": "PERSON"}], "relations": []}


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def prepare(docs: Path, *extra: str) -> dict[str, Any]:
    result = invoke("prepare", str(docs), "--backend", "openai", *extra, "--json")
    assert result.exit_code in (0, 6), result.stderr
    return orjson.loads(result.stdout)


def custom_ids(job_id: str) -> list[str]:
    return [d["custom_id"] for d in store().load(job_id).documents()]


def collect_file(job_id: str, lines: list[Any], tmp_path: Path, *extra: str):
    output = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.jsonl"
    output.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return invoke("collect", job_id, "--output-file", str(output), *extra)


def results(job_id: str) -> dict[str, dict[str, Any]]:
    path = store().load(job_id).results_path
    return {row["custom_id"]: row for row in map(orjson.loads, path.read_bytes().splitlines())}


# --- collect: any line shape ---------------------------------------------------------------------


ODD_SHAPES = {
    "error is a string": lambda cid: {"custom_id": cid, "error": "boom"},
    "response is a string": lambda cid: {"custom_id": cid, "response": "x"},
    "choices hold a string": lambda cid: {
        "custom_id": cid,
        "response": {"status_code": 200, "body": {"choices": ["x"]}},
    },
    "message is a string": lambda cid: {
        "custom_id": cid,
        "response": {"status_code": 200, "body": {"choices": [{"message": "hi", "finish_reason": "stop"}]}},
    },
    "usage counts are words": lambda cid: {
        **completion_line(cid, json.dumps(VALID)),
        "response": {
            "status_code": 200,
            "body": {**completion_line(cid, json.dumps(VALID))["response"]["body"], "usage": {"prompt_tokens": "lots"}},
        },
    },
}


@pytest.mark.parametrize("shape", list(ODD_SHAPES))
def test_an_odd_shaped_line_is_one_failed_outcome_naming_file_and_line(
    docs_dir: Path, tmp_path: Path, shape: str
) -> None:
    job_id = prepare(docs_dir)["job_id"]
    odd, *fine = custom_ids(job_id)
    lines = [completion_line(cid, json.dumps(VALID)) for cid in fine] + [ODD_SHAPES[shape](odd)]
    result = collect_file(job_id, lines, tmp_path, "--json")
    assert result.exit_code == 6, result.stderr  # partial: one document failed, the rest are collected
    data = orjson.loads(result.stdout)
    assert data["failed"] == [odd] and data["outcomes"]["ok"] == 2
    row = results(job_id)[odd]
    assert row["outcome"] == "http_error"
    assert row["errors"][0].startswith("malformed_line: output/ingested-000.jsonl:3: ")
    # and the next collect of the same job still works (it used to exit 1 until the file was deleted by hand)
    again = invoke("collect", job_id, "--json")
    assert again.exit_code == 6, again.stderr


def test_a_later_invalid_line_never_replaces_a_valid_answer(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    ids = custom_ids(job_id)
    lines = [completion_line(cid, json.dumps(VALID)) for cid in ids] + [completion_line(ids[0], "not json")]
    result = collect_file(job_id, lines, tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["outcomes"]["ok"] == 3 and data["duplicate_lines"] == 1
    assert data["warnings"] == [
        f"custom_id {ids[0]} has more than one line (output/ingested-000.jsonl:1, "
        f"output/ingested-000.jsonl:4); kept output/ingested-000.jsonl:1 (the valid answer)"
    ]
    assert results(job_id)[ids[0]]["answer"] == VALID
    plain = invoke("collect", job_id)
    assert f"warning: custom_id {ids[0]} has more than one line" in plain.stderr


def test_lines_of_another_job_are_counted_and_reported(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    strangers = [completion_line(f"other-job-{n}", json.dumps(VALID)) for n in range(4)]
    lines = [completion_line(cid, json.dumps(VALID)) for cid in custom_ids(job_id)] + strangers + [[1, 2], "x"]
    result = collect_file(job_id, lines, tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["unknown_lines"] == 6
    assert data["warnings"] == [
        f"output/ingested-000.jsonl: 6 line(s) name no document of job {job_id} (another job's file?) — not used"
    ]


def test_an_answer_over_the_size_limit_is_recorded_with_its_size(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    big, *fine = custom_ids(job_id)
    huge = {"entities": [{"name": "x" * (MAX_ANSWER_BYTES + 10), "type": "PERSON"}], "relations": []}
    lines = [completion_line(cid, json.dumps(VALID)) for cid in fine] + [completion_line(big, json.dumps(huge))]
    result = collect_file(job_id, lines, tmp_path, "--json")
    assert result.exit_code == 6, result.stderr
    row = results(job_id)[big]
    assert row["outcome"] == "schema_invalid"
    assert "answer too large: line 3 of ingested-000.jsonl is" in row["errors"][0]
    assert f"over the limit of {MAX_ANSWER_BYTES:,} bytes per answer" in row["errors"][0]


# --- damaged jobs --------------------------------------------------------------------------------


def test_a_damaged_job_never_stops_another(docs_dir: Path, tmp_path: Path) -> None:
    damaged = prepare(docs_dir)["job_id"]
    manifest = store().root / damaged / "job.json"
    manifest.write_bytes(manifest.read_bytes()[:200])  # truncated
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Grace Hopper built the first compiler for the UNIVAC I in 1952.\n")
    fresh = prepare(other)["job_id"]

    listing = invoke("status", "--json")
    assert listing.exit_code == 0, listing.stderr
    data = orjson.loads(listing.stdout)
    assert [j["job_id"] for j in data["jobs"]] == [fresh]
    assert data["damaged"][0]["job_id"] == damaged and data["damaged"][0]["file"] == str(manifest)
    assert data["damaged"][0]["problem"].startswith("not valid JSON")
    plain = invoke("status")
    assert f"damaged: {manifest}: not valid JSON" in plain.stderr and "move the folder" in plain.stderr
    assert invoke("status", fresh, "--json").exit_code == 0
    assert invoke("report", "--json").exit_code == 0
    again = invoke("prepare", str(other), "--backend", "openai", "--json")  # finds its twin among readable jobs
    assert again.exit_code == 0, again.stderr

    own = invoke("status", damaged)
    assert own.exit_code == 2
    assert own.stderr.startswith(f"Error: {manifest}: damaged job (not valid JSON")
    assert invoke("verify", damaged).exit_code == 2


# --- intake --------------------------------------------------------------------------------------


def test_symlink_loops_and_undecodable_names_are_skipped_with_a_reason(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("Grace Hopper built the first compiler for the UNIVAC I in 1952.\n")
    os.symlink("loop-b.txt", docs / "loop-a.txt")
    os.symlink("loop-a.txt", docs / "loop-b.txt")
    with open(os.path.join(os.fsencode(docs), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"Ada Lovelace wrote the first program.\n")
    result = invoke("prepare", str(docs), "--json")
    assert result.exit_code == 6, result.stderr
    skipped = {s["path"]: s["reason"] for s in orjson.loads(result.stdout)["skipped"]}
    assert skipped == {
        "caf\\xe9.txt": "caf\\xe9.txt: file name is not valid UTF-8 — rename it (e.g. with convmv) to read it",
        "loop-a.txt": "loop-a.txt: symlink loop — remove the link or point it at a file",
        "loop-b.txt": "loop-b.txt: symlink loop — remove the link or point it at a file",
    }


def test_a_newline_in_a_file_name_never_forges_a_log_line(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good\nError: forged.txt").write_text("Grace Hopper built the first compiler for the UNIVAC I in 1952.\n")
    (docs / "x\nError: all jobs deleted.docx").write_bytes(b"PK\x03\x04")
    result = invoke("prepare", str(docs))
    assert result.exit_code == 6
    assert result.stderr.splitlines() == [
        "skipped x\\nError: all jobs deleted.docx: unsupported file type .docx — convert it to .txt, .md, .html or "
        ".pdf, or remove it"
    ]
    job = next(iter(store()))
    assert [d["path"] for d in job.documents()] == ["good\\nError: forged.txt"]
    assert [s["path"] for s in job.manifest["skipped"]] == ["x\\nError: all jobs deleted.docx"]
    as_json = invoke("prepare", str(docs), "--json")
    assert as_json.stdout.count("\n") == 1 and "\\\\nError: all jobs deleted" in as_json.stdout


LEGACY = "Anita Ekberg était une actrice suédoise née à Malmö. « Déjà vu », dit-elle.\n"


def test_legacy_encodings_are_read_and_recorded(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cp1252.txt").write_bytes(LEGACY.encode("cp1252"))
    (docs / "latin1.md").write_bytes(("Grüße aus Köln. " * 4 + "\n").encode("latin-1"))
    (docs / "utf16.txt").write_bytes((LEGACY * 2).encode("utf-16-le"))  # no BOM
    result = invoke("prepare", str(docs), "--json")
    assert result.exit_code == 0, result.stderr
    job = store().load(orjson.loads(result.stdout)["job_id"])
    assert {d["path"]: d["encoding"] for d in job.documents()} == {
        "cp1252.txt": "cp1252",
        "latin1.md": "cp1252",
        "utf16.txt": "utf_16_le",
    }
    texts = "".join(f.read_text() for f in job.request_files())
    assert "suédoise née à Malmö" in texts and "Grüße aus Köln" in texts


def test_encoding_option_forces_one(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "koi8.txt").write_bytes("Привет, это проверка кодировки KOI8-R.\n".encode("koi8-r"))
    forced = invoke("prepare", str(docs), "--encoding", "koi8_r", "--json")
    assert forced.exit_code == 0, forced.stderr
    job = store().load(orjson.loads(forced.stdout)["job_id"])
    assert job.documents()[0]["encoding"] == "koi8-r"
    assert "Привет, это проверка" in job.request_files()[0].read_text()
    unknown = invoke("prepare", str(docs), "--encoding", "klingon")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("Error: --encoding 'klingon': unknown encoding")


# --- secrets -------------------------------------------------------------------------------------


def test_a_local_server_echoing_the_key_never_shows_it(docs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-local-canary-5d1f0a9c"
    monkeypatch.setenv("EXTRACTOR_LOCAL_API_KEY", key)
    with ChatStub(api_key="another-key", echo_key=True) as server:
        result = invoke("submit", str(docs_dir), "--local-url", server.url())
    assert result.exit_code == 2
    assert "rejected a test request" in result.stderr and "Invalid API Key: Bearer ***" in result.stderr
    assert key not in result.stdout + result.stderr


def test_url_passwords_stay_out_of_the_log(docs_dir: Path) -> None:
    with ChatStub() as server:
        result = invoke("submit", str(docs_dir), "--local-url", server.url("night:hunter2-pass"), "--json")
    assert result.exit_code == 0, result.stderr
    job = next(iter(store()))
    log = job.log_path.read_text()
    assert '"event":"lane_start"' in log and "http://***@127.0.0.1" in log
    assert "hunter2-pass" not in log + result.stdout + result.stderr
    assert "hunter2-pass" not in (job.path / "job.json").read_text()


# --- bounded work --------------------------------------------------------------------------------


@pytest.mark.timeout(120)  # a hang guard, not a timing target: the old quadratic alignment took 120 s here
def test_a_huge_entity_name_is_ungrounded_without_alignment(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    name = "Anita Ekberg " * 12_300  # 160,000 characters
    answer = {
        "entities": [{"name": name, "type": "PERSON"}, {"name": "Anita Ekberg", "type": "PERSON"}],
        "relations": [],
    }
    lines = [completion_line(cid, json.dumps(answer)) for cid in custom_ids(job_id)]
    assert collect_file(job_id, lines, tmp_path).exit_code == 0
    verified = invoke("verify", job_id, "--json")
    assert verified.exit_code in (0, 3), verified.stderr
    report = orjson.loads((store().load(job_id).verify_path).read_bytes())
    names = {len(e["name"]): e["verdict"] for doc in report["documents"] for e in doc["entities"]}
    assert names[len(name)] == "ungrounded" and len(name) > MAX_NAME_CHARS


def test_a_nul_inside_an_entity_name_is_not_grounded(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    answer = {"entities": [{"name": "Anita\u0000Ekberg", "type": "PERSON"}], "relations": []}
    lines = [completion_line(cid, json.dumps(answer)) for cid in custom_ids(job_id)]
    assert collect_file(job_id, lines, tmp_path).exit_code == 0
    assert invoke("verify", job_id).exit_code in (0, 3)
    report = orjson.loads((store().load(job_id).verify_path).read_bytes())
    verdicts = {e["verdict"] for doc in report["documents"] for e in doc["entities"]}
    assert verdicts == {"ungrounded"}


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("prepare", "DOCS", "--max-tokens", "-5"),
        ("prepare", "DOCS", "--max-tokens", "0"),
        ("prepare", "DOCS", "--ctx", "0"),
        ("run", "DOCS", "--max-cost", "-1"),
        ("run", "DOCS", "--max-cost", "0"),
        ("run", "DOCS", "--slots", "0"),
        ("run", "DOCS", "--threads", "-2"),
        ("run", "DOCS", "--max-attempts", "0"),
        ("collect", "JOB", "--poll-interval", "0"),
        ("submit", "DOCS", "--health-timeout", "-1"),
    ],
)
def test_numeric_options_below_one_are_usage_errors(docs_dir: Path, args: tuple[str, ...]) -> None:
    argv = [str(docs_dir) if a == "DOCS" else a for a in args]
    if args[0] in (
        "run",
        "submit",
    ):  # nothing listens there: a run that took the option would fail fast, not start a server
        argv += ["--local-url", "http://127.0.0.1:1"]
    result = invoke(*argv)
    assert result.exit_code == 2
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())  # typer draws a box around usage errors
    assert f"Invalid value for '{args[2]}'" in said and "greater than 0" in said
    assert list(store()) == []


# --- environment failures ------------------------------------------------------------------------


def _mount(*args: str) -> bool:
    return shutil.which("mount") is not None and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 256 KiB tmpfs as the jobs dir's disk (needs root; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)):
        pytest.skip("mounting a small tmpfs needs root")
    monkeypatch.setenv("EXTRACTOR_JOBS_DIR", str(disk / "jobs"))
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _padded_answers(job_id: str, size: int) -> list[dict[str, Any]]:
    # the spec allows 60 entities an answer: long names make up the size
    name = ("Anita Ekberg " * (size // 60 // 13 + 1)).strip()
    answer = {"entities": [{"name": name, "type": "PERSON"}] * 60, "relations": []}
    return [completion_line(cid, json.dumps(answer)) for cid in custom_ids(job_id)]


def test_a_full_disk_exits_2_naming_the_path_and_the_rerun_resumes(
    docs_dir: Path, tmp_path: Path, small_disk: Path
) -> None:
    job_id = prepare(docs_dir)["job_id"]
    result = collect_file(job_id, _padded_answers(job_id, 120_000), tmp_path)  # ~360 KB onto a 256 KiB disk
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"Error: {small_disk / 'jobs' / job_id}/output/") and "no space left on the device" in line
    assert line.endswith(
        "free some space, then run the same command again (everything finished so far is kept and the job resumes)"
    )
    assert store().load(job_id).state.value == "prepared"  # the job itself is whole
    assert _mount("-o", "remount,size=16m", str(small_disk))  # the fix: more space
    again = collect_file(job_id, _padded_answers(job_id, 120_000), tmp_path, "--json")
    assert again.exit_code == 0, again.stdout
    assert orjson.loads(again.stdout)["job_id"] == job_id and store().load(job_id).state.value == "collected"


def test_a_read_only_jobs_dir_exits_2_and_the_rerun_resumes(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    root = store().root
    if os.geteuid() != 0:
        root.chmod(0o555)
        (root / job_id).chmod(0o555)
    elif not (_mount("--bind", str(root), str(root)) and _mount("-o", "remount,bind,ro", str(root))):
        pytest.skip("a read-only bind mount needs root")
    try:
        result = collect_file(job_id, _padded_answers(job_id, 10), tmp_path)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"Error: {root / job_id}/output")
        assert (
            "read-only file system — make it writable or pass --jobs-dir on a writable disk" in result.stderr
            or "permission denied" in result.stderr
        )
    finally:
        if os.geteuid() != 0:
            root.chmod(0o755)
            (root / job_id).chmod(0o755)
        else:
            subprocess.run(["umount", str(root)], capture_output=True)
    again = collect_file(job_id, _padded_answers(job_id, 10), tmp_path, "--json")
    assert again.exit_code == 0, again.stderr
    assert store().load(job_id).state.value == "collected"


def test_jobs_dir_that_is_a_file_is_a_usage_error(docs_dir: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "jobs-file"
    not_a_folder.write_text("oops")
    for args in (("status",), ("prepare", str(docs_dir)), ("report",)):
        result = invoke("--jobs-dir", str(not_a_folder), *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.strip() == (
            f"Error: {not_a_folder}: the jobs dir is a file, not a folder — pass "
            "--jobs-dir a folder (or set EXTRACTOR_JOBS_DIR to one)"
        )


def test_html_pointing_at_a_folder_exits_2_and_the_rerun_writes_it(docs_dir: Path, tmp_path: Path) -> None:
    job_id = prepare(docs_dir)["job_id"]
    assert collect_file(job_id, _padded_answers(job_id, 10), tmp_path).exit_code == 0
    folder = tmp_path / "report"
    folder.mkdir()
    result = invoke("verify", job_id, "--html", str(folder))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: {folder}: is a folder, but a file is needed — pass a file path"
    )
    again = invoke("verify", job_id, "--html", str(folder / "verify.html"))
    assert again.exit_code in (0, 3), again.stderr
    assert (folder / "verify.html").read_text().startswith("<!")


# --- logging cost --------------------------------------------------------------------------------


class _CountingFile:
    def __init__(self, fh: Any, counter: list[int]):
        self._fh, self._counter = fh, counter

    def read(self, *args: Any) -> bytes:
        data = self._fh.read(*args)
        self._counter[0] += len(data)
        return data

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def test_opening_the_log_reads_its_tail_not_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from extractor import storage

    log = tmp_path / "log.jsonl"
    line = b'{"event":"request","latency_ms":12.5}\n'
    log.write_bytes(line * 100_000)  # 3.8 MB
    read = [0]
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: _CountingFile(real_open(self, *a, **k), read))
    with storage.JsonlAppender(log, fsync=False) as out:
        out.write({"event": "x"})
    assert read[0] <= 1  # the last byte, to see the file ends whole
    # a torn last line (kill -9 mid-append) is cut off reading one block from the end, not the file
    with real_open(log, "ab") as fh:
        fh.write(b'{"event":"torn')
    read[0] = 0
    with storage.JsonlAppender(log, fsync=False) as out:
        out.write({"event": "after"})
    assert read[0] <= storage.TAIL_BLOCK + 1
    lines = log.read_bytes().splitlines()
    assert len(lines) == 100_002 and lines[-1] == b'{"event":"after"}' and lines[-2] == b'{"event":"x"}'


def test_a_job_whose_line_files_are_a_newer_format_is_damaged_naming_the_fix(tmp_path: Path) -> None:
    """results.jsonl and log.jsonl carry their version in the manifest's `formats`: an unknown one is refused."""
    from extractor.jobs import JobStore, read_manifest

    store = JobStore(tmp_path / "jobs")
    staging = store.staging_dir()
    job = store.create(
        {"job_id": "J1", "state": "prepared", "backend": "local", "model": "m", "documents": []}, staging
    )
    manifest = orjson.loads((job.path / "job.json").read_bytes())
    assert manifest["formats"] == {"results.jsonl": "extractor.results/1", "log.jsonl": "extractor.log/1"}
    del manifest["formats"]  # a job from before `formats`: migrated, still readable
    (job.path / "job.json").write_bytes(orjson.dumps(manifest))
    assert read_manifest(job.path / "job.json")["job_id"] == "J1"
    manifest["formats"] = {"results.jsonl": "extractor.results/2"}
    (job.path / "job.json").write_bytes(orjson.dumps(manifest))
    assert store.damaged() == [
        {
            "job_id": "J1",
            "file": str(job.path / "job.json"),
            "problem": "results.jsonl is format 'extractor.results/2', this extractor reads extractor.results/1",
            "fix": "upgrade extractor to read this job",
        }
    ]
