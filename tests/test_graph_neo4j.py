"""The Neo4j store. Without a server: URI and connection errors. With NEO4J_URI set (plus NEO4J_USERNAME,
NEO4J_PASSWORD, optionally NEO4J_DATABASE): the commit/rollback suite and the rollback property.
Point NEO4J_URI at a throwaway database: these tests delete every Entity and Document node in it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractor.errors import BadInput, ServiceUnavailable
from extractor.graph import commit_job, dump_graph, open_store, rollback_job
from extractor.graph.cypher import Statement
from extractor.graph.store import GraphStore
from tests.graph_fixtures import VOCABULARY, assert_rollback_is_exact, job_j, job_k, job_sequences, many_docs

NEO4J_URI = os.environ.get("NEO4J_URI")
needs_neo4j = pytest.mark.skipif(not NEO4J_URI, reason="set NEO4J_URI (and NEO4J_USERNAME/NEO4J_PASSWORD) to run against Neo4j")
CLEAR = Statement("clear", "MATCH (n) WHERE n:Entity OR n:Document DETACH DELETE n")


def clear(store: GraphStore) -> None:
    store.write([(CLEAR, {})])


def test_an_unreachable_neo4j_names_the_uri(monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", "not-used")
    with pytest.raises(ServiceUnavailable, match=r"Neo4j at bolt://127\.0\.0\.1:1 is unreachable"):
        with open_store("bolt://127.0.0.1:1", data_dir=Path("unused")):
            pass


def test_credentials_in_a_neo4j_uri_are_refused_without_echoing_them():
    with pytest.raises(BadInput) as caught:
        with open_store("neo4j://neo4j:s3cret@127.0.0.1:1", data_dir=Path("unused")):
            pass
    assert "NEO4J_USERNAME" in caught.value.message and "s3cret" not in caught.value.message


@pytest.fixture(scope="module")
def neo4j_store() -> Iterator[GraphStore]:
    with open_store(NEO4J_URI or "", database=os.environ.get("NEO4J_DATABASE"), data_dir=Path("unused")) as store:
        clear(store)
        yield store
        clear(store)


@needs_neo4j
def test_commit_is_idempotent_and_rollback_exact_on_neo4j(neo4j_store, tmp_path):
    clear(neo4j_store)
    commit_job(neo4j_store, "K", job_k(), log_path=tmp_path / "K.json", vocabulary=VOCABULARY)
    only_k = dump_graph(neo4j_store)
    commit_job(neo4j_store, "J", job_j() + many_docs(7), log_path=tmp_path / "J.json", vocabulary=VOCABULARY, chunk_size=3)
    both = dump_graph(neo4j_store)
    again = commit_job(neo4j_store, "J", job_j() + many_docs(7), log_path=tmp_path / "J.json", vocabulary=VOCABULARY, chunk_size=3)
    assert again.resumed_chunks == again.chunks and dump_graph(neo4j_store) == both
    rollback_job(neo4j_store, "J", log_path=tmp_path / "J.json")
    assert dump_graph(neo4j_store) == only_k


@needs_neo4j
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=job_sequences(), chunk_size=st.integers(1, 3), partial=st.booleans())
def test_rollback_property_on_neo4j(neo4j_store, sequence, chunk_size, partial):
    jobs, rolled = sequence
    with tempfile.TemporaryDirectory() as log_dir:
        assert_rollback_is_exact(
            neo4j_store, jobs, rolled, chunk_size=chunk_size, partial=partial, log_dir=Path(log_dir), clear=clear
        )
