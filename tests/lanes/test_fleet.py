"""The local lane across several servers: shared queue, dead and stalled servers, 429 + Retry-After, hedging.

Two real llama.cpp servers share a job; the failure cases run against scripted stub servers over real HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor.errors import BadInput
from extractor.lanes.embedded_llm import model_path
from extractor.lanes.fleet import (
    FleetServer,
    display_url,
    parse_concurrency,
    parse_hedge_after,
    resolve_urls,
    retry_after_s,
)
from extractor.lanes.local import run_local_lane
from extractor.storage import atomic_write_jsonl, iter_jsonl
from tests.llm_fixtures import (
    LANE_SCRIPT,
    REPO,
    StubChatServer,
    chat_completion,
    free_port,
    request_line,
    request_lines,
    spawn_llama,
)


def rows(path: Path) -> list[dict]:
    return list(iter_jsonl(path)) if path.exists() else []


def text_of(body: dict) -> str:
    return body["messages"][1]["content"]


def lines_of(count: int) -> list[dict]:
    return [request_line(f"doc-{i:03d}", f"document {i}") for i in range(count)]


class Gauge:
    """Requests in flight at a stub, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            return self.now

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def steady(delay: float, gauge: Gauge | None = None, stub_ref: list | None = None):
    """A script answering every request after `delay`; hangs up on requests in flight when its stub is killed."""

    def script(n: int, body: dict):
        with gauge or Gauge():
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if stub_ref and stub_ref[0].down:
                    return None
                time.sleep(0.01)
        return 0.0, 200, chat_completion(completion_tokens=3)

    return script


# --- real llama.cpp servers ----------------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.slow
def test_two_llama_servers_share_one_job_and_answer_each_document_once(tmp_path: Path, model_cache: Path) -> None:
    model = model_path(model_cache / "models")
    ports = [free_port(), free_port()]
    with ThreadPoolExecutor(max_workers=2) as pool:  # both load their model at once
        servers = list(pool.map(lambda port: spawn_llama(model, port, slots=1), ports))
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        lines = request_lines(6, max_tokens=8, chars=120)
        out = tmp_path / "output.jsonl"
        stats = run_local_lane(iter(lines), output_path=out, error_path=tmp_path / "errors.jsonl", base_url=urls)
    finally:
        for server in servers:
            server.kill()
            server.wait()
    answers = rows(out)
    assert Counter(r["custom_id"] for r in answers) == Counter(line["custom_id"] for line in lines)
    by_server = Counter(r["server"] for r in answers)
    assert set(by_server) == set(urls), by_server  # both took part
    assert (stats.answered, stats.failed, stats.concurrency) == (6, 0, 2)  # one slot each, read from /props
    figures = {s["url"]: s for s in stats.servers}
    assert all(figures[u]["answered"] == by_server[u] and figures[u]["concurrency_source"] == "slots" for u in urls)
    assert all(figures[u]["p50_ms"] > 0 and figures[u]["completion_tokens"] > 0 for u in urls)


# --- scripted stubs: failures ------------------------------------------------------------------------


