"""The graph model without a store: labels, keys, the allow-list, deterministic chunks."""

from __future__ import annotations

import random

import pytest

from extractor.graph import CommitDocument, EntityMention, GraphVocabulary, RelationFact, entity_key, sanitize_label
from extractor.graph.batches import build_chunk, iter_chunks, sorted_documents
from extractor.graph.model import canonical_type
from tests.graph.helpers import VOCABULARY, doc, many_docs


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("PERSON", "PERSON"),
        ("works for", "WORKS_FOR"),
        ("Works-For", "WORKS_FOR"),
        ("  located   in ", "LOCATED_IN"),
        ("Événement", "EVENEMENT"),
        ("X]->() DETACH DELETE n //", "X_DETACH_DELETE_N"),
        ("`PERSON`", "PERSON"),
        ("1st place", None),
        ("人物", None),
        ("", None),
        ("___", None),
    ],
)
def test_sanitize_label(value, label):
    assert sanitize_label(value) == label


def test_entity_keys_join_spellings_of_one_name_and_type():
    assert entity_key("PERSON", "Ada Lovelace") == "PERSON:ada lovelace"
    assert entity_key("person", "  ADA\tLovelace ") == entity_key("PERSON", "Ada Lovelace")
    assert entity_key("ORGANIZATION", "Ada Lovelace") != entity_key("PERSON", "Ada Lovelace")
    assert canonical_type("人物") == "人物" and entity_key("人物", "Ada") == "人物:ada"


def test_vocabulary_keeps_only_label_shaped_names():
    vocabulary = GraphVocabulary.from_types(["PERSON", "organization", "人物"], ["works for", "MENTIONED_IN", "?"])
    assert vocabulary.entity_labels == {"PERSON", "ORGANIZATION"}
    assert vocabulary.relationship_types == {"WORKS_FOR"}  # MENTIONED_IN is the model's own
    assert vocabulary.label_for("person") == "PERSON" and vocabulary.label_for("EVENT") is None
    assert vocabulary.relationship_for("Works For") == ("WORKS_FOR", False)
    assert vocabulary.relationship_for("MENTIONED_IN") == ("RELATED_TO", True)
    with pytest.raises(ValueError, match="reserved"):
        GraphVocabulary(frozenset(), frozenset({"MENTIONED_IN"}))
    with pytest.raises(ValueError, match="not a label"):
        GraphVocabulary(frozenset({"Person"}), frozenset())


def test_chunks_do_not_depend_on_the_order_documents_come_in():
    docs = many_docs(11)
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    first = list(iter_chunks(sorted_documents(docs), "J", VOCABULARY, 4))
    second = list(iter_chunks(sorted_documents(shuffled), "J", VOCABULARY, 4))
    assert [c.sha256 for c in first] == [c.sha256 for c in second]
    assert [len(c.doc_ids) for c in first] == [4, 4, 3]
    other_spec = GraphVocabulary(VOCABULARY.entity_labels, frozenset())
    assert [c.sha256 for c in iter_chunks(sorted_documents(docs), "J", other_spec, 4)] != [c.sha256 for c in first]


def test_a_chunk_writes_documents_then_entities_then_relations():
    chunk = build_chunk(0, [doc("d1", [("Ada", "PERSON"), ("Ada", "PERSON"), ("Widget", "gadget")],
                                [("Ada", "PERSON", "works for", "IBM", "ORGANIZATION", "e"),
                                 ("Ada", "PERSON", "works for", "IBM", "ORGANIZATION", "e")])],
                        "J", VOCABULARY)  # fmt: skip
    names = [statement.name for statement, _ in chunk.batch]
    assert names == [
        "upsert_documents",
        "upsert_entities",  # "gadget" is not an allowed label: only :Entity
        "upsert_entities:ORGANIZATION",  # a relation end the document did not list
        "upsert_entities:PERSON",
        "merge_relationships:WORKS_FOR",
    ]
    assert chunk.mentions == 3 and chunk.relationships == 1  # duplicates merged
    person = chunk.batch[3][1]["rows"]
    assert person == [
        {"key": "PERSON:ada", "type": "PERSON", "mentions": [{"doc_id": "d1", "name": "Ada", "span": [0, 3]}]}
    ]
    assert chunk.batch[2][1]["rows"][0]["mentions"] == [{"doc_id": "d1", "name": "IBM", "span": None}]


def test_unusable_values_are_dropped_or_cleaned():
    document = CommitDocument(
        "d1", "s", "p", None,  # type: ignore[arg-type]
        entities=(EntityMention("", "PERSON"), EntityMention("  ", "PERSON"), EntityMention("Ada", "PERSON", (5, 2)),
                  EntityMention("Bo\x00b", "PERSON", (True, 3))),  # type: ignore[arg-type]
        relations=(RelationFact("", "PERSON", "KNOWS", "Ada", "PERSON", "x"),),
    )  # fmt: skip
    chunk = build_chunk(0, [document], "J", VOCABULARY)
    assert chunk.batch[0][1]["rows"][0]["title"] == ""
    rows = chunk.batch[1][1]["rows"]
    assert [(r["key"], r["mentions"][0]["name"], r["mentions"][0]["span"]) for r in rows] == [
        ("PERSON:ada", "Ada", None),  # a backwards span is no span
        ("PERSON:bob", "Bob", None),
    ]
    assert chunk.relationships == 0  # a relation with a nameless end is not written
