"""Grounding names and evidence quotes in one document: exact, fuzzy, near misses, spans, real Re-DocRED text."""

from __future__ import annotations

import random

import pytest

from extractor.verify.grounding import Alignment, DocumentMatcher
from extractor.verify.normalize import normalize_name
from tests.redocred import gold_answer, load_redocred, mention_text, redocred_text


def align(text: str, name: str) -> tuple[str | None, str | None]:
    """The verdict and the original surface form a name aligned to."""
    found = DocumentMatcher(text).align(name)
    return found.verdict, (text[found.span[0] : found.span[1]] if found.span else None)


def align_quote(text: str, quote: str) -> tuple[str | None, str | None]:
    found = DocumentMatcher(text).align_quote(quote)
    return found.verdict, (text[found.span[0] : found.span[1]] if found.span else None)


# --- exact pass --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "surface"),
    [
        ("Revenue grew, said Apple Inc. on Monday.", "Apple Inc.", "Apple Inc."),
        ("Revenue grew, said Apple Inc, on Monday.", "Apple Inc.", "Apple Inc"),  # trailing punctuation
        ("Revenue grew at Apple Inc. this year.", "Apple Inc", "Apple Inc"),
        ("Microsoft's new chief arrived.", "Microsoft", "Microsoft"),  # possessive in the text
        ("Then Microsoft arrived.", "Microsoft's", "Microsoft"),  # possessive in the name
        ("Then Microsoft’s chief arrived.", "Microsoft's", "Microsoft’s"),  # curly apostrophe
        ("A hit for the Beatles' label.", "Beatles", "Beatles"),
        ("He met THE ROLLING STONES.", "The Rolling Stones", "THE ROLLING STONES"),  # case
        ("Born in  New\n York  City.", "New York City", "New\n York  City"),  # whitespace
        ("A deal by ＡＢＣ Ｃｏｒｐ today.", "ABC Corp", "ＡＢＣ Ｃｏｒｐ"),  # NFKC full-width
        ("The ﬁnancial times.", "Financial Times", "ﬁnancial times"),  # NFKC ligature
        ("Visit the Cafe\u0301 Central.", "Café Central", "Cafe\u0301 Central"),  # decomposed accent
        ('He said "Willi" was here.', '"Willi"', '"Willi"'),
        ("Annual report by Ann.", "Ann", "Ann"),  # the second occurrence, on token boundaries
    ],
)
def test_exact_matches_ground_with_the_original_surface(text: str, name: str, surface: str) -> None:
    assert align(text, name) == ("grounded", surface)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("The Annual report.", "Ann"),
        ("Over 3,000 paintings.", "3"),
        ("Version 1.5 shipped.", "5"),
        ("Seen in O'Brien's pub.", "Brien"),
        ("Parisian style.", "Paris"),
    ],
)
def test_no_match_inside_a_token(text: str, name: str) -> None:
    assert align(text, name) == (None, None)


def test_exact_score_is_one_and_span_is_original_offsets() -> None:
    text = "  The  BANK of\nAmerica said."
    found = DocumentMatcher(text).align("Bank of America")
    assert found == Alignment("grounded", (7, 22), 1.0)
    assert text[7:22] == "BANK of\nAmerica"


# --- token and joined passes: realistic variants ground ------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "verdict", "surface"),
    [
        ("He moved to New York in 1990.", "New-York", "grounded", "New York"),  # hyphen vs space
        ("A New-York based firm.", "New York", "grounded", "New-York"),
        ('Wilfried " Willi " Schneider won.', 'Wilfried "Willi" Schneider', "grounded", 'Wilfried " Willi " Schneider'),
        ("Conrad S. ( Gus ) Shinn flew.", "Conrad S. (Gus) Shinn", "grounded", "Conrad S. ( Gus ) Shinn"),
        ("Born 13 March 1963 in Mediaș.", "Medias", "fuzzy", "Mediaș"),  # accents dropped
        ("Born in Zurich.", "Zürich", "fuzzy", "Zurich"),
        ("Two skeleton racers competed.", "skeleton racer", "fuzzy", "skeleton racers"),  # inflection, common words
        ("The companies merged.", "company", "fuzzy", "companies"),
        ("An international organization met.", "international organisation", "fuzzy", "international organization"),
        ("A song by Beatles fans.", "The Beatles", "fuzzy", "Beatles"),  # leading article
        ("Shares of Walmart fell.", "Wal-Mart", "fuzzy", "Walmart"),  # joined
        ("He sang Ca n't Take My Eyes Off You.", "Can't Take My Eyes Off You", "fuzzy", "Ca n't Take My Eyes Off You"),
        ("It cost $ 856 m in total.", "$856m", "fuzzy", "$ 856 m"),
        ("A rise of 15 % in sales.", "15%", "grounded", "15 %"),  # the symbol is part of the span
    ],
)
def test_realistic_variants_ground(text: str, name: str, verdict: str, surface: str) -> None:
    assert align(text, name) == (verdict, surface)