def test_a_killed_server_costs_nothing_and_rejoins_when_back(tmp_path: Path) -> None:
    a_ref: list = []
    b_ref: list = []
    a = StubChatServer(steady(0.05, stub_ref=a_ref), slots=2).start()
    b = StubChatServer(steady(0.05, stub_ref=b_ref), slots=2).start()
    a_ref.append(a)
    b_ref.append(b)
    port = int(b.url.rsplit(":", 1)[1])
    lines = lines_of(60)
    out = tmp_path / "output.jsonl"
    notices: list[str] = []
    events: list[dict] = []
    outcome: dict = {}

    def lane() -> None:
        outcome["stats"] = run_local_lane(
            iter(lines),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=[a.url, b.url],
            notice=notices.append,
            log=events.append,
        )

    thread = threading.Thread(target=lane)
    thread.start()
    try:
        while len(rows(out)) < 10:
            time.sleep(0.01)
        b.stop()  # its requests in flight are hung up on, like a process killed with -9
        while not any("stopped answering" in n for n in notices):
            time.sleep(0.01)
        time.sleep(0.3)
        b2_ref: list = []
        b2 = StubChatServer(steady(0.05, stub_ref=b2_ref), slots=2, port=port).start()
        b2_ref.append(b2)
        thread.join(timeout=60)
    finally:
        a.stop()
        b2.stop()
    stats = outcome["stats"]
    answers = rows(out)
    assert Counter(r["custom_id"] for r in answers) == Counter(
        line["custom_id"] for line in lines
    )  # none lost, none twice
    assert (stats.answered, stats.failed) == (60, 0)
    assert any(n.startswith(f"{b.url} stopped answering") and "other 1 server" in n for n in notices)
    assert any(n == f"{b.url} is back; carrying on" for n in notices)
    kinds = [e["event"] for e in events]
    assert kinds.count("server_down") == 1 and kinds.count("server_back") == 1
    back = kinds.index("server_back")
    assert any(e.get("server") == b.url for e in events[back:] if e["event"] == "request"), "b never rejoined"
    assert b2.bodies, "the restarted server got no work"


def test_a_stalled_server_gives_its_requests_back_after_the_timeout(tmp_path: Path) -> None:
    a = StubChatServer(steady(0.03), slots=2).start()
    b = StubChatServer(steady(0.03), slots=2).start()
    lines = lines_of(40)
    out = tmp_path / "output.jsonl"
    notices: list[str] = []
    outcome: dict = {}

    def lane() -> None:
        outcome["stats"] = run_local_lane(
            iter(lines),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=[a.url, b.url],
            timeout_s=2.0,
            notice=notices.append,
        )

    thread = threading.Thread(target=lane)
    try:
        thread.start()
        while len(rows(out)) < 5:
            time.sleep(0.01)
        b.stalled = True  # accepts requests, answers /health, never answers a chat request
        stalled_at = time.monotonic()
        thread.join(timeout=60)
        took = time.monotonic() - stalled_at
    finally:
        b.stalled = False
        a.stop()
        b.stop()
    stats = outcome["stats"]
    assert Counter(r["custom_id"] for r in rows(out)) == Counter(line["custom_id"] for line in lines)
    assert (stats.answered, stats.failed) == (40, 0)
    assert any(n.startswith(f"{b.url} stopped answering (2 requests in a row got no answer") for n in notices)
    figures = {s["url"]: s for s in stats.servers}
    assert figures[b.url]["timeouts"] >= 2 and figures[b.url]["outages"] == 1
    # Bounded by the timeout: the stalled requests came back after ~2-4 s, not after the stall ended.
    assert took < 20


def test_429_with_retry_after_lowers_concurrency_and_pauses_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = 2
    gauge = Gauge()
    refusals = 0
    lock = threading.Lock()

    def script(n: int, body: dict):
        nonlocal refusals
        with lock:
            busy = gauge.now >= allowed
            refusals += busy
        if busy:  # OpenRouter-style: 429 with Retry-After in seconds
            return 0.0, 429, {"error": {"code": 429, "message": "Rate limit exceeded"}}, {"Retry-After": "1"}
        with gauge:
            time.sleep(0.05)
        return 0.0, 200, chat_completion()

    # When the lane sends, seen from the lane (the stub's clock would add thread-scheduling delays).
    sends: list[float] = []
    original = FleetServer.sent
    monkeypatch.setattr(FleetServer, "sent", lambda self: (sends.append(time.monotonic()), original(self))[1])
    events: list[tuple[float, dict]] = []
    lines = lines_of(20)
    out = tmp_path / "output.jsonl"
    with StubChatServer(script) as stub:
        stats = run_local_lane(
            iter(lines),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=stub.url,
            concurrency=8,
            log=lambda e: events.append((time.monotonic(), e)),
        )
    assert Counter(r["custom_id"] for r in rows(out)) == Counter(line["custom_id"] for line in lines)
    assert stats.failed == 0 and stats.rate_limited == refusals >= 1
    [server] = stats.servers
    assert server["concurrency_max"] == 8 and server["rate_limited"] == refusals
    assert server["concurrency_final"] < 8  # cut on the 429s, and 20 answers are too few to grow back to 8
    rate_limited = [t for t, e in events if e["event"] == "retry" and e["status"] == 429]
    assert len(rate_limited) == refusals
    # Retry-After: 1 — the lane sent nothing for a second after it read each 429.
    for read in rate_limited:
        assert not [t for t in sends if read < t < read + 0.95], "sent during the Retry-After pause"


