"""`extractor commit` / `rollback` through the CLI on both real stores: kill -9 mid-commit and resume,
a second commit that changes nothing, `--database`, credentials kept out of everything we write,
Neo4j's own errors as one line, and the same three jobs giving the same graph in both stores."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from extractor.graph import commit_job, dump_graph, open_store
from extractor.graph.publishing import commit_documents, vocabulary_for
from extractor.jobs import Job
from extractor.storage import read_json
from tests.graph.helpers import GraphTarget, clear
from tests.job_fixtures import cli_process
from tests.verify_fixtures import answer, ingest, invoke, prepare, verify, write_docs

pytestmark = pytest.mark.graph

PEOPLE = ["Ada Lovelace", "Charles Babbage", "Mary Somerville", "Michael Faraday"]
PLACES = ["London", "Paris", "Turin"]


def text_and_answer(i: int) -> tuple[str, dict]:
    """Document i and an answer every fact of which its own text grounds (people and places shared across documents)."""
    person, other, place = PEOPLE[i % 4], PEOPLE[(i + 1) % 4], PLACES[i % 3]
    work = f"Memoir {i}"
    text = f"{person} wrote to {other} from {place}. {work} was read aloud in {place}."
    return text, answer(
        [(person, "PERSON"), (other, "PERSON"), (place, "LOCATION"), (work, "WORK")],
        [(person, "LOCATED_IN", place, f"{person} wrote to {other} from {place}"),
         (person, "RELATED_TO", other, f"{person} wrote to {other}")],
    )  # fmt: skip


def verified_job(tmp_path: Path, name: str, indexes: range) -> Job:
    """A job over documents `indexes`, answered, collected and verified through the CLI: all clean."""
    texts, answers = {}, {}
    for i in indexes:
        texts[f"doc{i:03d}.txt"], answers[f"doc{i:03d}.txt"] = text_and_answer(i)
    job = prepare(write_docs(tmp_path / name, texts))
    job = ingest(job, answers, tmp_path)
    code, report = verify(job)
    assert code == 0 and report["summary"]["clean"] == len(indexes), report["summary"]
    return job


def cli(*args: str, codes: tuple[int, ...] = (0,)) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code in codes, (result.exit_code, result.stderr)
    return orjson.loads(result.stdout)


def dump_of(target: GraphTarget) -> list[dict]:
    with target.open() as store:
        return dump_graph(store)


def test_commit_killed_mid_commit_resumes_where_it_stopped(graph_target, tmp_path):
    job = verified_job(tmp_path, "docs", range(12))
    with graph_target.open() as store:  # the graph the job gives, committed in one go elsewhere
        commit_job(
            store, job.id, commit_documents(job), log_path=tmp_path / "expected.json", vocabulary=vocabulary_for(job)
        )
        expected = dump_graph(store)
        clear(store)

    child = cli_process("commit", job.id, *graph_target.cli_args(), "--chunk-size", "3", crash_after="commit-chunk:2")
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    record = read_json(job.commit_path)["targets"]
    (log,) = record.values()
    assert (log["state"], log["chunks_planned"], len(log["chunks"])) == ("committing", 4, 2)
    assert dump_of(graph_target) != expected

    data = cli("commit", job.id, *graph_target.cli_args())
    assert (data["chunks"], data["resumed_chunks"], data["documents"]) == (4, 2, 12)
    assert dump_of(graph_target) == expected


def test_a_second_commit_through_the_cli_changes_nothing(graph_target, tmp_path):
    job = verified_job(tmp_path, "docs", range(5))
    first = cli("commit", job.id, *graph_target.cli_args(), "--chunk-size", "2")
    committed = dump_of(graph_target)
    second = cli("commit", job.id, *graph_target.cli_args())
    assert (first["chunks"], first["resumed_chunks"]) == (3, 0)
    assert (second["chunks"], second["resumed_chunks"], second["nodes_created"], second["relationships_created"]) == (
        3,
        3,
        0,
        0,
    )
    assert dump_of(graph_target) == committed


def test_rollback_through_the_cli_leaves_the_other_job(graph_target, tmp_path):
    earlier = verified_job(tmp_path, "earlier", range(0, 4))
    later = verified_job(tmp_path, "later", range(2, 7))  # two documents and every person shared
    cli("commit", earlier.id, *graph_target.cli_args())
    only_earlier = dump_of(graph_target)
    cli("commit", later.id, *graph_target.cli_args())
    rolled = cli("rollback", later.id, *graph_target.cli_args())
    assert rolled["documents"] == 5
    assert dump_of(graph_target) == only_earlier


def test_the_same_three_jobs_give_the_same_graph_in_both_stores(falkordb_server, neo4j_server, tmp_path, monkeypatch):
    jobs = [verified_job(tmp_path, f"night{n}", range(3 * n, 3 * n + 5)) for n in range(3)]
    falkordb = GraphTarget(
        "falkordb", "embedded", "test_cross_store", {"EXTRACTOR_DATA_DIR": str(falkordb_server.data_dir)}
    )
    neo4j = GraphTarget("neo4j", neo4j_server.uri, neo4j_server.database, neo4j_server.env())
    for name, value in {**falkordb.env, **neo4j.env}.items():
        monkeypatch.setenv(name, value)
    dumps = {}
    for target in (falkordb, neo4j):
        with target.open() as store:
            clear(store)
        for job in jobs:
            cli("commit", job.id, *target.cli_args(), "--chunk-size", "2")
        cli("rollback", jobs[1].id, *target.cli_args())
        cli("commit", jobs[1].id, *target.cli_args())  # again, after its rollback: the order of jobs changes
        dumps[target.kind] = dump_of(target)
        with target.open() as store:
            clear(store)
    assert len(dumps["neo4j"]) > 40
    assert dumps["falkordb"] == dumps["neo4j"]


# ---------------------------------------------------------------- --database


def test_database_names_the_graph_on_falkordb(falkordb_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EXTRACTOR_DATA_DIR", str(falkordb_server.data_dir))
    job = verified_job(tmp_path, "docs", range(3))
    cli("commit", job.id, "--graph", "embedded", "--database", "staging_cli")
    with open_store("embedded", database="staging_cli", data_dir=falkordb_server.data_dir) as staging:
        assert {
            item["properties"]["doc_id"] for item in dump_graph(staging) if "Document" in item.get("labels", [])
        } == {d["doc_id"] for d in job.documents()}
        with open_store("embedded", database="other_cli", data_dir=falkordb_server.data_dir) as other:
            assert dump_graph(other) == []
        cli("rollback", job.id, "--graph", "embedded", "--database", "staging_cli")
        assert dump_graph(staging) == []


def neo4j_env(monkeypatch: pytest.MonkeyPatch, neo4j_server) -> str:
    for name, value in neo4j_server.env().items():
        monkeypatch.setenv(name, value)
    return neo4j_server.uri


def test_database_names_the_database_on_neo4j(neo4j_server, tmp_path, monkeypatch):
    uri = neo4j_env(monkeypatch, neo4j_server)
    database = neo4j_server.database or "neo4j"  # Community has one database: name it explicitly
    job = verified_job(tmp_path, "docs", range(3))
    with open_store(uri, database=database, data_dir=tmp_path) as store:
        clear(store)
        cli("commit", job.id, "--graph", uri, "--database", database)
        assert sum("Document" in item.get("labels", []) for item in dump_graph(store)) == 3
        cli("rollback", job.id, "--graph", uri, "--database", database)
        assert dump_graph(store) == []

    result = invoke("commit", job.id, "--graph", uri, "--database", "staging")
    assert result.exit_code == 2
    assert result.stderr == f"Error: Neo4j at {uri} has no database 'staging' — create it, or leave out --database\n"


# ---------------------------------------------------------------- Neo4j's errors and credentials


def test_a_wrong_neo4j_password_is_one_line_with_the_fix(neo4j_server, tmp_path, monkeypatch):
    uri = neo4j_env(monkeypatch, neo4j_server)
    job = verified_job(tmp_path, "docs", range(2))
    monkeypatch.setenv("NEO4J_PASSWORD", "wrong-Pa55word-here")
    result = invoke("--debug", "commit", job.id, "--graph", uri)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Neo4j at {uri} rejected the credentials — set NEO4J_USERNAME and NEO4J_PASSWORD"
    )
    assert "wrong-Pa55word-here" not in result.stderr + result.stdout


def test_an_unreachable_neo4j_exits_4(tmp_path, monkeypatch):
    job = verified_job(tmp_path, "docs", range(2))
    monkeypatch.setenv("NEO4J_PASSWORD", "not-used-here")
    result = invoke("commit", job.id, "--graph", "bolt://127.0.0.1:1")
    assert result.exit_code == 4
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: Neo4j at bolt://127.0.0.1:1 is unreachable")


def test_neo4j_credentials_never_reach_output_logs_or_job_files(neo4j_server, tmp_path, monkeypatch):
    uri = neo4j_env(monkeypatch, neo4j_server)
    with open_store(uri, database=neo4j_server.database, data_dir=tmp_path) as store:
        clear(store)
    job = verified_job(tmp_path, "docs", range(4))
    outputs = []
    for args in (["commit", job.id, "--graph", uri], ["rollback", job.id, "--graph", uri]):
        child = cli_process("--debug", *args)
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr.decode()
        outputs.append(stdout + stderr)
    written = [path.read_bytes() for path in Path(os.environ["EXTRACTOR_JOBS_DIR"]).rglob("*") if path.is_file()]
    secret = neo4j_server.password.encode()
    assert outputs and written and job.commit_path.exists()
    assert not any(secret in blob for blob in outputs + written)
    assert not any(b"NEO4J_PASSWORD=" in blob for blob in outputs + written)


def test_a_neo4j_uri_with_credentials_is_refused_without_echoing_them(tmp_path):
    job = verified_job(tmp_path, "docs", range(2))
    result = invoke("commit", job.id, "--graph", "neo4j://neo4j:s3cret-pw@127.0.0.1:7687")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: graph URI neo4j://127.0.0.1:7687: put Neo4j credentials in NEO4J_USERNAME / NEO4J_PASSWORD,"
        " not in the URI\n"
    )
