"""`run` on the local lane through the real llama.cpp server (Gemma 270M): crash-resume, the ledger, a report of both
lanes."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from extractor.reports.ledger import Ledger
from extractor.storage import iter_jsonl
from tests.job_fixtures import assert_ledger_matches, cli_process, invoke, invoke_json, jobs, store
from tests.openai_emulator import BatchEmulator
from tests.redocred import load_redocred, write_documents

pytestmark = [pytest.mark.llm, pytest.mark.slow]
# Tiny documents and answers: the machine is shared and a 270M model on 2 cores is slow under load.
TEXTS = {"ada.txt": "Ada Lovelace was born in London in 1815.\n", "alan.txt": "Alan Turing worked at Bletchley Park.\n"}
MAX_TOKENS = "24"


def tiny_docs(folder: Path, names: tuple[str, ...] = tuple(TEXTS)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(TEXTS[name], encoding="utf-8")
    return folder


def events(job, kind: str) -> list[dict]:
    return [e for e in iter_jsonl(job.log_path) if e.get("event") == kind]


def test_a_local_run_killed_after_submit_resends_nothing(tmp_path: Path, llama_url: str) -> None:
    docs = tiny_docs(tmp_path / "docs")
    args = ("run", str(docs), "--local-url", llama_url, "--max-tokens", MAX_TOKENS, "--no-commit")

    crashed = cli_process(*args, crash_after="submit")
    _, err = crashed.communicate(timeout=600)
    assert crashed.returncode == -signal.SIGKILL, err.decode()

    result = invoke(*args, "--json")

    assert result.exit_code in (0, 3, 6), result.stderr  # a 270M model's answers may be cut short at 24 tokens
    data = orjson.loads(result.stdout)
    [job] = jobs()
    assert (data["job_id"], data["resumed"], data["state"]) == (job.id, True, "verified")
    assert "submit" not in data["stages_seconds"]
    assert len(events(job, "request")) == 2 and len(events(job, "lane_start")) == 1  # each document sent once
    with Ledger.for_jobs(store()) as ledger:
        assert_ledger_matches(ledger, store())
        requests = ledger.requests(job.id)
        answered = [r for r in requests if r["outcome"] != "http_error"]
        assert len(requests) == 2 and all(r["latency_ms"] and r["latency_ms"] > 0 for r in answered)
        assert {r["custom_id"]: r["latency_ms"] for r in requests} == {
            e["custom_id"]: e["latency_ms"] for e in events(job, "request")
        }
        [lane_run] = ledger.batches(job.id)
        assert (lane_run["kind"], lane_run["status"], lane_run["lines"]) == ("local", "completed", 2)


def test_report_over_jobs_of_both_lanes(emu: BatchEmulator, tmp_path: Path, llama_url: str) -> None:
    local = invoke_json(
        "run",
        str(tiny_docs(tmp_path / "local", ("ada.txt",))),
        "--local-url",
        llama_url,
        "--max-tokens",
        MAX_TOKENS,
        "--no-commit",
        codes=(0, 3, 6),
    )
    corpus = load_redocred()
    remote = []
    for n, batch in enumerate((corpus[:2], corpus[2:4])):
        write_documents(batch, tmp_path / f"night-{n}")
        remote.append(
            invoke_json(
                "run", str(tmp_path / f"night-{n}"), "--backend", "openai", "--poll-interval", "0.05", "--no-commit"
            )
        )

    data = invoke_json("report")

    assert sorted(j["job_id"] for j in data["jobs"]) == sorted([local["job_id"]] + [r["job_id"] for r in remote])
    by_backend = {b["backend"]: b for b in data["backends"]}
    assert (by_backend["local"]["jobs"], by_backend["openai"]["jobs"]) == (1, 2)
    assert by_backend["local"]["cost_usd"] == 0.0 and by_backend["openai"]["cost_usd"] > 0
    assert by_backend["local"]["latency_ms"]["kind"] == "request" and by_backend["local"]["latency_ms"]["p50"] > 0
    assert by_backend["openai"]["schema_valid_rate"] == 1.0 and by_backend["openai"]["grounded_rate"] == 1.0
    [local_job] = [j for j in data["jobs"] if j["backend"] == "local"]
    lanes = local_job["lanes"]
    assert lanes["priced_as"] == "gpt-5.4-mini" and lanes["openai_batch_usd"] > 0
    assert lanes["openai_live_usd"] == pytest.approx(2 * lanes["openai_batch_usd"], abs=2e-6)
    # The later OpenAI night is compared with the earlier one (same backend and model), not with the local job.
    trends = [j["trend"].get("grounded_rate") for j in data["jobs"] if j["backend"] == "openai"]
    assert trends == [None, {"trailing_average": 1.0, "delta": 0.0, "jobs": 1}]


def test_backend_auto_keeps_an_openai_job_whose_batches_are_in_flight(
    emu: BatchEmulator, tmp_path: Path, llama_url: str
) -> None:
    docs = tiny_docs(tmp_path / "docs")
    emu.behaviour.auto_complete = False
    dead = "http://127.0.0.1:9"  # discard port: nothing answers
    first = invoke(
        "run",
        str(docs),
        "--backend",
        "auto",
        "--local-url",
        dead,
        "--health-timeout",
        "0.3",
        "--poll-interval",
        "0.05",
        "--wait-timeout",
        "0.2",
        "--no-commit",
        "--json",
    )
    assert first.exit_code == 6, first.stderr

    # Next night the local server is healthy; the batch already sent (and paid for) is still collected.
    emu.complete_all()
    again = invoke_json(
        "run", str(docs), "--backend", "auto", "--local-url", llama_url, "--poll-interval", "0.05", "--no-commit"
    )

    [job] = jobs()
    assert again["job_id"] == orjson.loads(first.stdout)["job_id"] == job.id
    assert job.manifest["backend"] == "openai" and again["state"] == "verified"
    assert len(emu.batches) == 1
