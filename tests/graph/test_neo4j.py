"""Neo4j's own behaviour on a real server (tests/neo4j_server.py, or NEO4J_URI): constraints and indexes
made the Neo4j 5 way and idempotently, a foreign index named with its fix, parameters that come back
as they went, a deadlock retried by the driver's managed transactions, and errors without a server."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import neo4j
import pytest
from hypothesis import HealthCheck, given, settings

from extractor.errors import BadInput, ServiceUnavailable
from extractor.graph import commit_job, dump_graph, open_store
from extractor.graph.cypher import Statement
from tests.graph.helpers import VOCABULARY, job_j, job_k
from tests.graph.test_injection import values

pytestmark = pytest.mark.graph


def test_an_unreachable_neo4j_names_the_uri(monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", "not-used")
    with (
        pytest.raises(
            ServiceUnavailable, match=r"^Neo4j at bolt://127\.0\.0\.1:1 is unreachable \([^\n]*\) — start it"
        ),
        open_store("bolt://127.0.0.1:1", data_dir=Path("unused")),
    ):
        pass


def test_credentials_in_a_neo4j_uri_are_refused_without_echoing_them():
    with pytest.raises(BadInput) as caught, open_store("neo4j://neo4j:s3cret@127.0.0.1:1", data_dir=Path("unused")):
        pass
    assert "NEO4J_USERNAME" in caught.value.message and "s3cret" not in caught.value.message


def schema(store) -> tuple[set[str], set[str]]:
    constraints = {row["name"] for row in store.read(Statement("c", "SHOW CONSTRAINTS YIELD name RETURN name"))}
    indexes = {
        row["name"]
        for row in store.read(Statement("i", "SHOW INDEXES YIELD name, state WHERE state = 'ONLINE' RETURN name"))
    }
    return constraints, indexes


def test_constraints_and_indexes_are_made_once_and_a_second_commit_keeps_them(neo4j_store, neo4j_server, tmp_path):
    commit_job(neo4j_store, "J", job_j(), log_path=tmp_path / "J.json", vocabulary=VOCABULARY)
    constraints, indexes = schema(neo4j_store)
    assert {"extractor_entity_key", "extractor_document_doc_id"} <= constraints
    # one doc_id index per allowed relationship type (and the fallback), online before the first chunk
    assert {f"extractor_{t.lower()}_doc_id" for t in VOCABULARY.all_relationship_types} <= indexes

    # a second process, on the existing database: nothing fails, nothing is added
    with open_store(neo4j_server.uri, database=neo4j_server.database, data_dir=tmp_path) as again:
        commit_job(again, "K", job_k(), log_path=tmp_path / "K.json", vocabulary=VOCABULARY)
        commit_job(again, "J", job_j(), log_path=tmp_path / "J.json", vocabulary=VOCABULARY)
        assert schema(again) == (constraints, indexes)
    assert {
        item["properties"]["doc_id"] for item in dump_graph(neo4j_store) if "Document" in item.get("labels", [])
    } == {"d1", "d2", "d3"}


def test_a_foreign_index_on_our_key_is_one_line_with_the_fix(neo4j_store, neo4j_server, tmp_path):
    drop = Statement("drop", "DROP CONSTRAINT extractor_entity_key IF EXISTS")
    neo4j_store.write([(drop, {})])
    neo4j_store.write(
        [(Statement("foreign", "CREATE INDEX their_entity_key IF NOT EXISTS FOR (n:Entity) ON (n.key)"), {})]
    )
    try:
        with (
            pytest.raises(BadInput) as caught,
            open_store(neo4j_server.uri, database=neo4j_server.database, data_dir=tmp_path),
        ):
            pass
        message = caught.value.message
        assert "\n" not in message
        assert message.startswith(f"Neo4j at {neo4j_server.uri} could not create create_entity_key_constraint: ")
        assert message.endswith(
            "drop that index or constraint (SHOW INDEXES; DROP INDEX name), extractor creates its own"
        )
    finally:
        neo4j_store.write([(Statement("undo", "DROP INDEX their_entity_key IF EXISTS"), {})])
        neo4j_store.ensure_schema()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_parameter_values_reach_neo4j_unchanged(neo4j_store, value):
    """Values travel as Bolt parameters, never as query text: they come back as they went."""
    assert neo4j_store.read(Statement("echo", "RETURN $p AS p"), {"p": value}) == [{"p": value}]


def increment(key: str) -> tuple[Statement, dict]:
    return Statement(f"lock_{key}", "MATCH (n:Lock {k: $k}) SET n.n = n.n + 1"), {"k": key}


def test_a_deadlock_is_retried_by_the_managed_transaction(neo4j_store, neo4j_server, caplog):
    """Two batches lock A then B, and B then A: Neo4j kills one with DeadlockDetected (a transient
    error), the driver retries it, and both land exactly once."""
    neo4j_store.write([(Statement("locks", "UNWIND ['A', 'B', 'C'] AS k CREATE (:Lock {k: k, n: 0})"), {})])
    batches = {
        "AB": [increment("A"), increment("C"), increment("B")],
        "BA": [increment("B"), increment("C"), increment("A")],
    }
    errors: list[BaseException] = []

    def send(batch):
        try:
            neo4j_store.write(batch)
        except BaseException as exc:
            errors.append(exc)

    driver = neo4j.GraphDatabase.driver(neo4j_server.uri, auth=(neo4j_server.username, neo4j_server.password))
    caplog.set_level(logging.INFO, logger="neo4j")
    try:
        with driver.session(database=neo4j_server.database) as session:
            # hold C, so that each batch takes its first lock and then waits on C
            gate = session.begin_transaction()
            gate.run("MATCH (n:Lock {k: 'C'}) SET n.n = n.n + 100").consume()
            threads = [threading.Thread(target=send, args=(batch,)) for batch in batches.values()]
            for thread in threads:
                thread.start()
            blocked = Statement(
                "blocked", "SHOW TRANSACTIONS YIELD status WHERE status STARTS WITH 'Blocked' RETURN count(*) AS n"
            )
            deadline = time.monotonic() + 120
            while neo4j_store.read(blocked)[0]["n"] < 2:
                assert time.monotonic() < deadline, "the two batches never both waited on C"
                time.sleep(0.05)
            gate.commit()  # now each wants the lock the other holds
            for thread in threads:
                thread.join(timeout=120)
    finally:
        driver.close()
    assert errors == []
    counts = {
        row["k"]: row["n"] for row in neo4j_store.read(Statement("n", "MATCH (n:Lock) RETURN n.k AS k, n.n AS n"))
    }
    assert counts == {"A": 2, "B": 2, "C": 102}
    retried = [r.getMessage() for r in caplog.records if "retried" in r.getMessage()]
    assert retried and "DeadlockDetected" in " ".join(retried), [r.getMessage() for r in caplog.records]