def test_fuzzy_scores_sit_below_one() -> None:
    matcher = DocumentMatcher("Born 13 March 1963 in Mediaș, two skeleton racers.")
    assert 0.9 <= matcher.align("Medias").score < 1.0
    assert 0.9 <= matcher.align("skeleton racer").score < 1.0


# --- precision: a different name that shares tokens or letters never grounds ----------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("John Smyth signed the deal.", "John Smith"),
        ("Loans from the Bank of England rose.", "Bank of America"),
        ("Signed to Apple Records in 1968.", "Apple Inc."),
        ("The parish church of Parish.", "Paris"),
        ("Peter Roberts scored.", "Peter Robert"),
        ("Born in Colombia.", "Columbia"),
        ("He joined the Beatles.", "Beatle"),
        ("Flo Rida performed.", "Florida"),
        ("He moved to Florida.", "Flo Rida"),
        ("He won in 1999.", "1998"),
        ("She was born on 13 March 1963.", "13 March 1964"),
        ("A rise of 15 years.", "15%"),
        ("AT T and others.", "AT&T"),
        ("He visited a hub.", "The Hub"),  # a title does not ground on a common noun
        ("A York New festival.", "New York"),  # order matters
        ("Bank. Of all things, America.", "Bank of America"),  # too much between the tokens
        ("The Organization met.", "Organisation"),  # capitalised: spelling variants are other names
        ("John Smith met Jane.", "John Smith Jr"),
    ],
)
def test_near_misses_do_not_ground(text: str, name: str) -> None:
    assert align(text, name) == (None, None)


def test_empty_and_punctuation_only_names_do_not_ground() -> None:
    matcher = DocumentMatcher("Some text, with - punctuation.")
    assert matcher.align("") == Alignment(None, None, 0.0)
    assert matcher.align("   ").verdict is None
    assert matcher.align("?!").verdict is None


# --- evidence quotes --------------------------------------------------------------------------

DOC = (
    'Wilfried " Willi " Schneider ( born 13 March 1963 in Mediaș , Transylvania ) is a German skeleton racer '
    "who competed from 1992 to 2002 . He won two medals in the men 's skeleton event at the FIBT World "
    "Championships with a gold in 1998 and a bronze in 1999 . He did not win in 2003 ."
)


@pytest.mark.parametrize(
    ("quote", "verdict", "surface"),
    [
        (
            "He won two medals in the men 's skeleton event",
            "grounded",
            "He won two medals in the men 's skeleton event",
        ),
        ("he won two medals in the men's skeleton event", "grounded", "he won two medals in the men 's skeleton event"),
        (
            "Schneider (born 13 March 1963 in Mediaș, Transylvania)",
            "grounded",
            "Schneider ( born 13 March 1963 in Mediaș , Transylvania",
        ),
        (
            "Schneider … is a German skeleton racer",  # an elision
            "grounded",
            "Schneider ( born 13 March 1963 in Mediaș , Transylvania ) is a German skeleton racer",
        ),
        (
            "He won two medal at the FIBT World Championships with a gold in 1998",  # dropped words, inflection
            "fuzzy",
            "He won two medals in the men 's skeleton event at the FIBT World Championships with a gold in 1998",
        ),
        (
            "a German skeleton racer who raced from 1992 until 2002",  # a light paraphrase
            "fuzzy",
            "a German skeleton racer who competed from 1992 to 2002",
        ),
    ],
)
def test_quotes_align(quote: str, verdict: str, surface: str) -> None:
    got_verdict, got_surface = align_quote(DOC, quote)
    assert (got_verdict, got_surface.lower() if got_surface else None) == (verdict, surface.lower())


