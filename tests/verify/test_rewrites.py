"""What real models write: dates, numbers and names rephrased, grounded by value and by person; leaks found reworded;
the guards."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor.verify.grounding import DocumentMatcher
from extractor.verify.index import LeakIndex, NameScanner
from extractor.verify.leaks import QUOTE, WORD, common_word, corroborated, leak_rule, quote_rule
from extractor.verify.normalize import normalize
from extractor.verify.values import Value, parse_value, value_forms
from tests.verify_fixtures import answer, by_path, ingest, prepare, verify, write_docs

MORRIS = (
    "Dr. Ella Mabel Morris was born on 3 July 1954 in Leeds. Her company employed 12,500 people and earned "
    "$1.5 million a year. She married John Ronald Smith on March 5, 2001.\n"
)
OTHER = "The treaty was signed on 14 February 1921 in Riga by the delegates.\n"

# The issue's table: answer, verdict, the text its span must cover in MORRIS.
TABLE = [
    ("3 July 1954", "grounded", "3 July 1954"),
    ("12,500", "grounded", "12,500"),
    ("$1.5 million", "grounded", "$1.5 million"),
    ("Morris", "grounded", "Morris"),
    ("1954-07-03", "fuzzy", "3 July 1954"),
    ("July 3, 1954", "fuzzy", "3 July 1954"),
    ("2001-03-05", "fuzzy", "March 5, 2001"),
    ("5 March 2001", "fuzzy", "March 5, 2001"),
    ("1,500,000", "fuzzy", "1.5 million"),
    ("Ella Morris", "fuzzy", "Ella Mabel Morris"),
    ("Ella M. Morris", "fuzzy", "Ella Mabel Morris"),
    ("John R. Smith", "fuzzy", "John Ronald Smith"),
    ("Dr. Morris", "fuzzy", "Ella Mabel Morris"),
]


def doc_ids(job) -> dict[str, str]:
    return {d["path"]: d["doc_id"] for d in job.documents()}


PEOPLE = {"Morris", "Ella Morris", "Ella M. Morris", "John R. Smith", "Dr. Morris"}


@pytest.mark.parametrize(("name", "verdict", "surface"), TABLE)
def test_each_row_of_the_table_grounds_with_the_span_of_the_form_found(name: str, verdict: str, surface: str) -> None:
    found = DocumentMatcher(MORRIS).align(name, "PERSON" if name in PEOPLE else "DATE")
    assert found.verdict == verdict
    assert MORRIS[found.span[0] : found.span[1]] == surface


def test_the_table_through_the_cli_and_a_leak_reworded_as_a_value(tmp_path: Path) -> None:
    job = prepare(write_docs(tmp_path / "docs", {"morris.txt": MORRIS, "treaty.txt": OTHER}))
    entities = [(name, "PERSON" if name in PEOPLE else "DATE") for name, _, _ in TABLE] + [("1921-02-14", "DATE")]
    job = ingest(job, {"morris.txt": answer(entities), "treaty.txt": answer([("Riga", "LOCATION")])}, tmp_path)

    code, report = verify(job)

    doc = by_path(report)["morris.txt"]
    verdicts = {e["name"]: e for e in doc["entities"]}
    for name, verdict, surface in TABLE:
        start, end = verdicts[name]["span"]
        assert (verdicts[name]["verdict"], MORRIS[start:end]) == (verdict, surface), name
    leak = verdicts["1921-02-14"]
    assert leak["verdict"] == "leaked" and leak["sources"] == [doc_ids(job)["treaty.txt"]]
    assert code == 3 and doc["status"] == "quarantined"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("John Smith met Jane Smith.", "Jane Doe"),
        ("Jane Smith spoke.", "John Smith"),
        ("John Smith and James Smith spoke.", "J. Smith"),
        ("John Smith and James Smith spoke.", "Dr. Smith"),
        ("John Smyth spoke.", "John Smith"),
        ("John Smyth spoke.", "J. Smith"),
        ("The Bank of England lent money.", "Bank of America"),
        ("She lived in the parish.", "Paris"),
        ("Parish records were kept.", "Paris"),
        ("John Ronald Smith spoke.", "John R. Smyth"),
        ("John Ronald Smith spoke.", "John P. Smith"),
        ("John Smith spoke.", "John R. Smith"),  # the answer's middle initial is not in the text
        ("John Smith spoke.", "John Smith Jr"),
        ("Ella Mabel Morris spoke.", "Emma Morris"),
        ("It happened on 03/07/1954.", "1954-07-03"),  # 3 July or March 7: never guessed
        ("It happened on 03/07/1954.", "1954-03-07"),
        ("It happened on 3 July 1954.", "1954-07-04"),
        ("It happened on 3 July 1954.", "1955-07-03"),
        ("It happened on 13 July 1954.", "1954-07-03"),
        ("They earned $1.5 million.", "1,500,001"),
        ("They earned 1.5 million.", "$1,500,000"),  # a unit the text does not have
        ("They employed 12,500 people.", "2,500"),
        ("They employed 21,500,000 people.", "1,500,000"),
        ("Growth was 45 %.", "$45"),
        ("It grew in the 1980s.", "1980"),
    ],
)
def test_guards_keep_other_people_other_values_and_near_names_apart(text: str, name: str) -> None:
    assert DocumentMatcher(text).align(name, "PERSON").verdict is None


@pytest.mark.parametrize(
    ("text", "name", "surface"),
    [
        ("John Smith and John Smith Jr spoke.", "J. Smith", "John Smith"),
        ("John Smith met Smith again; Smith left.", "Mr. Smith", "John Smith"),
        ("It happened on 14/02/1921.", "14 February 1921", "14/02/1921"),
        ("It happened on 02/14/1921.", "1921-02-14", "02/14/1921"),
        ("Growth was 45 percent.", "45%", "45 percent"),
        ("They paid USD 3,250 in fees.", "$3,250", "USD 3,250"),
        ("On the 3rd of July 1954 it began.", "July 3, 1954", "3rd of July 1954"),
        ("On Jul. 3 , 1954 it began.", "1954-07-03", "Jul. 3 , 1954"),
        ("It cost 2.4 billion euros.", "2,400,000,000", "2.4 billion"),
    ],
)
def test_other_written_forms_ground(text: str, name: str, surface: str) -> None:
    found = DocumentMatcher(text).align(name, "PERSON")
    assert found.verdict == "fuzzy", name
    assert text[found.span[0] : found.span[1]] == surface


def test_a_reworded_person_or_value_is_found_in_another_document() -> None:
    rules = {
        name: leak_rule(name, "PERSON", frozenset())
        for name in ("Ella M. Morris", "Ella Morris", "1921-02-14", "Dr. Morris")
    }
    scanner = NameScanner(rules)
    scanner.scan("a", normalize("Ella Mabel Morris was born in Leeds on 14 February 1921."))
    scanner.scan("b", normalize("Emma Morris was born in York."))
    assert scanner.sources == {
        "ella m. morris": {"a"},
        "ella morris": {"a"},
        "1921-02-14": {"a"},
        "dr. morris": {"a", "b"},
    }


@pytest.mark.parametrize("name", ["12", "1954", "2001", "1.5 million", "45%", "3", "$1,000", "18th", "1st", "1990th"])
def test_small_numbers_and_common_years_are_never_leaks(name: str) -> None:
    assert leak_rule(name, "NUMBER", frozenset()) is None


def test_a_count_that_looks_like_a_year_is_a_leak_only_as_a_count() -> None:
    rule = leak_rule("1,837's", "NUMBER", frozenset())
    assert rule is not None and rule.kind == "value"
    scanner = NameScanner({"1,837's": rule})
    scanner.scan("year", normalize("The town was founded in 1837."))
    scanner.scan("count", normalize("The census counted 1,837 people."))
    assert scanner.sources == {"1,837's": {"count"}}


@pytest.mark.parametrize("name", ["place", "Place", "PLACES", "Person", "company", "LOCATION", "location"])
def test_type_words_and_generic_nouns_are_never_leaks(name: str) -> None:
    assert leak_rule(name, "OTHER", frozenset({"location", "person"})) is None


def test_a_one_token_name_counts_only_where_written_as_a_name() -> None:
    documents = [
        ("common", "The meeting took place in the old hall."),
        ("sentence-start", "Place names were changed in 1921. Meanwhile the river rose."),
        ("first-name", "William Shakespeare wrote plays."),
        ("name", "He sailed from Paris to Lisbon."),
        ("surname", "The novel by John Morris sold well."),
        # a word the language hardly uses is a name even where any word would be capitalised
        ("rare-sentence-start", "Crupet is a village in Belgium."),
        ("lower-case", "The crupet and the carl were gone."),
    ]
    words = ("place", "william", "paris", "morris", "crupet", "meanwhile", "lisbon")
    scanner = NameScanner(dict.fromkeys(words, WORD))
    for doc_id, text in documents:
        scanner.scan(doc_id, normalize(text))
    scanner.settle(len(documents))
    assert scanner.sources == {
        "place": set(),
        "william": set(),
        "paris": set(),
        "morris": {"surname"},  # capitalised mid-sentence, and rarer than the language's ~3,000 commonest words
        "crupet": {"rare-sentence-start"},  # no word of the language: a name, wherever it stands
        "meanwhile": set(),  # a word of the language, capitalised at a sentence start: not a name
        "lisbon": {"name"},
    }
    # weak hits, a leak only where corroborated: a first name, one of the commonest words ("Paris" 4.8)
    assert scanner.weak == {"william": {"first-name"}, "paris": {"name"}}
    # without the original text (case unknown) every occurrence counts, as a plain name does
    assert LeakIndex(documents).find_sources(["place"]) == {"place": {"common", "sentence-start"}}


def test_a_name_written_as_a_first_name_anywhere_in_the_job_is_weak_everywhere() -> None:
    scanner = NameScanner({"carl": WORD, "moland": WORD})
    scanner.scan("a", normalize("The song was sung by Carl Moland in 1950."))
    scanner.scan("b", normalize("The prize went to Carl, a farmer."))
    scanner.scan("c", normalize("The band was led by Moland for a year."))
    scanner.settle(3)
    assert scanner.sources == {"carl": set(), "moland": {"a", "c"}}
    assert scanner.weak == {"carl": {"a", "b"}}


def test_a_one_token_name_or_value_in_too_many_documents_is_not_a_leak() -> None:
    scanner = NameScanner({"lisbon": WORD, "ravenna": WORD})
    for i in range(40):
        scanner.scan(
            f"d{i}", normalize(f"Document {i} mentions Lisbon, the capital." + (" And Ravenna." if i < 4 else ""))
        )
    scanner.settle(40)  # 10 % of 40 is 4: Ravenna (4 documents) still counts, Lisbon (40) does not
    assert scanner.sources == {"lisbon": set(), "ravenna": {f"d{i}" for i in range(4)}}


def test_generic_words_and_first_names_do_not_quarantine_an_honest_job(tmp_path: Path) -> None:
    # The issue's real-model case: the answers list "place", "Place" and "William", found in other documents.
    texts = {
        "a.txt": "The festival took place in Leeds in 1954.\n",
        "b.txt": "William Shakespeare wrote Hamlet in London.\n",
        "c.txt": "The games were held in Ravenna; the place was full.\n",
        "d.txt": "Nobody came to Lisbon that year.\n",
    }
    answers = {
        "a.txt": answer([("Leeds", "LOCATION"), ("Place", "LOCATION")]),
        "b.txt": answer([("William Shakespeare", "PERSON"), ("London", "LOCATION")]),
        "c.txt": answer([("Ravenna", "LOCATION"), ("place", "LOCATION")]),
        "d.txt": answer([("Lisbon", "LOCATION"), ("William", "PERSON"), ("1954", "DATE"), ("Ravenna", "LOCATION")]),
    }
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    docs = by_path(report)
    assert [docs[p]["status"] for p in ("a.txt", "b.txt", "c.txt")] == ["clean"] * 3
    d = {e["name"]: e["verdict"] for e in docs["d.txt"]["entities"]}
    assert d == {"Lisbon": "grounded", "William": "ungrounded", "1954": "ungrounded", "Ravenna": "leaked"}
    assert docs["d.txt"]["status"] == "quarantined" and code == 3


def test_a_first_name_is_a_leak_only_next_to_a_real_leak_from_the_same_document(tmp_path: Path) -> None:
    # benchmarks/concatenation: a stitched answer took "Carl" from a neighbour's "Carl Moland"; honest ones invented
    # "Juan", which another document holds as a first name, and "Peter" and "John", which one document holds together.
    texts = {
        "a.txt": "Crupet is a village in the province of Namur.\n",
        "b.txt": "The singers Lester Smith and Carl Moland met in Bakersfield in 1956.\n",
        "c.txt": "Juan Perez opened a bakery in Valencia.\n",
        "d.txt": "The bridge over the Meuse was rebuilt after the flood.\n",
        "e.txt": "The mill stood near the church of the village.\n",
        "f.txt": "The chapel shows Peter and John at the gate.\n",
        "g.txt": "The ferry to Texel sailed twice a day.\n",
    }
    answers = {
        "a.txt": answer([("Namur", "LOCATION"), ("Carl", "PERSON"), ("Bakersfield", "LOCATION")]),  # stitched with b
        "b.txt": answer([("Lester Smith", "PERSON"), ("Carl Moland", "PERSON"), ("Bakersfield", "LOCATION")]),
        "c.txt": answer([("Juan Perez", "PERSON"), ("Valencia", "LOCATION")]),
        "d.txt": answer([("Meuse", "LOCATION"), ("Juan", "PERSON")]),  # honest: an invented first name
        "e.txt": answer([("Crupet", "PERSON")]),  # stitched with a.txt: a sentence start, but no word of the language
        "f.txt": answer([("Peter", "PERSON"), ("John", "PERSON")]),
        "g.txt": answer([("Texel", "LOCATION"), ("Peter", "PERSON"), ("Carl", "PERSON")]),  # honest, two weak hits
    }
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    docs = by_path(report)
    a = {e["name"]: (e["verdict"], e["sources"]) for e in docs["a.txt"]["entities"]}
    b_id = docs["b.txt"]["doc_id"]
    assert a == {"Namur": ("grounded", []), "Carl": ("leaked", [b_id]), "Bakersfield": ("leaked", [b_id])}
    assert {e["name"]: e["verdict"] for e in docs["d.txt"]["entities"]} == {"Meuse": "grounded", "Juan": "ungrounded"}
    assert {e["name"]: e["verdict"] for e in docs["e.txt"]["entities"]} == {"Crupet": "leaked"}
    g = {e["name"]: e["verdict"] for e in docs["g.txt"]["entities"]}
    assert g == {"Texel": "grounded", "Peter": "ungrounded", "Carl": "ungrounded"}
    status = {path: docs[path]["status"] for path in texts}
    assert status == {
        "a.txt": "quarantined",
        "b.txt": "clean",
        "c.txt": "clean",
        "d.txt": "clean",
        "e.txt": "quarantined",
        "f.txt": "clean",
        "g.txt": "clean",
    }
    assert code == 3


def test_a_weak_hit_counts_only_where_another_finding_is_outright() -> None:
    assert corroborated({"carl": {"b"}}, {"carl": set(), "bakersfield": {"b"}}) == {"carl": {"b"}}
    assert corroborated({"peter": {"f"}, "john": {"f"}}, {"peter": set(), "john": set()}) == {
        "peter": set(),
        "john": set(),
    }
    assert corroborated({"juan": {"c"}}, {"juan": set(), "meuse": set()}) == {"juan": set()}
    assert corroborated({"juan": {"c", "x"}}, {"juan": set(), "perez": {"x"}}) == {"juan": {"x"}}
    assert corroborated({"juan": {"c"}}, {"juan": set()}, elsewhere={"c"}) == {"juan": {"c"}}  # an evidence quote


def test_an_evidence_quote_is_a_leak_only_when_it_could_only_be_copied(tmp_path: Path) -> None:
    # a 500-document job of real-model answers: evidence "false", found in other documents, quarantined an honest one
    texts = {
        "a.txt": "Ann Lee founded Acme in Leeds.\n",
        "b.txt": "The rumour proved false, and Acme moved to Leeds.\n",
        "c.txt": "Bo Chen was born in 1894 in Riga and taught there.\n",
        "d.txt": "Cy Diaz founded Zenith in Oslo.\n",
    }
    answers = {
        "a.txt": answer(
            [("Ann Lee", "PERSON"), ("Acme", "ORGANIZATION")],
            [("Acme", "FOUNDED_BY", "Ann Lee", "false"), ("Acme", "FOUNDED_BY", "Ann Lee", "He was born in")],
        ),
        "b.txt": answer([("Acme", "ORGANIZATION"), ("Leeds", "LOCATION")]),
        "c.txt": answer([("Bo Chen", "PERSON"), ("Riga", "LOCATION")]),
        # stitched: the quote is c.txt's sentence
        "d.txt": answer(
            [("Cy Diaz", "PERSON"), ("Zenith", "ORGANIZATION")],
            [("Zenith", "FOUNDED_BY", "Cy Diaz", "was born in 1894 in Riga")],
        ),
    }
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    docs = by_path(report)
    assert [r["verdict"] for r in docs["a.txt"]["relations"]] == ["ungrounded", "ungrounded"]
    assert docs["a.txt"]["status"] == "clean"
    (stitched,) = docs["d.txt"]["relations"]
    assert stitched["verdict"] == "leaked" and stitched["sources"] == [docs["c.txt"]["doc_id"]]
    assert docs["d.txt"]["status"] == "quarantined" and code == 3


@pytest.mark.parametrize("name", ["S.A.", "U.S.", "J. R.", "s.a"])
def test_initials_alone_are_never_a_leak(name: str) -> None:
    assert leak_rule(name, "ORGANIZATION", frozenset()) is None


def test_a_night_of_invented_first_names_quarantines_only_the_stitched_answers(tmp_path: Path) -> None:
    # 2,000 documents. Every answer but the stitched ones invents a first name that a few other documents use
    # ("Carl Moland", "Juan Perez"), as the honest Gemma answers did; 1 answer in 100 is stitched: it carries its
    # neighbour's place ("Zorvath-<n>", a real leak) and first name, and those two are leaked, nothing else is.
    # 12 names: each is a first name in 167 documents, under the 10 % share above which a name is the language's
    first_names = [
        "Carl",
        "Juan",
        "Lester",
        "Ramon",
        "Alice",
        "Jonathan",
        "Peter",
        "John",
        "Ruben",
        "Leroy",
        "Albert",
        "Susan",
    ]
    count = 2000
    texts, answers, stitched = {}, {}, set()
    for i in range(count):
        first = first_names[i % len(first_names)]
        texts[f"{i:04d}.txt"] = f"Item {i} was built in Kelvarin-{i} by {first} Moland-{i} in the spring.\n"
    for i in range(count):
        name = f"{i:04d}.txt"
        invented = first_names[(i + 3) % len(first_names)]
        entities = [(f"Kelvarin-{i}", "LOCATION"), (invented, "PERSON")]
        if i % 100 == 0:
            j = (i + 1) % count
            entities = [
                (f"Kelvarin-{i}", "LOCATION"),
                (f"Kelvarin-{j}", "LOCATION"),
                (first_names[j % len(first_names)], "PERSON"),
            ]
            stitched.add(name)
        answers[name] = answer(entities)
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)

    code, report = verify(job)

    docs = by_path(report)
    quarantined = {path for path, doc in docs.items() if doc["status"] == "quarantined"}
    assert quarantined == stitched and code == 3
    for path in stitched:
        i = int(path[:4])
        neighbour = docs[f"{(i + 1) % count:04d}.txt"]["doc_id"]
        verdicts = {e["name"]: (e["verdict"], e["sources"]) for e in docs[path]["entities"]}
        first = first_names[((i + 1) % count) % len(first_names)]
        assert verdicts[f"Kelvarin-{(i + 1) % count}"] == ("leaked", [neighbour])
        assert verdicts[first][0] == "leaked" and neighbour in verdicts[first][1]
    honest = next(doc for path, doc in docs.items() if path not in stitched)
    assert [e["verdict"] for e in honest["entities"]] == ["grounded", "ungrounded"]


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_name_or_quote_gets_a_rule_or_none_without_raising(text: str) -> None:
    rule = leak_rule(text, None, frozenset())
    assert rule is None or rule.kind in ("name", "word", "value", "person")
    assert quote_rule(text) in (None, QUOTE)
    assert common_word(text, at_sentence_start=True) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=datetime.date(1000, 1, 1), max_value=datetime.date(2999, 12, 31)))
def test_every_written_form_of_a_date_reads_back_as_that_date(day: datetime.date) -> None:
    value = Value("date", day.isoformat())
    for form in value_forms(value):
        assert parse_value(form) == value, form


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e13"), places=2), st.sampled_from(["", "$", "%", "€"])
)
def test_every_written_form_of_a_number_reads_back_as_that_number(amount: Decimal, unit: str) -> None:
    value = parse_value(f"{unit}{amount}" if unit != "%" else f"{amount}%")
    assert value is not None and value.kind == "number"
    for form in value_forms(value):
        back = parse_value(form)
        assert back is not None and (back.canonical, back.unit) == (value.canonical, value.unit), form


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_to_a_value_or_none_without_raising(text: str) -> None:
    value = parse_value(text)
    assert value is None or value.kind in ("date", "number")
