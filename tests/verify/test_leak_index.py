"""The leak index: which documents hold a name, on token boundaries, in one pass over the corpus."""

from __future__ import annotations

import random

import pytest

from extractor.verify.grounding import DocumentMatcher
from extractor.verify.index import LeakIndex, NameScanner
from extractor.verify.normalize import name_variants, normalize, normalize_name, on_token_boundary
from tests.redocred import load_redocred, mention_text, redocred_text

CORPUS = [
    ("a", "Ann Lee joined Microsoft in 1998."),
    ("b", "The Annual report of Microsoft’s board."),
    ("c", "ann lee left; the BANK OF AMERICA hired her."),
    ("d", "Nothing to see here, o'brien said."),
    ("e", "Over 3,000 paintings by Ann."),
]


def test_attributes_each_name_to_the_documents_that_hold_it() -> None:
    sources = LeakIndex(CORPUS).find_sources(["Ann Lee", "Microsoft", "Bank of America", "Brien", "3", "Nobody"])
    assert sources == {
        "ann lee": {"a", "c"},  # case
        "microsoft": {"a", "b"},  # possessive with a curly apostrophe
        "bank of america": {"c"},
        "brien": set(),  # inside o'brien
        "3": set(),  # inside 3,000
        "nobody": set(),
    }


def test_token_boundaries() -> None:
    sources = LeakIndex(CORPUS).find_sources(["Ann", "Annual", "Lee"])
    assert sources["ann"] == {"a", "c", "e"}  # never via "Annual"
    assert sources["annual"] == {"b"}
    assert sources["lee"] == {"a", "c"}


def test_names_are_keyed_by_their_normal_form_and_share_variants() -> None:
    sources = LeakIndex(CORPUS).find_sources(["MICROSOFT", "Microsoft's", "Microsoft’s", "  microsoft  "])
    assert sources == {"microsoft": {"a", "b"}, "microsoft's": {"a", "b"}}


def test_hyphenated_names_are_found_spaced() -> None:
    sources = LeakIndex([("x", "Born in New York."), ("y", "A New-York firm.")]).find_sources(["New-York", "New York"])
    assert sources == {"new-york": {"x", "y"}, "new york": {"x"}}


def test_a_name_is_found_in_a_text_that_spaces_its_punctuation() -> None:
    # benchmarks/concatenation: Re-DocRED writes "Titanfall : Assault"; a model answers "Titanfall: Assault"
    documents = [
        ("x", "Titanfall : Assault is a game ."),
        ("y", "Smith , Jones & Co . sued ."),
        ("z", "Titanfall Assault"),
    ]
    sources = LeakIndex(documents).find_sources(["Titanfall: Assault", "Smith, Jones & Co.", "Titanfall:Assault"])
    assert sources == {"titanfall: assault": {"x"}, "smith, jones & co.": {"y"}, "titanfall:assault": {"x"}}


def test_a_name_in_several_documents_and_overlapping_names() -> None:
    documents = [(f"d{i}", f"Report {i}: Bank of America and America Movil.") for i in range(50)]
    documents.append(("x", "Only America here."))
    sources = LeakIndex(documents).find_sources(["Bank of America", "America", "America Movil"])
    assert sources["bank of america"] == {f"d{i}" for i in range(50)}
    assert sources["america"] == {f"d{i}" for i in range(50)} | {"x"}
    assert sources["america movil"] == {f"d{i}" for i in range(50)}


def test_no_names_and_no_documents() -> None:
    assert LeakIndex(CORPUS).find_sources([]) == {}
    assert LeakIndex(CORPUS).find_sources(["", "  "]) == {}
    assert LeakIndex([]).find_sources(["Ann"]) == {"ann": set()}


def test_from_normalized_gives_the_same_answers() -> None:
    names = ["Ann Lee", "Microsoft", "Bank of America"]
    normalized = LeakIndex.from_normalized((doc_id, normalize(text).text) for doc_id, text in CORPUS)
    assert len(normalized) == len(CORPUS)
    assert normalized.find_sources(names) == LeakIndex(CORPUS).find_sources(names)


def holds(text: str, key: str) -> bool:
    """Brute force: some variant of the name occurs in the normalised text on token boundaries."""
    for variant in name_variants(key):
        start = text.find(variant)
        while start >= 0:
            if on_token_boundary(text, start, start + len(variant)):
                return True
            start = text.find(variant, start + 1)
    return False


@pytest.fixture(scope="module")
def redocred() -> list[dict]:
    return load_redocred()


def test_agrees_with_the_exact_pass_on_real_documents(redocred: list[dict]) -> None:
    """One automaton scan attributes exactly what aligning every name against every document would."""
    documents = [(str(i), redocred_text(doc)) for i, doc in enumerate(redocred[:150])]
    rng = random.Random(3)
    names = sorted({mention_text(doc, cluster[0]) for doc in rng.sample(redocred, 60) for cluster in doc["vertexSet"]})
    sources = LeakIndex(documents).find_sources(names)
    normalized = {doc_id: normalize(text).text for doc_id, text in documents}
    for name in names:
        key = normalize_name(name)
        expected = {doc_id for doc_id, text in normalized.items() if holds(text, key)}
        assert sources[key] == expected, name
        for doc_id in expected:  # and the matcher's exact pass agrees
            assert DocumentMatcher(documents[int(doc_id)][1]).align(name).score == 1.0
    assert sum(len(found) for found in sources.values()) > len(names)  # names do recur across documents


def test_name_scanner_takes_documents_one_at_a_time() -> None:
    scanner = NameScanner(["Ann Lee", "Bank of America", "Nobody"])
    held = [scanner.scan(doc_id, normalize(text).text) for doc_id, text in CORPUS]
    assert held == [True, False, True, False, False]
    assert scanner.sources == {"ann lee": {"a", "c"}, "bank of america": {"c"}, "nobody": set()}
    assert NameScanner([]).scan("a", "anything") is False