@pytest.mark.parametrize(
    "quote",
    [
        "He won three medals in the men's skeleton event at the FIBT World Championships",  # number word
        "He won two medals in the men's skeleton event at the IBSF World Championships",  # a name changed
        "is a Swiss skeleton racer who competed from 1992 to 2002",  # a capitalised word changed
        "is a German skeleton racer who competed from 1992 to 2004",  # a digit changed
        "He did win in 2003",  # the negation dropped
        "He won a medal in 2003",
        "German racer Schneider won a gold in 1998 and a bronze in 1999",  # pieces from everywhere
        "skeleton racer medals gold bronze Championships",  # scattered words
        "Schneider … won an Oscar",  # an elided part that is not there
        "He won two medals in the men's skeleton event at the FIBT World Championships with a gold in 1998 %",
    ],
)
def test_quotes_that_change_the_fact_do_not_align(quote: str) -> None:
    assert align_quote(DOC, quote) == (None, None)


def test_quote_symbols_must_be_in_the_document() -> None:
    text = "Revenue rose 15 points in 2020 , and 15 % in 2021 ."
    assert align_quote(text, "Revenue rose 15% in 2020") == (None, None)
    assert align_quote(text, "Revenue rose 15 pts in 2020") == ("fuzzy", "Revenue rose 15 points in 2020")
    assert align_quote(text, "and 15% in 2021") == ("grounded", "and 15 % in 2021")
    assert align_quote(text, "Revenue rose 15 points in 2020") == ("grounded", "Revenue rose 15 points in 2020")


def test_quote_score_is_coverage() -> None:
    found = DocumentMatcher(DOC).align_quote("a German skeleton racer who raced from 1992 until 2002")
    assert found.verdict == "fuzzy"
    assert found.score == pytest.approx(0.8)


# --- real documents: Re-DocRED ---------------------------------------------------------------


@pytest.fixture(scope="module")
def redocred() -> list[dict]:
    return load_redocred()


def test_gold_mentions_ground_in_their_own_document(redocred: list[dict]) -> None:
    total = grounded = 0
    for doc in redocred[:100]:
        text = redocred_text(doc)
        matcher = DocumentMatcher(text)
        for cluster in doc["vertexSet"]:
            for mention in cluster:
                total += 1
                found = matcher.align(mention["name"])
                grounded += found.verdict is not None
                # the surface under the span is the mention as the text has it
                exact = matcher.align(mention_text(doc, mention))
                assert exact.verdict == "grounded"
                assert normalize_name(text[exact.span[0] : exact.span[1]]) == normalize_name(mention_text(doc, mention))
    assert grounded / total >= 0.99


def test_names_absent_from_a_document_do_not_ground_there(redocred: list[dict]) -> None:
    """Gold names of other documents: grounded exactly when their tokens occur there, rarely fuzzy otherwise."""
    rng = random.Random(7)
    absent = wrongly_grounded = fuzzy = 0
    for doc in redocred[:100]:
        tokens = [token.casefold() for sentence in doc["sents"] for token in sentence]
        matcher = DocumentMatcher(redocred_text(doc))
        for other in rng.sample(redocred, 5):
            if other is doc:
                continue
            for cluster in other["vertexSet"]:
                name = mention_text(other, cluster[0])
                wanted = name.casefold().split(" ")
                present = any(tokens[i : i + len(wanted)] == wanted for i in range(len(tokens) - len(wanted) + 1))
                found = matcher.align(name)
                if present:
                    assert found.verdict == "grounded", name
                    continue
                absent += 1
                if found.verdict == "grounded":
                    # only on token boundaries the Re-DocRED tokens hide ("U.S." holds "U.S", "1983–84" holds "1983")
                    wrongly_grounded += 1
                fuzzy += found.verdict == "fuzzy"
    assert absent > 1000
    assert wrongly_grounded / absent < 0.005
    assert fuzzy / absent < 0.005


def test_gold_evidence_sentences_ground(redocred: list[dict]) -> None:
    for doc in redocred[:30]:
        matcher = DocumentMatcher(redocred_text(doc))
        for relation in gold_answer(doc)["relations"]:
            assert matcher.align_quote(relation["evidence"]).verdict == "grounded"


def test_evidence_from_another_document_does_not_align(redocred: list[dict]) -> None:
    matcher = DocumentMatcher(redocred_text(redocred[0]))
    for doc in redocred[1:40]:
        for relation in gold_answer(doc)["relations"][:3]:
            assert matcher.align_quote(relation["evidence"]).verdict is None
