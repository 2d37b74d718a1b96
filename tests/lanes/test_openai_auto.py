"""`submit --backend auto`: the local lane when it is healthy, else the OpenAI Batch lane; the choice is recorded."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from extractor.cli import app
from extractor.jobs import JobStore
from extractor.lanes.submit import SubmitOptions, choose_backend
from tests.openai_emulator import BatchEmulator
from tests.redocred import load_redocred, write_documents

runner = CliRunner()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write_documents(load_redocred()[:2], tmp_path / "docs")
    return tmp_path / "docs"


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def only_job() -> dict:
    [job] = list(JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"])))
    return job.manifest


def test_auto_falls_back_to_openai_when_the_local_server_is_down(emu: BatchEmulator, docs: Path, dead_url: str) -> None:
    result = runner.invoke(
        app,
        ["submit", str(docs), "--backend", "auto", "--local-url", dead_url, "--health-timeout", "0.5", "--json"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.stderr
    manifest = only_job()
    assert manifest["backend"] == "openai" and manifest["model"] == "gpt-5.4-mini"
    choice = manifest["backend_choice"]
    assert (choice["requested"], choice["chosen"]) == ("auto", "openai")
    assert choice["reason"].startswith(f"local lane unavailable: {dead_url}: no chat server answering at {dead_url}")
    assert choice["reason"].endswith("— using the OpenAI Batch API")
    assert orjson.loads(result.stdout)["backend_choice"] == choice
    assert len(emu.batches) == 1


def test_auto_without_either_lane_says_what_to_do(docs: Path, dead_url: str) -> None:
    result = runner.invoke(
        app,
        ["submit", str(docs), "--backend", "auto", "--local-url", dead_url, "--health-timeout", "0.2"],
        catch_exceptions=False,
    )

    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "and OPENAI_API_KEY is not set — start the local server, or set OPENAI_API_KEY for the OpenAI Batch lane"
    )


@pytest.mark.llm
def test_auto_takes_a_healthy_local_server(llama_url: str) -> None:
    # The choice alone: a warm-up request of one token, not a whole local run.
    choice = choose_backend(SubmitOptions(local_url=llama_url), timeout_s=120)

    assert choice.backend == "local"
    assert choice.reason.startswith(f"{llama_url} passed its health check and a warm-up request in ")
    assert choice.as_dict() == {"requested": "auto", "chosen": "local", "reason": choice.reason}


def test_prepare_auto_resolves_the_lane_says_so_and_records_it(docs: Path, dead_url: str, monkeypatch) -> None:
    # prepare sends nothing, so a key is enough for the OpenAI lane to be chosen; no silent `local`.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-sent")
    result = runner.invoke(
        app,
        ["prepare", str(docs), "--backend", "auto", "--local-url", dead_url, "--health-timeout", "0.3", "--json"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.stderr
    manifest = only_job()
    assert manifest["backend"] == "openai" and manifest["backend_choice"]["chosen"] == "openai"
    assert orjson.loads(result.stdout)["backend_choice"] == manifest["backend_choice"]
    assert result.stderr.startswith(f"note: --backend auto chose openai: local lane unavailable: {dead_url}:")


def test_prepare_auto_without_either_lane_prepares_nothing(docs: Path, dead_url: str, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(
        app,
        ["prepare", str(docs), "--backend", "auto", "--local-url", dead_url, "--health-timeout", "0.2"],
        catch_exceptions=False,
    )

    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set" in result.stderr
    assert list(JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))) == []
