"""Answers crafted to inject Cypher change nothing but the intended writes, on a real FalkorDB and a real Neo4j."""

from __future__ import annotations

import pytest
from falkordb.query_result import QueryResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractor.graph import (
    CommitDocument,
    EntityMention,
    GraphVocabulary,
    RelationFact,
    commit_job,
    cypher,
    dump_graph,
    rollback_job,
)
from extractor.graph.cypher import Statement
from extractor.graph.falkordb_store import with_parameters
from tests.graph.helpers import VOCABULARY, clear, job_k

pytestmark = pytest.mark.graph

HOSTILE = [
    "X]->() DETACH DELETE n //",
    "'}) MATCH (n) DETACH DELETE n //",
    '"}) MATCH (n) DETACH DELETE n //',
    "`}) MATCH (n) DETACH DELETE n //",
    "\\u0060}) MATCH (n) DETACH DELETE n //",  # a unicode escape, as text
    "\\\\u0027}) MATCH (n) DETACH DELETE n //",
    '\\"}) MATCH (n) DETACH DELETE n //',  # backslash, then the quote it would escape
    "ends in a backslash \\",
    "$job",
    "*/ MATCH (n) DETACH DELETE n /*",
    "CYPHER job='x' MATCH (n) DETACH DELETE n",
    "line\nMATCH (n) DETACH DELETE n",
    'nul\x00byte"}) MATCH (n) DETACH DELETE n //',
    "lone surrogate \ud800 }) MATCH (n) DETACH DELETE n //",
    "emoji 😀 ' \" ` mixed",
]


def stored(text: str) -> str:
    """What the graph keeps of a name: NUL dropped, a lone surrogate replaced, whitespace runs collapsed."""
    text = text.replace("\x00", "").replace("\ud800", "\ufffd")
    return " ".join(text.split())


def hostile_documents() -> list[CommitDocument]:
    docs = []
    for i, text in enumerate(HOSTILE):
        docs.append(
            CommitDocument(
                doc_id=f"evil-{i}",
                sha256=text,
                path=text,
                title=text,
                entities=(EntityMention(text, "PERSON", (0, 5)), EntityMention(f"{text} Corp", text, None)),
                relations=(
                    RelationFact(text, "PERSON", text, f"{text} Corp", text, text),
                    RelationFact(text, "PERSON", "WORKS_FOR", f"{text} Corp", text, text),
                ),
            )
        )
    return docs


def test_hostile_answers_write_only_values(graph_store, tmp_path):
    job = "J'}) MATCH (n) DETACH DELETE n //"
    # what the job writes into an empty graph
    commit_job(graph_store, job, hostile_documents(), log_path=tmp_path / "alone.json", vocabulary=VOCABULARY)
    alone = dump_graph(graph_store)
    clear(graph_store)

    graph_store.write(
        [(Statement("sentinel", "CREATE (:Sentinel {name: 'keep me'})-[:GUARDS]->(:Sentinel {name: 'me too'})"), {})]
    )
    commit_job(graph_store, "K", job_k(), log_path=tmp_path / "K.json", vocabulary=VOCABULARY)
    before = dump_graph(graph_store)
    summary = commit_job(graph_store, job, hostile_documents(), log_path=tmp_path / "J.json", vocabulary=VOCABULARY)
    after = dump_graph(graph_store)

    # exactly the union of what was there and what the job writes into an empty graph
    expected = sorted(before + alone, key=lambda item: repr(sorted(item.items())))
    assert sorted(after, key=lambda item: repr(sorted(item.items()))) == expected
    assert summary.documents == len(HOSTILE)

    # every hostile name is kept, as a value, on its mention (keys may merge: ` and ' normalise alike)
    names = {
        item["properties"]["name"]
        for item in after
        if item["kind"] == "relationship" and item["type"] == "MENTIONED_IN"
    }
    assert {stored(text) for text in HOSTILE} <= names
    labels = {label for item in after if item["kind"] == "node" for label in item["labels"]}
    assert labels <= {"Sentinel", "Document", "Entity", *VOCABULARY.entity_labels}
    types = {item["type"] for item in after if item["kind"] == "relationship"}
    assert types <= {"GUARDS", "MENTIONED_IN", *VOCABULARY.all_relationship_types}
    fallback = [
        item["properties"]
        for item in after
        if item["kind"] == "relationship" and item["properties"].get("job") == job and item["type"] == "RELATED_TO"
    ]
    assert sorted(p["original_type"] for p in fallback) == sorted(
        text.replace("\x00", "").replace("\ud800", "\ufffd") for text in HOSTILE
    )
    assert all(p["evidence"] == p["original_type"] for p in fallback)  # evidence is kept verbatim

    rollback_job(graph_store, job, log_path=tmp_path / "J.json")
    assert dump_graph(graph_store) == before


def test_labels_outside_the_allowed_form_never_reach_a_statement():
    for bad in ["X]->() DETACH DELETE n //", "PERSON`", "Person", "", "PERSON:ORG", "1ABC"]:
        with pytest.raises(ValueError):
            cypher.upsert_entities(bad)
        with pytest.raises(ValueError):
            cypher.merge_relationships(bad, False)
        with pytest.raises(ValueError):
            GraphVocabulary(frozenset({bad}), frozenset())
    # sanitising a hostile type gives an inert identifier, and only the allow-list decides
    vocabulary = GraphVocabulary.from_types(["X]->() DETACH DELETE n //"], ["`) MATCH (n) DETACH DELETE n //"])
    assert vocabulary.entity_labels == {"X_DETACH_DELETE_N"}
    assert vocabulary.relationship_types == {"MATCH_N_DETACH_DELETE_N"}
    for dialect in cypher.DIALECTS:
        for statement in cypher.iter_statements(dialect, vocabulary):
            assert "//" not in statement["query"] and "`" not in statement["query"]


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**62), 2**62)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
    | st.text(st.sampled_from(list("\\\"'`u0{}$n\n\t\r\b\f\x01\x1f\x7f é😀"))),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_parameter_values_reach_falkordb_unchanged(falkordb_store, value):
    """The injection surface itself: values quoted into FalkorDB's CYPHER header come back as they went."""
    reply = falkordb_store._db.connection.execute_command(
        "GRAPH.QUERY", falkordb_store.graph_name, with_parameters("RETURN $p", {"p": value}), "--compact"
    )
    assert QueryResult(falkordb_store._graph, reply).result_set[0][0] == value
