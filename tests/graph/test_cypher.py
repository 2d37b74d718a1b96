"""The statement listing (`graph cypher`): complete, parameterised, and accepted by a real FalkorDB and a real Neo4j."""

from __future__ import annotations

import re

import orjson
import pytest

from extractor.graph import cypher
from extractor.graph.batches import build_chunk
from extractor.graph.cypher import Statement, iter_statements
from tests.graph.helpers import VOCABULARY, many_docs


def test_every_statement_comes_with_its_parameters():
    for dialect in ("neo4j", "falkordb"):
        statements = list(iter_statements(dialect, VOCABULARY))
        names = [s["name"] for s in statements]
        assert len(names) == len(set(names))
        for statement in statements:
            assert set(statement) == {"name", "dialect", "query", "parameters"} and statement["dialect"] == dialect
            used = set(re.findall(r"\$(\w+)", statement["query"]))
            # exactly what the store sends (a rollback chunk sends {job, doc_ids} to each of its statements)
            assert used <= set(statement["parameters"]), statement["name"]
            orjson.dumps(statement)  # one JSON object a line, as `graph cypher` prints them
        # one entity statement per allowed label, one relationship statement per allowed type
        assert {f"upsert_entities:{label}" for label in VOCABULARY.entity_labels} <= set(names)
        assert {f"merge_relationships:{t}" for t in VOCABULARY.relationship_types} <= set(names)
        assert f"merge_fallback_relationships:{VOCABULARY.fallback_relationship}" in names


def test_the_listing_covers_every_statement_a_commit_sends():
    listed = {s["query"] for s in iter_statements("falkordb", VOCABULARY)}
    chunk = build_chunk(0, many_docs(20), "J", VOCABULARY)
    sent = {statement.query for statement, _ in chunk.batch}
    sent |= {s.query for s in cypher.rollback_chunk(VOCABULARY.all_relationship_types)}
    sent |= {cypher.relationship_index("falkordb", t).query for t in VOCABULARY.all_relationship_types}
    assert sent <= listed


def test_an_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="unknown Cypher dialect"):
        list(iter_statements("gremlin", VOCABULARY))  # type: ignore[arg-type]


@pytest.mark.graph
def test_falkordb_plans_every_statement(falkordb_store):
    for statement in iter_statements("falkordb", VOCABULARY):
        if statement["query"].startswith("CREATE INDEX"):
            continue  # schema statements have no plan; ensure_schema ran them already
        falkordb_store._graph.explain(statement["query"], statement["parameters"])


@pytest.mark.graph
def test_neo4j_plans_every_statement(neo4j_store):
    """EXPLAIN compiles each statement with its parameters and runs nothing."""
    explained = [
        (Statement(s["name"], f"EXPLAIN {s['query']}"), s["parameters"])
        for s in iter_statements("neo4j", VOCABULARY)
        if not s["query"].startswith("CREATE ")  # schema statements: ensure_schema ran them already
    ]
    assert len(explained) > 20
    neo4j_store.write(explained)
