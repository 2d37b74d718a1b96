"""Normalisation for grounding: each rule, the offset map back to the original, token boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor.verify.normalize import (
    TOKEN,
    name_variants,
    normalize,
    normalize_name,
    on_token_boundary,
)


def surface(text: str, start: int, end: int) -> str:
    """The original text under a normalised span."""
    norm = normalize(text)
    a, b = norm.span_to_original(start, end)
    return text[a:b]


def surface_of(text: str, needle: str) -> str:
    """The original text under the first occurrence of `needle` in the normalised text."""
    norm = normalize(text)
    at = norm.text.index(needle)
    a, b = norm.span_to_original(at, at + len(needle))
    return text[a:b]


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Hello World", "hello world"),  # casefold
        ("STRASSE Straße", "strasse strasse"),  # casefold expands ß
        ("ＡＢＣ Ｃｏｒｐ", "abc corp"),  # NFKC: full-width letters
        ("ﬁnancial ﬂow", "financial flow"),  # NFKC: ligatures
        ("Cafe\u0301", "café"),  # NFKC composes a decomposed accent
        ("x\u00b2", "x2"),  # NFKC: superscript
        ("Microsoft’s ‘Word’ `and´ Owner‛s", "microsoft's 'word' 'and' owner's"),  # apostrophes
        ("“quoted” „low‟", '"quoted" "low"'),  # double quotes
        ("a–b—c‐d‑e−f‒g―h", "a-b-c-d-e-f-g-h"),  # dashes
        ("ŞANLIURFA Şanlıurfa", "şanliurfa şanliurfa"),  # Turkish dotless ı: upper case made it I
        ("  New \t York\n\n City  ", "new york city"),  # whitespace runs collapse, ends stripped
        ("New\u00a0York\u2009City\u202fnow", "new york city now"),  # NBSP and thin spaces
        ("Micro\u00adsoft\u200b Corp\ufeff", "microsoft corp"),  # soft hyphen, zero-width, BOM dropped
        ("a \u200b b", "a b"),  # an invisible inside a space run is one space
        ("", ""),
        (" \n\t ", ""),
    ],
)
def test_normal_form(original: str, expected: str) -> None:
    assert normalize(original).text == expected
    assert normalize_name(original) == expected


def test_ascii_single_spaced_text_keeps_identity_offsets() -> None:
    norm = normalize("Apple Inc. is in Cupertino")
    assert list(norm.offsets) == list(range(len(norm.text) + 1))


def test_offsets_have_a_sentinel_at_the_original_length() -> None:
    for original in ("  Hello  ", "Straße\n", "ﬁne", "a\u00adb", "plain"):
        norm = normalize(original)
        assert len(norm.offsets) == len(norm.text) + 1
        assert norm.offsets[len(norm.text)] == len(original)


@pytest.mark.parametrize(
    ("original", "needle", "expected"),
    [
        ("The  NEW\n\nYORK times", "new york", "NEW\n\nYORK"),
        ("An ＡＢＣ Ｃｏｒｐ deal", "abc corp", "ＡＢＣ Ｃｏｒｐ"),
        ("Big ﬁnancial news", "financial", "ﬁnancial"),
        ("Visit the Cafe\u0301 today", "café", "Cafe\u0301"),  # the combining accent comes along
        ("Die Straße hier", "strasse", "Straße"),
        ("Microsoft’s plan", "microsoft's", "Microsoft’s"),
        ("Micro\u00adsoft Corp", "microsoft", "Micro\u00adsoft"),
        ("  leading and trailing  ", "trailing", "trailing"),
        ("İstanbul is big", "i̇stanbul", "İstanbul"),
    ],
)
def test_spans_map_back_to_the_original_surface(original: str, needle: str, expected: str) -> None:
    assert surface_of(original, needle) == expected


def test_empty_span_maps_to_a_point() -> None:
    norm = normalize("  ab  cd")
    assert norm.span_to_original(2, 2) == (norm.offsets[2], norm.offsets[2])


PIECES = [
    *"abcXYZ019 ",
    "\n",
    "\t",
    "  ",
    "\u00a0",
    "\u2009",
    "\u00ad",
    "\u200b",
    "é",
    "e\u0301",
    "ß",
    "İ",
    "ﬁ",
    "Ａ",
    "ｂ",
    "’",
    "“",
    "—",
    "-",
    "'",
    ".",
    ",",
]
CURATED = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_offset_map_invariants_on_any_text(original: str) -> None:
    norm = normalize(original)
    offsets = list(norm.offsets)
    assert len(offsets) == len(norm.text) + 1
    assert offsets == sorted(offsets)
    assert all(0 <= offset < len(original) for offset in offsets[:-1])
    assert offsets[-1] == len(original)
    assert normalize_name(original) == norm.text
    assert normalize(norm.text).text == norm.text  # idempotent


@settings(max_examples=300, deadline=None)
@given(CURATED)
def test_every_token_maps_back_to_an_original_that_normalises_to_it(original: str) -> None:
    norm = normalize(original)
    for match in TOKEN.finditer(norm.text):
        a, b = norm.span_to_original(*match.span())
        assert normalize(original[a:b]).text == match.group()


@settings(max_examples=200, deadline=None)
@given(CURATED)
def test_span_lookup_agrees_with_index_lookups(original: str) -> None:
    norm = normalize(original)
    for start in range(len(norm.text)):
        for end in range(start + 1, len(norm.text) + 1):
            a, b = norm.span_to_original(start, end)
            assert a == norm.offsets[start]
            assert b >= norm.offsets[end - 1] + 1


@pytest.mark.parametrize(
    ("text", "needle", "expected"),
    [
        ("annual report by ann", "ann", True),  # the second one
        ("annual report", "ann", False),  # inside a word
        ("microsoft's plan", "microsoft", True),  # possessive
        ("the beatles' song", "beatles", True),  # plural possessive
        ("o'brien said", "brien", False),  # apostrophe inside a name
        ("o'brien said", "o", False),
        ("don't", "don", False),
        ("over 3,000 paintings", "3", False),  # inside a number
        ("over 3,000 paintings", "000", False),
        ("version 1.5 out", "5", False),
        ("in 1998, he", "1998", True),
        ("apple inc. is", "apple inc", True),
        ("new york-based", "new york", True),
        ("(london)", "london", True),
        ("c++ code", "c++", True),
    ],
)
def test_token_boundaries(text: str, needle: str, expected: bool) -> None:
    start = text.rfind(needle) if needle == "ann" and expected else text.find(needle)
    assert on_token_boundary(text, start, start + len(needle)) is expected


def test_name_variants_strip_edge_punctuation_and_possessives() -> None:
    assert name_variants("apple inc.") == ("apple inc.", "apple inc")
    assert name_variants("microsoft's") == ("microsoft's", "microsoft")
    assert name_variants("the beatles'") == ("the beatles'", "the beatles")
    assert name_variants('"willi"') == ('"willi"', "willi")
    assert name_variants("c++") == ("c++",)
    assert name_variants("new-york") == ("new-york", "new york")
    assert name_variants("wal-mart's") == ("wal-mart's", "wal-mart", "wal mart")
    assert name_variants("1997 - 8") == ("1997 - 8",)  # only a hyphen inside a word is a space
    assert name_variants("'s") == ("'s", "s")


def test_surface_helper_on_spans() -> None:
    assert surface("A  B", 0, 3) == "A  B"
