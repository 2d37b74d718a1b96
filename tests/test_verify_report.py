"""`verify --html`: a well-formed standalone page, highlights at the spans' offsets, leaks linked, ungrounded listed."""

from __future__ import annotations

from pathlib import Path

import orjson

from extractor.verify.corpus import iter_job_texts
from extractor.verify.report import highlight
from tests.verify_fixtures import StrictHTML, answer, by_path, ingest, invoke, prepare, write_docs

TEXTS = {
    "a.txt": "Ann Lee joined Microsoft in 1998.\nShe moved to Zurich, then to AT&T <b>headquarters</b>.\n",
    "b.txt": "Bob Stone founded Acme Corp in Paris.\n",
}
ANSWERS = {
    "a.txt": answer([("Ann Lee", "PERSON"), ("Microsoft's", "ORGANIZATION"), ("Zürich", "LOCATION"), ("AT&T", "ORGANIZATION"),
                     ("Acme Corp", "ORGANIZATION"), ("Zorblax <Quint>", "PERSON"), ("Carol King", "PERSON")],
                    [("Ann Lee", "WORKS_FOR", "Acme Corp", "Ann Lee joined Microsoft")]),
    "b.txt": answer([("Bob Stone", "PERSON"), ("Acme Corp", "ORGANIZATION")]),
}


def test_html_report(tmp_path: Path) -> None:
    outside = write_docs(tmp_path / "outside", {"d.txt": "Carol King sang in Dublin.\n"})
    job = ingest(prepare(write_docs(tmp_path / "docs", TEXTS)), ANSWERS, tmp_path)
    page = tmp_path / "report" / "verify.html"

    result = invoke("verify", job.id, "--html", str(page), "--against", str(outside))

    assert result.exit_code == 3
    html = page.read_text(encoding="utf-8")
    parsed = StrictHTML.check(html)
    report = orjson.loads(job.verify_path.read_bytes())
    ids = {d["path"]: d["doc_id"] for d in job.documents()}
    assert {f"doc-{doc_id}" for doc_id in ids.values()} <= set(parsed.ids)

    # every highlight sits at its entity's span in the text the model saw, fuzzy ones marked as such
    texts = dict(iter_job_texts(job))
    a = by_path(report)["a.txt"]
    text_a = texts[a["custom_id"]]
    marks = {m["title"]: m for m in parsed.marks}
    for name, verdict, surface in [("Ann Lee", "grounded", "Ann Lee"), ("Microsoft's", "grounded", "Microsoft"),
                                   ("Zürich", "fuzzy", "Zurich"), ("AT&T", "grounded", "AT&T")]:
        mark = marks[name if verdict == "grounded" else f"fuzzy match for {name}"]
        start, end = map(int, mark["data-span"].split(","))
        assert mark["class"] == verdict
        assert mark["text"] == text_a[start:end] == surface
    assert len(parsed.marks) == 6  # four in a.txt, two in b.txt; nothing else is highlighted

    # leaked entities link to the document they came from; ungrounded ones are listed, escaped
    assert f"#doc-{ids['b.txt']}" in parsed.links
    carol = next(e for e in a["entities"] if e["name"] == "Carol King")
    assert carol["verdict"] == "leaked"
    assert (outside / "d.txt").resolve().as_uri() in parsed.links
    assert '<li class="ungrounded">Zorblax &lt;Quint&gt; (PERSON)</li>' in html
    assert "AT&amp;T</mark> &lt;b&gt;headquarters&lt;/b&gt;" in html  # document text is text, never markup
    assert "<script" not in html and "http" not in html.replace((outside / "d.txt").resolve().as_uri(), "")


def test_overlapping_and_out_of_range_spans_are_skipped() -> None:
    entities = [
        {"name": "New York City", "verdict": "grounded", "span": [0, 13]},
        {"name": "York", "verdict": "fuzzy", "span": [4, 8]},  # inside the first: skipped
        {"name": "Gone", "verdict": "grounded", "span": [40, 44]},  # past the end: skipped
        {"name": "Leak", "verdict": "leaked", "span": None},
        {"name": "is", "verdict": "grounded", "span": [14, 16]},
    ]
    html = highlight("New York City is big & old", entities)
    assert html == ('<mark class="grounded" title="New York City" data-span="0,13">New York City</mark> '
                    '<mark class="grounded" title="is" data-span="14,16">is</mark> big &amp; old')
