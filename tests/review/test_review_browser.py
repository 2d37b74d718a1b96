"""The review page in a real headless Chromium: what a person checks the morning after a quarantine."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser_context fixture says what to install (and fails under CI)
    expect = None

from extractor.verify.corpus import iter_job_texts
from tests.verify_fixtures import answer, ingest, invoke, prepare, write_docs

pytestmark = pytest.mark.browser

B = "b<img src=x onerror=alert(1)>.txt"  # a hostile file name, shown as text
TEXTS = {
    "a.txt": (
        "Ann Lee joined Microsoft in 1998.\nShe moved to Zurich, then to AT&T <b>headquarters</b>. 😀 Emoji Town.\n"
    ),
    B: "Bob Stone founded Acme Corp in Paris.\n",
    "c.txt": "Carol King met <script>window.pwned = 1; alert('text')</script> Dora Diaz in Oslo.\n",
    "d.txt": "Nothing came back for this one.\n",
}
ANSWERS = {
    "a.txt": answer(
        [
            ("Ann Lee", "PERSON"),
            ("Microsoft's", "ORGANIZATION"),
            ("Zürich", "LOCATION"),
            ("AT&T", "ORGANIZATION"),
            ("Emoji Town", "LOCATION"),
            ("Acme Corp", "ORGANIZATION"),
            ("Zorblax <Quint>", "PERSON"),
        ],
        [("Ann Lee", "WORKS_FOR", "Acme Corp", "Ann Lee joined Microsoft")],
    ),
    B: answer(
        [("Bob Stone", "PERSON"), ("Acme Corp", "ORGANIZATION"), ("Paris", "LOCATION")],
        [("Acme Corp", "FOUNDED_BY", "Bob Stone", "Bob Stone founded Acme Corp")],
    ),
    "c.txt": answer(
        [
            ("Carol King", "PERSON"),
            ("Dora Diaz", "PERSON"),
            ("Oslo", "LOCATION"),
            ("<img src=y onerror=window.pwned=3>", "PERSON"),
        ],
        [("Carol King", "SPOUSE_OF", "Dora Diaz", "<script>window.pwned = 2</script>")],
    ),
}
# the words each document's highlights must sit on, with their verdicts (the name the model gave in brackets)
EXPECTED_MARKS = {
    "a.txt": [
        ("Ann Lee", "grounded"),
        ("Microsoft", "grounded"),
        ("Zurich", "fuzzy"),
        ("AT&T", "grounded"),
        ("Emoji Town", "grounded"),
    ],
    B: [("Bob Stone", "grounded"), ("Acme Corp", "grounded"), ("Paris", "grounded")],
    "c.txt": [("Carol King", "grounded"), ("Dora Diaz", "grounded"), ("Oslo", "grounded")],
    "d.txt": [],
}


@pytest.fixture
def reviewed(tmp_path: Path):
    """A verified job (one quarantined, one failed, one hostile file name) and its review page."""
    job = ingest(prepare(write_docs(tmp_path / "docs", TEXTS)), ANSWERS, tmp_path, errors=("d.txt",))
    assert invoke("verify", job.id).exit_code == 3
    page = tmp_path / "review.html"
    result = invoke("review", job.id, "--html", str(page))
    assert result.exit_code == 0, result.stderr
    return job, page


def _doc(page, path: str):
    return page.locator(f"section.doc[data-path={orjson.dumps(path).decode()}]")


def _visible_paths(page) -> list[str]:
    return page.eval_on_selector_all("section.doc:not([hidden])", "els => els.map(e => e.dataset.path)")


def test_highlights_sit_on_the_right_words(reviewed, open_page) -> None:
    job, path = reviewed
    opened = open_page(path)
    page = opened.page
    texts = {d["path"]: t for d in job.documents() for cid, t in iter_job_texts(job) if cid == d["custom_id"]}
    for doc_path, expected in EXPECTED_MARKS.items():
        section = _doc(page, doc_path)
        assert section.locator("h2 .path").text_content() == doc_path
        section.scroll_into_view_if_needed()
        section.locator(".text").wait_for()
        marks = section.locator(".text mark").evaluate_all(
            "ms => ms.map(m => [m.textContent, m.dataset.verdict, m.dataset.span])"
        )
        assert [(text, verdict) for text, verdict, _ in marks if verdict != "source"] == expected
        for text, _, span in marks:  # the offsets verify wrote (code points) hold the same words in Python
            start, end = map(int, span.split(","))
            assert texts[doc_path][start:end] == text
    # the legend spells every colour out
    assert page.locator("#legend mark").all_text_contents()[:4] == ["grounded", "fuzzy", "leaked", "ungrounded"]
    assert opened.errors == [] and opened.dialogs == []


def test_a_leaked_name_links_to_its_source_by_file_name_and_lands_on_the_span(reviewed, open_page) -> None:
    job, path = reviewed
    opened = open_page(path)
    page = opened.page
    a = page.locator("section.doc[data-path='a.txt']")
    link = a.locator("li.leaked a")
    assert link.text_content() == B  # the file name, not a hash
    visible = page.inner_text("main")
    assert not any(d["doc_id"] in visible for d in job.documents())  # no document is named by its hash anywhere
    link.click()
    target = _doc(page, B).locator("mark.flash")
    target.wait_for()
    assert target.text_content() == "Acme Corp"
    expect(target).to_be_in_viewport(ratio=1.0)  # all of it on screen, while the documents around it fill in
    assert page.evaluate("location.hash") == "#doc-1"
    # the relation's evidence is shown in the text on demand
    a.locator("button.show").first.click()
    assert page.evaluate("[...CSS.highlights.get('evidence')][0].toString()") == "Ann Lee joined Microsoft"
    assert opened.errors == [] and opened.dialogs == []


def test_filters_and_search_hide_and_show_the_right_documents(reviewed, open_page) -> None:
    _, path = reviewed
    opened = open_page(path)
    page = opened.page
    everything = ["a.txt", B, "c.txt", "d.txt"]
    assert _visible_paths(page) == everything
    assert page.text_content("#shown") == "4 documents"

    for status, expected in (
        ("quarantined", ["a.txt"]),
        ("failed", ["d.txt"]),
        ("clean", [B, "c.txt"]),
        ("", everything),
    ):
        page.select_option("#f-status", status)
        assert _visible_paths(page) == expected, status
    page.check("#f-ungrounded")
    assert _visible_paths(page) == ["a.txt", "c.txt"]
    page.uncheck("#f-ungrounded")
    assert page.eval_on_selector_all("#f-type option", "os => os.map(o => o.value)") == [
        "",
        "LOCATION",
        "ORGANIZATION",
        "PERSON",
    ]
    page.select_option("#f-type", "ORGANIZATION")
    assert _visible_paths(page) == ["a.txt", B]
    page.select_option("#f-type", "LOCATION")
    page.select_option("#f-status", "clean")
    assert _visible_paths(page) == [B, "c.txt"]  # filters combine
    page.select_option("#f-type", "")
    page.select_option("#f-status", "")

    for query, expected in (
        ("dora", ["c.txt"]),
        ("onerror=alert", [B]),
        ("BOB stone", [B]),
        ("d.txt", ["d.txt"]),
        ("zorblax <quint>", ["a.txt"]),
        ("no such name", []),
        ("", everything),
    ):
        page.fill("#f-search", query)
        page.wait_for_function("q => document.getElementById('docs').dataset.query === q", arg=query)
        assert _visible_paths(page) == expected, query
    assert opened.errors == [] and opened.dialogs == []


def test_script_in_a_document_a_file_name_and_an_answer_stays_inert(reviewed, open_page) -> None:
    _, path = reviewed
    opened = open_page(path)
    page = opened.page
    for section in page.locator("section.doc").all():
        section.scroll_into_view_if_needed()
    page.locator("section.doc[data-path='c.txt'] table.relations").wait_for()
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("main img, main script, main iframe").count() == 0
    # the index, one block of bodies (never executed) and the page's own script: nothing else
    assert page.eval_on_selector_all("script", "ss => ss.map(s => [s.type, s.id])") == [
        ["application/json", "review-data"],
        ["application/json", "chunk-0"],
        ["", ""],
    ]
    assert "<script>window.pwned = 1; alert('text')</script>" in page.inner_text("section.doc[data-path='c.txt'] .text")
    assert page.inner_text("section.doc[data-path='c.txt'] li.ungrounded .name") == "<img src=y onerror=window.pwned=3>"
    assert "<script>window.pwned = 2</script>" in page.inner_text("section.doc[data-path='c.txt'] table.relations")
    assert _doc(page, B).locator("h2 .path").text_content() == B
    assert "<b>headquarters</b>" in page.inner_text("section.doc[data-path='a.txt'] .text")
    assert opened.errors == [] and opened.dialogs == []


def test_a_large_job_opens_a_page_at_a_time_and_a_link_jumps_far(tmp_path: Path, open_page) -> None:
    """800 documents: a page of them at first, bodies parsed from blocks when needed; a link reaches the far end."""
    count = 800
    texts = {
        f"doc{i:05d}.txt": f"Person{i} Smith lives in Town{i}. {'Filler words here. ' * 20}\n" for i in range(count)
    }
    texts["zz-last.txt"] = "Quentin Quarry built the Far Bridge.\n"
    answers = {
        name: answer([(f"Person{i} Smith", "PERSON"), (f"Town{i}", "LOCATION")])
        for i, name in enumerate(texts)
        if name != "zz-last.txt"
    }
    answers["zz-last.txt"] = answer([("Quentin Quarry", "PERSON")])
    answers["doc00000.txt"] = answer([("Person0 Smith", "PERSON"), ("Far Bridge", "LOCATION")])  # leaked from the last
    job = ingest(prepare(write_docs(tmp_path / "docs", texts)), answers, tmp_path)
    assert invoke("verify", job.id).exit_code == 3
    path = tmp_path / "review.html"
    assert invoke("review", job.id, "--html", str(path)).exit_code == 0
    opened = open_page(path)
    page = opened.page
    assert page.locator("section.doc").count() == 50  # a page at a time
    assert page.text_content("#shown") == "showing 1–50 of 801 documents"
    assert page.text_content("#pager .meta").strip() == "page 1 of 17"
    assert page.evaluate("() => document.querySelectorAll('script[id^=chunk-]').length") == 9  # bodies in blocks of 100
    assert 0 < page.locator("section.doc .text").count() <= 50
    page.click("#pager button:text-is('next →')")
    assert page.text_content("#shown") == "showing 51–100 of 801 documents"
    assert _visible_paths(page)[0] == "doc00050.txt"
    page.click("#pager button:text-is('← previous')")
    link = page.locator("section.doc[data-path='doc00000.txt'] li.leaked a")
    assert link.text_content() == "zz-last.txt"
    link.click()
    landed = page.locator("section.doc[data-path='zz-last.txt'] mark.flash")
    landed.wait_for()
    assert landed.text_content() == "Far Bridge"
    expect(landed).to_be_in_viewport(ratio=1.0)
    assert page.text_content("#pager .meta").strip() == "page 17 of 17"
    assert page.locator("section.doc .text").count() <= 50
    page.fill("#f-search", "person799 smith")
    page.wait_for_function("() => document.getElementById('docs').dataset.query === 'person799 smith'")
    assert _visible_paths(page) == ["doc00799.txt"]
    page.locator("section.doc[data-path='doc00799.txt'] mark").first.wait_for()
    assert page.locator("section.doc[data-path='doc00799.txt'] mark").all_text_contents() == [
        "Person799 Smith",
        "Town799",
    ]
    assert opened.errors == []
