"""Helpers for the run, ledger, report and compare tests: the OpenAI emulator wired into the env, the CLI
in-process and in a child process, and jobs whose answers a test writes itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from extractor.cli import app
from extractor.collect.results import iter_answer_lines, iter_results
from extractor.jobs import Job, JobStore
from extractor.prepare.stage import PrepareOptions, prepare_job
from extractor.reports.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenAI client's retry backoff shrunk to milliseconds."""
    from extractor.lanes import openai_client

    monkeypatch.setattr(openai_client, "BACKOFF_BASE_S", 0.005)
    monkeypatch.setattr(openai_client, "BACKOFF_CAP_S", 0.02)


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def jobs() -> list[Job]:
    return list(store())


def invoke(*args: object, **kwargs: Any) -> Result:
    """The CLI in-process (the one helper every test uses): arguments as strings, exceptions not caught."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def invoke_json(*args: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
    result = invoke("--debug", *args, "--json")
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    return orjson.loads(result.stdout)


def cli_process(*args: str, crash_after: str | None = None, **popen: Any) -> subprocess.Popen:
    """`python -m extractor.cli ARGS` in a child process with the test's environment (and a crash point)."""
    env = os.environ.copy()
    if crash_after:
        env["EXTRACTOR_TEST_CRASH_AFTER"] = crash_after
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "extractor.cli", *args], cwd=REPO, env=env, **popen)


def completion_line(
    custom_id: str,
    content: str,
    *,
    model: str = "gpt-4.1-mini",
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """One batch output line with a 200 chat completion carrying `content`."""
    body = {
        "id": f"chatcmpl-{custom_id[:8]}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return {
        "id": f"batch_req_{custom_id[:8]}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req", "body": body},
        "error": None,
    }


def job_from_answers(
    docs: Path,
    answers: dict[str, Any],
    tmp_path: Path,
    *,
    backend: str = "openai",
    model: str | None = None,
    created_at: str | None = None,
    verify: bool = True,
    **usage: int,
) -> Job:
    """Prepare a job over `docs`, ingest an output file with the given answer per file name
    (a dict → its JSON; a str → sent as is), collect, verify; optionally back-date it."""
    # A distinct setting gives each job its own content key: job ids of one key made in the same second could
    # collide. (Not seed: current OpenAI models do not take one, and prepare refuses it.)
    nth = len(list(store()))
    distinct = {"seed": nth} if backend == "local" else {"extra": {"prompt_cache_key": f"fixture-{nth}"}}
    job = prepare_job(store(), docs, PrepareOptions(backend=backend, model=model, count_tokens=False, **distinct)).job
    by_path = {d["path"]: d["custom_id"] for d in job.documents()}
    lines = []
    for name, answer in answers.items():
        content = answer if isinstance(answer, str) else json.dumps(answer)
        lines.append(completion_line(by_path[name], content, model=job.manifest["model"], **usage))
    output = tmp_path / f"answers-{job.id}.jsonl"
    output.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    collected = invoke("collect", job.id, "--output-file", str(output))
    assert collected.exit_code in (0, 6), collected.stderr
    if verify:
        verified = invoke("verify", job.id)
        assert verified.exit_code in (0, 3), verified.stderr
    job = store().load(job.id)
    if created_at:
        job.manifest["created_at"] = created_at  # planted history: "an earlier night"
        job.save()
    return job


def assert_ledger_matches(ledger: Ledger, jobs_dir: JobStore) -> None:
    """Every figure the ledger holds for a job is the one its folder holds."""
    rows = {row["job_id"]: row for row in ledger.jobs()}
    for job in jobs_dir:
        m, row = job.manifest, rows[job.id]
        assert (row["state"], row["backend"], row["model"], row["documents"]) == (
            m["state"],
            m["backend"],
            m["model"],
            len(m["documents"]),
        )
        assert (row["schema_sha256"], row["prompt_sha256"]) == (m["spec"]["sha256"], m["prompt"]["sha256"])
        assert {k: row[f"n_{k}"] for k in m["outcomes"]} == m["outcomes"]
        verify = m["verify"]
        assert {v: row[v] for v in verify["entities"]} == verify["entities"]
        assert {v: row[f"rel_{v}"] for v in verify["relations"]} == verify["relations"]
        assert (row["clean"], row["quarantined"], row["failed"]) == (
            verify["clean"],
            verify["quarantined"],
            verify["failed"],
        )

        requests = ledger.requests(job.id)
        current = {r["custom_id"]: r for r in requests if not r["superseded"]}
        results = {r["custom_id"]: r for r in iter_results(job)}
        assert set(current) == set(results)
        for cid, result in results.items():
            usage = result["usage"] or {}
            got = current[cid]
            assert (got["outcome"], got["prompt_tokens"], got["completion_tokens"], got["cost_usd"]) == (
                result["outcome"],
                usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0),
                result["cost_usd"],
            )
            assert got["schema_valid"] == (
                None if result["outcome"] in ("http_error", "expired", "missing") else int(result["outcome"] == "ok")
            )
            assert (got["truncated"], got["refused"]) == (
                int(result["outcome"] == "truncated"),
                int(result["outcome"] == "refusal"),
            )
        set_aside = [
            line for path in sorted((job.path / "superseded").rglob("*.jsonl")) for line in iter_answer_lines(path)
        ]
        assert len(requests) - len(current) == len(set_aside)
        assert sum(r["prompt_tokens"] for r in requests) == m["cost"]["prompt_tokens"] == row["prompt_tokens"]
        assert (
            sum(r["completion_tokens"] for r in requests) == m["cost"]["completion_tokens"] == row["completion_tokens"]
        )
        assert row["cost_usd"] == pytest.approx(m["cost"]["usd"], abs=1e-6)

        remote = m.get("remote") or {}
        if remote.get("kind") == "openai":
            batches = {b["name"]: b for b in ledger.batches(job.id)}
            assert {name: b["status"] for name, b in batches.items()} == {
                e["name"]: e["status"] for e in remote["batches"]
            }
            assert all(b["seconds"] is not None and b["seconds"] >= 0 for b in batches.values())