def test_a_late_duplicate_of_a_hedged_request_is_logged_not_written(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def script(n: int, body: dict):
        text = text_of(body)
        with lock:
            seen[text] += 1
            first = seen[text] == 1
        if text == "document 39" and first:
            return 1.5, 200, chat_completion(prompt_tokens=11, completion_tokens=9)  # the slow tail
        return 0.02, 200, chat_completion()

    lines = lines_of(40)
    out = tmp_path / "output.jsonl"
    events: list[dict] = []
    a, b = StubChatServer(script, slots=1).start(), StubChatServer(script, slots=1).start()
    try:
        stats = run_local_lane(
            iter(lines),
            output_path=out,
            error_path=tmp_path / "errors.jsonl",
            base_url=[a.url, b.url],
            hedge_after=0.95,
            log=events.append,
        )
        time.sleep(0.1)
    finally:
        a.stop()
        b.stop()
    assert Counter(r["custom_id"] for r in rows(out)) == Counter(line["custom_id"] for line in lines)
    assert seen["document 39"] == 2  # sent again once it outlived p95
    [kept] = [r for r in rows(out) if r["custom_id"] == "doc-039"]
    [late] = [e for e in events if e["event"] == "duplicate_answer" and e["custom_id"] == "doc-039"]
    assert late["server"] != kept["server"] and late["latency_ms"] >= 1400  # the first answer kept, the slow one logged
    assert (late["prompt_tokens"], late["completion_tokens"]) == (11, 9)
    duplicates = [e for e in events if e["event"] == "duplicate_answer"]
    assert stats.duplicates == len(duplicates) and stats.hedged >= 1
    assert stats.duplicate_completion_tokens == sum(e["completion_tokens"] for e in duplicates)
    assert stats.hedged == len([e for e in events if e["event"] == "hedge"])


def test_without_hedging_a_slow_request_is_sent_once(tmp_path: Path) -> None:
    def script(n: int, body: dict):
        return (0.6 if text_of(body) == "document 24" else 0.01), 200, chat_completion()

    with StubChatServer(script, slots=1) as a, StubChatServer(script, slots=1) as b:
        stats = run_local_lane(
            iter(lines_of(25)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=[a.url, b.url],
        )
    assert [text_of(x) for x in a.bodies + b.bodies].count("document 24") == 1
    assert (stats.answered, stats.hedged, stats.duplicates) == (25, 0, 0)


def test_a_fast_server_does_more_of_the_work(tmp_path: Path) -> None:
    with StubChatServer(steady(0.01), slots=2) as fast, StubChatServer(steady(0.5), slots=2) as slow:
        stats = run_local_lane(
            iter(lines_of(60)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=[slow.url, fast.url],
        )
    figures = {s["url"]: s for s in stats.servers}
    # 50x faster at the stub; on a loaded machine the client's own delays shrink that, hence only 2x here
    assert figures[fast.url]["answered"] > 2 * figures[slow.url]["answered"] >= 2
    assert stats.answered == 60


def test_kill_9_of_the_lane_then_rerun_sends_only_the_missing(tmp_path: Path) -> None:
    lines = lines_of(120)
    atomic_write_jsonl(tmp_path / "requests.jsonl", lines)
    out = tmp_path / "output.jsonl"
    with StubChatServer(steady(0.05), slots=2) as a, StubChatServer(steady(0.05), slots=2) as b:
        lane = subprocess.Popen(
            [sys.executable, "-c", LANE_SCRIPT, f"{a.url},{b.url}", str(tmp_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            while len(rows(out)) < 20:
                time.sleep(0.01)
        finally:
            lane.send_signal(signal.SIGKILL)
            lane.wait()
        landed = {r["custom_id"] for r in rows(out)}
        assert 20 <= len(landed) < len(lines)
        before = (len(a.bodies), len(b.bodies))
        stats = run_local_lane(
            iter(lines), output_path=out, error_path=tmp_path / "errors.jsonl", base_url=[a.url, b.url]
        )
        bodies = a.bodies[before[0] :] + b.bodies[before[1] :]
        resent = sorted(f"doc-{int(text_of(x).split()[1]):03d}" for x in bodies)
    assert resent == sorted({line["custom_id"] for line in lines} - landed)
    assert stats.skipped_already_done == len(landed)
    assert set(Counter(r["custom_id"] for r in rows(out)).values()) == {1}


def test_every_server_down_is_exit_4_naming_each(tmp_path: Path) -> None:
    from extractor.errors import ServiceUnavailable

    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with pytest.raises(ServiceUnavailable) as caught:
        run_local_lane(
            iter(lines_of(2)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=urls,
            server_wait_s=1,
        )
    assert "any of 2 servers" in caught.value.message
    assert all(f"{u}: connection refused" in caught.value.message for u in urls)


def test_one_server_down_at_start_the_other_does_the_night(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    notices: list[str] = []
    with StubChatServer() as alive:
        stats = run_local_lane(
            iter(lines_of(5)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=[dead, alive.url],
            server_wait_s=5,
            notice=notices.append,
        )
    assert stats.answered == 5 and {r["server"] for r in rows(tmp_path / "o.jsonl")} == {alive.url}


# --- the pieces, without servers -----------------------------------------------------------------------


def test_aimd_halves_once_per_round_trip_and_grows_back_slowly() -> None:
    server = FleetServer("http://h", "http://h", "http://h/v1", max_concurrency=8, source="given")
    server.start(0.0)
    assert server.congested(sent_at=1.0, now=2.0) and server.limit == 4
    assert not server.congested(sent_at=1.5, now=2.1)  # sent before the cut: already answered for
    assert server.congested(sent_at=2.2, now=3.0) and server.limit == 2
    for _ in range(2):
        server.answered(10.0, 1, 1, 4.0)
    assert 2.8 < server.limit < 3.0  # about +1 per `limit` clean answers: 2 + 1/2 + 1/2.5
    for _ in range(100):
        server.answered(10.0, 1, 1, 5.0)
    assert server.limit == 8 and server.capacity() == 8  # never past the maximum
    for _ in range(10):
        server.congested(sent_at=10.0 + _, now=10.5 + _)
    assert server.capacity() == 1  # never below one


def test_retry_after_forms() -> None:
    assert retry_after_s({"Retry-After": "3"}) == 3
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # OpenAI's finer header wins
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < retry_after_s({"Retry-After": format_datetime(when, usegmt=True)}) <= 30
    assert retry_after_s({"Retry-After": "86400"}) == 300  # capped: the lane probes again rather than sleep all night
    assert retry_after_s({"Retry-After": "soon"}) is None and retry_after_s({}) is None
    assert retry_after_s({"Retry-After": "-5"}) == 0


@given(st.dictionaries(st.sampled_from(["Retry-After", "retry-after-ms", "X-Other"]), st.text(max_size=40)))
@settings(max_examples=300, deadline=None)
def test_retry_after_never_raises_on_what_a_server_sends(headers: dict[str, str]) -> None:
    delay = retry_after_s(headers)
    assert delay is None or 0 <= delay <= 300


def test_concurrency_flags() -> None:
    assert parse_concurrency(None) == (None, {})
    assert parse_concurrency(["3", "http://u:p@gpu:8000/v1/=16"]) == (3, {"http://gpu:8000": 16})
    for bad in (["0"], ["x"], ["http://h=-1"], ["http://h="]):
        with pytest.raises(BadInput, match="--concurrency"):
            parse_concurrency(bad)
    assert parse_hedge_after("p95") == 0.95 and parse_hedge_after("99.9") == pytest.approx(0.999)
    assert parse_hedge_after(None) is None
    for bad in ("p100", "p10", "fast"):
        with pytest.raises(BadInput, match="--hedge-after"):
            parse_hedge_after(bad)


def test_urls_from_flags_or_environment_never_show_userinfo() -> None:
    env = {"EXTRACTOR_LOCAL_URLS": " http://a:8080 , http://b:8080/v1,"}
    assert resolve_urls(None, env) == ["http://a:8080", "http://b:8080/v1"]
    assert resolve_urls(["http://c:1"], env) == ["http://c:1"]  # flags win over the environment
    with pytest.raises(BadInput, match="given twice"):
        resolve_urls(["http://a:8080", "http://a:8080/v1"], {})
    assert display_url("https://user:s3cret@host.example:8443/v1/") == "https://host.example:8443/v1"
    assert "s3cret" not in display_url("http://:s3cret@h")


def test_concurrency_for_a_server_not_in_the_fleet_is_bad_input(tmp_path: Path) -> None:
    with StubChatServer() as stub, pytest.raises(BadInput, match="not one of the --local-url servers"):
        run_local_lane(
            iter(lines_of(1)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=[stub.url],
            concurrency_by_url={"http://elsewhere:1": 2},
        )


def test_output_lines_and_logs_name_the_server_without_its_password(tmp_path: Path) -> None:
    events: list[dict] = []
    notices: list[str] = []
    with StubChatServer() as stub:
        url = stub.url.replace("http://", "http://user:s3cret@")
        run_local_lane(
            iter(lines_of(2)),
            output_path=tmp_path / "o.jsonl",
            error_path=tmp_path / "e.jsonl",
            base_url=[url],
            log=events.append,
            notice=notices.append,
        )
    assert {r["server"] for r in rows(tmp_path / "o.jsonl")} == {stub.url}
    assert b"s3cret" not in (tmp_path / "o.jsonl").read_bytes()
    assert "s3cret" not in orjson.dumps(events).decode() + "".join(notices)


# --- the CLI: flags, environment, status and ledger -----------------------------------------------------


def test_cli_fleet_with_per_server_concurrency_status_and_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extractor.reports.ledger import Ledger
    from tests.job_fixtures import invoke, invoke_json, store
    from tests.llm_fixtures import redocred_texts

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(redocred_texts(8)):
        (docs / f"doc-{i}.txt").write_text(text[:200] + "\n", encoding="utf-8")
    gauges = [Gauge(), Gauge()]
    a, b = StubChatServer(steady(0.05, gauges[0]), slots=4), StubChatServer(steady(0.05, gauges[1]))
    with a, b:
        monkeypatch.setenv("EXTRACTOR_LOCAL_URLS", f"{a.url},{b.url}")  # cron's way; --concurrency names one
        data = invoke_json(
            "run", str(docs), "--no-commit", "--concurrency", f"{b.url}=1", "--concurrency", "3", codes=(0, 3, 6)
        )
    job_id = data["job_id"]
    assert store().load(job_id).manifest["remote"]["stats"]["answered"] == 8
    assert (gauges[0].peak, gauges[1].peak) == (3, 1)  # N for every server, URL=N for one: both over /props' 4
    status = invoke_json("status", job_id)
    servers = {s["url"]: s for s in status["servers"]}
    assert set(servers) == {a.url, b.url}
    assert sum(s["documents"] for s in servers.values()) == 8
    assert servers[b.url]["concurrency"]["max"] == 1 and servers[a.url]["concurrency"]["source"] == "given"
    assert all(s["p50_ms"] >= 50 and s["p99_ms"] >= s["p50_ms"] for s in servers.values() if s["documents"])
    shown = invoke("status", job_id)
    assert shown.exit_code == 0 and "local servers (latest run)" in shown.stdout
    assert invoke("report").exit_code == 0  # syncs the ledger
    with Ledger.for_jobs(store()) as ledger:
        rows = ledger.servers(job_id)
        answers = ledger.requests(job_id)
        [job] = [j for j in ledger.jobs() if j["job_id"] == job_id]
    assert {(r["run"], r["url"]) for r in rows} == {("local-1", a.url), ("local-1", b.url)}
    assert sum(r["answered"] for r in rows) == 8 and all(r["p95_ms"] is not None for r in rows if r["answered"])
    assert Counter(r["server"] for r in answers) == Counter(
        {u: s["documents"] for u, s in servers.items() if s["documents"]}
    )
    assert (job["hedged"], job["hedge_duplicates"]) == (0, 0)


def test_cli_rejects_bad_fleet_flags(tmp_path: Path) -> None:
    from tests.job_fixtures import invoke

    result = invoke("submit", str(tmp_path), "--concurrency", "http://h:1=0")
    assert result.exit_code == 2 and "--concurrency" in result.stderr
    result = invoke("submit", str(tmp_path), "--hedge-after", "p10")
    assert result.exit_code == 2 and "--hedge-after" in result.stderr and "p95" in result.stderr


def test_backend_auto_takes_the_local_lane_when_any_server_of_the_fleet_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from extractor.lanes.submit import SubmitOptions, choose_backend

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    with StubChatServer() as alive:
        started = time.monotonic()
        choice = choose_backend(SubmitOptions(local_url=[dead, alive.url]), timeout_s=20)
        assert time.monotonic() - started < 10  # did not wait out the dead server's timeout
    assert choice.backend == "local" and f"{alive.url} (of 2 servers) passed" in choice.reason
    with pytest.raises(BadInput, match="OPENAI_API_KEY is not set"):
        choose_backend(SubmitOptions(local_url=[dead]), timeout_s=1)


def test_cli_hedging_is_counted_in_status_and_the_ledger(tmp_path: Path) -> None:
    from extractor.reports.ledger import Ledger
    from tests.job_fixtures import invoke, invoke_json, store
    from tests.llm_fixtures import redocred_texts

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(redocred_texts(30)):
        (docs / f"doc-{i:02d}.txt").write_text(text[:150] + "\n", encoding="utf-8")
    count = 0
    lock = threading.Lock()

    def script(n: int, body: dict):
        nonlocal count
        with lock:
            count += 1
            mine = count
        if mine == 26:  # one request of the tail hangs on its server; its hedge answers first elsewhere
            return 2.0, 200, chat_completion(prompt_tokens=40, completion_tokens=7)
        return 0.02, 200, chat_completion()

    with StubChatServer(script, slots=1) as a, StubChatServer(script, slots=1) as b:
        data = invoke_json(
            "run",
            str(docs),
            "--no-commit",
            "--local-url",
            a.url,
            "--local-url",
            b.url,
            "--hedge-after",
            "p95",
            codes=(0, 3, 6),
        )
    job = store().load(data["job_id"])
    events = list(iter_jsonl(job.log_path))
    hedges = [e for e in events if e["event"] == "hedge"]
    late = [e for e in events if e["event"] == "duplicate_answer"]
    assert hedges and any(e["completion_tokens"] == 7 and e["latency_ms"] >= 1900 for e in late)
    assert Counter(r["custom_id"] for r in rows(job.output_dir / "local.jsonl")).most_common(1)[0][1] == 1
    status = invoke_json("status", job.id)
    assert status["hedging"]["hedged"] == len(hedges) and status["hedging"]["duplicates"] == len(late)
    assert invoke("report").exit_code == 0
    with Ledger.for_jobs(store()) as ledger:
        [row] = [j for j in ledger.jobs() if j["job_id"] == job.id]
    assert (row["hedged"], row["hedge_duplicates"]) == (len(hedges), len(late))
    assert row["hedge_completion_tokens"] == sum(e["completion_tokens"] for e in late)
