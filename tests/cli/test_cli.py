"""The CLI contract in-process: exit codes and exact error texts for the mistakes users make first."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from typer.testing import CliRunner

from extractor.jobs import JobStore, State
from tests.job_fixtures import invoke

runner = CliRunner()


def jobs() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("prepare", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: No such folder: {tmp_path / 'nowhere'} — pass a folder of .txt/.md/.html/.pdf/.jsonl documents"
    )


def test_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("prepare", str(empty))
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == f"Error: No usable documents in {empty} — add .txt, .md, .html, .pdf or .jsonl files"
    )


def test_prepare_writes_one_isolated_line_per_document(docs_dir: Path) -> None:
    result = invoke("prepare", str(docs_dir), "--json")
    assert result.exit_code == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["documents"] == 3 and data["requests"] == 3
    job = jobs().load(data["job_id"])
    assert job.state is State.PREPARED
    lines = [orjson.loads(x) for f in job.request_files() for x in f.read_bytes().splitlines()]
    texts = {p.name: p.read_text(encoding="utf-8") for p in docs_dir.iterdir()}
    assert {line["custom_id"] for line in lines} == {d["custom_id"] for d in job.documents()}
    for line in lines:
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        messages = line["body"]["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        # the user message is one whole document, and no other document appears anywhere in the line
        owners = [name for name, text in texts.items() if text.strip() in messages[1]["content"]]
        assert len(owners) == 1
        raw = orjson.dumps(line).decode()
        others = [t for n, t in texts.items() if n != owners[0]]
        assert not any(t.splitlines()[2][:80] in raw for t in others)
        assert line["body"]["response_format"]["json_schema"]["strict"] is True


def test_prepare_is_deterministic_in_custom_ids(docs_dir: Path) -> None:
    first = orjson.loads(invoke("prepare", str(docs_dir), "--json").stdout)
    second = orjson.loads(invoke("prepare", str(docs_dir), "--json").stdout)
    ids_a = [d["custom_id"] for d in jobs().load(first["job_id"]).documents()]
    ids_b = [d["custom_id"] for d in jobs().load(second["job_id"]).documents()]
    assert ids_a == ids_b and len(set(ids_a)) == 3


def test_commit_before_verify_says_what_to_run(docs_dir: Path) -> None:
    job_id = orjson.loads(invoke("prepare", str(docs_dir), "--json").stdout)["job_id"]
    result = invoke("commit", job_id)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {job_id} is prepared, so it cannot be committed — run `extractor submit --job {job_id}` first"
    )


def test_rollback_of_unknown_job(tmp_path: Path) -> None:
    result = invoke("rollback", "20990101-000000-abcdef01")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: No job '20990101-000000-abcdef01' in {tmp_path / 'jobs'} — run `extractor status` to list jobs"
    )


def test_json_mode_prints_one_object_and_nothing_else(docs_dir: Path) -> None:
    result = invoke("prepare", str(docs_dir), "--json")
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1
    data = orjson.loads(result.stdout)
    assert {"job_id", "documents", "requests", "input_tokens", "estimated_cost_usd"} <= data.keys()


def test_status_lists_jobs(docs_dir: Path) -> None:
    job_id = orjson.loads(invoke("prepare", str(docs_dir), "--json").stdout)["job_id"]
    data = orjson.loads(invoke("status", "--json").stdout)
    assert [j["job_id"] for j in data["jobs"]] == [job_id]
    one = orjson.loads(invoke("status", job_id, "--json").stdout)
    assert one["state"] == "prepared" and one["next"] == f"extractor submit --job {job_id}"


def test_graph_cypher_prints_json_lines() -> None:
    result = invoke("graph", "cypher", "--dialect", "neo4j")
    assert result.exit_code == 0
    statements = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert statements and all({"query", "parameters"} <= s.keys() for s in statements)
    assert any("UNWIND $rows" in s["query"] for s in statements)


def test_schema_check_lists_problems_by_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        orjson.dumps(
            {
                "format": "extractor.spec/1",
                "name": "bad",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": []},
                "grounding": {"entities": {"path": "/a", "name": "name", "type": None}},
            }
        ).decode()
    )
    result = invoke("schema", "check", str(bad))
    assert result.exit_code == 2
    assert "/schema" in result.stdout
    ok = invoke("schema", "check", str(Path(__file__).resolve().parents[2] / "extractor" / "spec" / "default.json"))
    assert ok.exit_code == 0, ok.stdout


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"extractor {version('extractor')}\n"


def test_help_shows_flags_as_flags_and_the_lanes_as_choices() -> None:
    text = invoke("run", "--help").stdout
    assert "--json " in text and "--strict " in text and "<bool>" not in text
    assert "--backend <local|openai|auto>" in text
    assert "--dialect <neo4j|falkordb>" in invoke("graph", "cypher", "--help").stdout


def test_an_unknown_backend_or_dialect_is_a_usage_error(docs_dir: Path) -> None:
    bad = invoke("prepare", str(docs_dir), "--backend", "anthropic")
    assert bad.exit_code == 2 and "'anthropic' is not one of 'local', 'openai', 'auto'" in bad.stderr
    assert list(jobs()) == []
    assert invoke("graph", "cypher", "--dialect", "sqlite").exit_code == 2


def test_ctrl_c_exits_130_with_one_line(docs_dir: Path, monkeypatch) -> None:
    import extractor.cli.commands

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extractor.cli.commands, "prepare_job", interrupted)
    result = invoke("prepare", str(docs_dir))
    assert result.exit_code == 130
    assert result.stderr == (
        "Error: interrupted — everything finished so far is kept; run the same command again to resume\n"
    )


def test_an_unexpected_error_is_one_line_and_debug_adds_the_traceback(docs_dir: Path, monkeypatch) -> None:
    import extractor.cli.commands

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(extractor.cli.commands, "prepare_job", broken)
    plain = invoke("prepare", str(docs_dir))
    assert plain.exit_code == 1
    assert plain.stderr == "Error: unexpected ZeroDivisionError: boom (rerun with --debug for the traceback)\n"
    debug = invoke("--debug", "prepare", str(docs_dir))
    assert debug.exit_code == 1
    assert debug.stderr.startswith("Traceback (most recent call last):") and "in broken" in debug.stderr


def test_schema_check_without_a_file_checks_the_bundled_spec_and_show_prints_it() -> None:
    from extractor.spec.schema import DEFAULT_SPEC_PATH

    ok = invoke("schema", "check")
    assert ok.exit_code == 0 and ok.stdout == f"{DEFAULT_SPEC_PATH}: ok\n"
    shown = invoke("schema", "show")
    assert orjson.loads(shown.stdout) == orjson.loads(DEFAULT_SPEC_PATH.read_bytes())
    assert orjson.loads(invoke("schema", "show", "gate").stdout)["grounding"] is None
    missing = invoke("schema", "show", "people")
    assert missing.exit_code == 2 and missing.stderr == "Error: no bundled spec 'people' — use default or gate\n"
