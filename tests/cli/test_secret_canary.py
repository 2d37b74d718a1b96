"""One canary secret, every server kind made to echo it, and nothing anywhere holds it afterwards (issue 15).

The OpenAI Batch emulator (real HTTP, the real `openai` SDK) quotes a rejected key in its 401; a local chat
server does the same; the same canary is the password in a --local-url, a FalkorDB URL and NEO4J_PASSWORD.
Then every file under the test's folder (jobs dir, ledger, data dir) and every byte of captured output is
searched for it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from extractor.cli import app
from tests.chat_stub import ChatStub
from tests.openai_emulator import BatchEmulator, Behaviour

runner = CliRunner()


def test_a_canary_key_echoed_by_every_server_is_found_nowhere(
    docs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "sk-canary-" + secrets.token_hex(12)
    captured: list[str] = []

    def cli(*args: str, codes: tuple[int, ...]) -> None:
        result = runner.invoke(app, ["--debug", *args], catch_exceptions=False)
        captured.append(result.stdout + result.stderr)
        assert result.exit_code in codes, (args, result.exit_code, result.stderr)

    # 1. the OpenAI Batch API (emulated) rejects the key and quotes it in full; --debug prints the traceback
    with BatchEmulator(behaviour=Behaviour(echo_key_in_errors=True)) as emu:
        monkeypatch.setenv("OPENAI_API_KEY", canary)
        monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
        cli("submit", str(docs_dir), "--backend", "openai", codes=(2,))
        assert "Incorrect API key provided: ***" in captured[-1] and "Traceback" in captured[-1]
        # ... and the same key accepted: a whole submit, its files and log
        monkeypatch.setenv("OPENAI_API_KEY", emu.api_key)
        cli("submit", str(docs_dir), "--backend", "openai", "--json", codes=(0,))
        assert emu.calls  # the SDK really talked to it
        emu.api_key = canary  # from now on the accepted key is the canary itself
        monkeypatch.setenv("OPENAI_API_KEY", canary)
        cli("status", "--json", codes=(0,))

    # 2. a local chat server that quotes the bearer key in its 401, then one that accepts it
    monkeypatch.setenv("EXTRACTOR_LOCAL_API_KEY", canary)
    with ChatStub(api_key="the-right-key", echo_key=True) as server:
        cli("submit", str(docs_dir), "--local-url", server.url(), codes=(2,))
        assert "Invalid API Key: Bearer ***" in captured[-1]
    with ChatStub() as server:  # userinfo in the URL makes HTTP clients send Basic auth (a proxy's), not the bearer
        cli("run", str(docs_dir), "--local-url", server.url(f"night:{canary}"), "--no-commit", "--json", codes=(0, 3))
        cli("run", str(docs_dir), "--local-url", f"http://night:{canary}@127.0.0.1:1", "--json", codes=(0, 2, 4))

    # 3. graph URLs with the canary as password, and NEO4J_PASSWORD: unreachable servers, errors quoting the URL
    jobs = sorted(p for p in (tmp_path / "jobs").iterdir() if (p / "job.json").is_file())
    verified = [p.name for p in jobs if '"verified"' in (p / "job.json").read_text()]
    assert verified, "the local run should have left a verified job"
    cli("commit", verified[0], "--graph", f"falkordb://night:{canary}@127.0.0.1:1/staging", codes=(2, 4))
    cli("commit", verified[0], "--graph", f"bolt://neo4j:{canary}@127.0.0.1:1", codes=(2, 4))
    monkeypatch.setenv("NEO4J_PASSWORD", canary)
    cli("commit", verified[0], "--graph", "bolt://127.0.0.1:1", codes=(2, 4))
    cli("report", "--json", codes=(0,))  # syncs the ledger from every job folder

    needle = canary.encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".ledger.sqlite") for p in files)
    assert any(p.name == "log.jsonl" for p in files)
    leaks = [str(p) for p in files if needle in p.read_bytes()]
    assert leaks == []
    for output in captured:
        assert canary not in output
