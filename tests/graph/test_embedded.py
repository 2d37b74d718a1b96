"""The embedded FalkorDB and store URIs: one shared server per data folder, data kept, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from extractor.errors import BadInput, ServiceUnavailable
from extractor.graph import commit_job, dump_graph, open_store, redact_uri
from extractor.graph.embedded import EmbeddedFalkorDB, socket_path_for
from tests.graph.helpers import VOCABULARY, job_j, many_docs

pytestmark = pytest.mark.graph
REPO = Path(__file__).resolve().parents[2]

# Opens the embedded store, reports the server's pid, commits, then holds on until told to go.
USER = """
import sys, time
from pathlib import Path
from extractor.graph import commit_job, open_store
from extractor.graph.embedded import EmbeddedFalkorDB
from tests.graph.helpers import VOCABULARY, job_j, job_k

data_dir, job, release = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with open_store("embedded", data_dir=data_dir) as store:
    print(EmbeddedFalkorDB(data_dir).pid, flush=True)
    commit_job(store, job, job_j() if job == "J" else job_k(), log_path=data_dir / f"{job}.json", vocabulary=VOCABULARY)
    print("committed", flush=True)
    while not release.exists():
        time.sleep(0.02)
"""


def start_user(data_dir: Path, job: str, release: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", USER, str(data_dir), job, str(release)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive: it waits only to be reaped
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_two_processes_share_one_server_and_the_last_stops_it(tmp_path):
    data_dir, release = tmp_path / "graph", tmp_path / "release"
    first = start_user(data_dir, "J", release)
    second = None
    try:
        pid = int(first.stdout.readline())
        assert first.stdout.readline().strip() == "committed"
        second = start_user(data_dir, "K", release)
        assert int(second.stdout.readline()) == pid
        assert second.stdout.readline().strip() == "committed"
        assert alive(pid)
        release.touch()
        assert first.wait(timeout=30) == 0 and second.wait(timeout=30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid), "the last user did not stop the server"
    assert not (data_dir / "falkordb.pid").exists()
    assert "DB saved on disk" in (data_dir / "falkordb.log").read_text()

    # the data outlived the server: a new one loads both jobs
    with open_store("embedded", data_dir=data_dir) as store:
        jobs = {job for item in dump_graph(store) if item["kind"] == "node" for job in item["properties"]["jobs"]}
        assert jobs == {"J", "K"}
        assert EmbeddedFalkorDB(data_dir).pid != pid


def test_same_process_users_share_the_server(tmp_path):
    with open_store("embedded", data_dir=tmp_path) as first:
        pid = EmbeddedFalkorDB(tmp_path).pid
        with open_store("embedded", data_dir=tmp_path, database="other") as second:
            assert EmbeddedFalkorDB(tmp_path).pid == pid
            commit_job(second, "J", job_j(), log_path=tmp_path / "J.json", vocabulary=VOCABULARY)
        assert alive(pid)  # the first user still holds it
        assert dump_graph(first) == []  # another graph name, another graph
    assert not alive(pid)


def test_a_long_data_dir_gets_a_short_socket_path(tmp_path):
    data_dir = tmp_path / ("a-rather-long-folder-name-" * 5)
    socket_path = socket_path_for(data_dir.resolve())
    assert len(os.fsencode(socket_path)) <= 100 and socket_path.parent == Path("/tmp")
    with open_store("embedded", data_dir=data_dir) as store:
        commit_job(store, "J", job_j(), log_path=data_dir / "J.json", vocabulary=VOCABULARY)
        assert socket_path.exists()
    assert not socket_path.exists()


def test_an_unreachable_falkordb_names_the_uri():
    with (
        pytest.raises(ServiceUnavailable, match=r"FalkorDB at falkordb://127\.0\.0\.1:1/g is unreachable"),
        open_store("falkordb://127.0.0.1:1/g", data_dir=Path("unused")),
    ):
        pass


def test_credentials_never_appear_in_messages():
    with (
        pytest.raises(ServiceUnavailable) as caught,
        open_store("falkordb://admin:s3cret@127.0.0.1:1/g", data_dir=Path("unused")),
    ):
        pass
    assert "s3cret" not in caught.value.message and "falkordb://127.0.0.1:1/g" in caught.value.message
    assert redact_uri("neo4j+s://neo4j:pw@db.example.com:7687") == "neo4j+s://db.example.com:7687"


def test_unknown_uri_scheme_is_bad_input():
    with (
        pytest.raises(BadInput, match=r"unknown graph URI 'redis://127.0.0.1:6379'"),
        open_store("redis://127.0.0.1:6379", data_dir=Path("unused")),
    ):
        pass


def test_a_bad_graph_name_is_bad_input(tmp_path):
    with (
        pytest.raises(BadInput, match="graph name 'a b'"),
        open_store("falkordb://127.0.0.1:1/a b", data_dir=tmp_path),
    ):
        pass


def test_a_server_that_cannot_start_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr("extractor.graph.embedded.SAVE_POINTS", "not a save point")
    with pytest.raises(ServiceUnavailable) as caught, open_store("embedded", data_dir=tmp_path):
        pass
    # one line: the server's own complaint (its warning, not the log's last line) and where to read more
    assert caught.value.message == (
        "the embedded FalkorDB server exited at start (code 1): Invalid save parameters"
        f" — see {tmp_path / 'falkordb.log'}"
    )


def test_a_killed_server_leaves_its_data_and_the_next_open_starts_another(tmp_path):
    with open_store("embedded", data_dir=tmp_path) as store:
        commit_job(store, "J", job_j(), log_path=tmp_path / "J.json", vocabulary=VOCABULARY)
        committed = dump_graph(store)
        pid = EmbeddedFalkorDB(tmp_path).pid
        os.kill(pid, signal.SIGKILL)  # no SHUTDOWN, no final save: only the append-only file has the data
    assert (tmp_path / "falkordb.pid").exists()  # stale, like the socket file
    with open_store("embedded", data_dir=tmp_path) as store:
        assert EmbeddedFalkorDB(tmp_path).pid != pid
        assert dump_graph(store) == committed


def test_a_reopen_while_the_server_replays_transactions_does_not_crash_it(tmp_path, monkeypatch):
    # The server replays each chunk's MULTI/EXEC from its append-only file at start; a command
    # reaching it meanwhile aborted it ('!server.in_exec'). No rewrite at stop keeps the replay.
    monkeypatch.setattr("extractor.graph.embedded.REWRITE_MIN_BYTES", 1 << 62)
    with open_store("embedded", data_dir=tmp_path) as store:
        commit_job(store, "J", many_docs(600), log_path=tmp_path / "J.json", vocabulary=VOCABULARY, chunk_size=50)
        committed = dump_graph(store)
    for _ in range(2):
        with open_store("embedded", data_dir=tmp_path) as store:
            assert dump_graph(store) == committed
    log = (tmp_path / "falkordb.log").read_text()
    assert log.count("DB loaded from incr file") == 2 and "ASSERTION FAILED" not in log


def test_the_last_user_rewrites_the_append_only_file_so_a_restart_loads_a_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr("extractor.graph.embedded.REWRITE_MIN_BYTES", 1)
    with open_store("embedded", data_dir=tmp_path) as store:
        commit_job(store, "J", many_docs(100), log_path=tmp_path / "J.json", vocabulary=VOCABULARY, chunk_size=50)
        committed = dump_graph(store)
    incremental = list((tmp_path / "appendonlydir").glob("*.incr.aof"))
    assert [path.stat().st_size for path in incremental] == [0]  # every command folded into the RDB base
    with open_store("embedded", data_dir=tmp_path) as store:
        assert dump_graph(store) == committed
    assert "DB loaded from incr file" not in (tmp_path / "falkordb.log").read_text()
