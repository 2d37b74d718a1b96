"""`review`, `run --html`, `verify --html`: the page of a job from verified on, read-only, well-formed, inert."""

from __future__ import annotations

import hashlib
import re
from html import unescape
from pathlib import Path

import orjson
import pytest

from extractor.jobs import State
from extractor.review.data import _marks
from extractor.verify.corpus import iter_job_texts
from tests.job_fixtures import invoke_json
from tests.openai_emulator import BatchEmulator
from tests.redocred import load_redocred, write_documents
from tests.verify_fixtures import StrictHTML, answer, ingest, invoke, prepare, store, write_docs

TEXTS = {
    "a.txt": "Ann Lee joined Microsoft in 1998.\nShe moved to Zurich, then to AT&T <b>headquarters</b>.\n",
    "b.txt": "Bob Stone founded Acme Corp in Paris. </script><script>alert(1)</script>\n",
}
ANSWERS = {
    "a.txt": answer(
        [
            ("Ann Lee", "PERSON"),
            ("Microsoft's", "ORGANIZATION"),
            ("Zürich", "LOCATION"),
            ("AT&T", "ORGANIZATION"),
            ("Acme Corp", "ORGANIZATION"),
            ("Zorblax <Quint>", "PERSON"),
        ]
    ),
    "b.txt": answer([("Bob Stone", "PERSON"), ("Paris", "LOCATION")]),
}


def _verified(tmp_path: Path):
    job = ingest(prepare(write_docs(tmp_path / "docs", TEXTS)), ANSWERS, tmp_path)
    assert invoke("verify", job.id).exit_code == 3
    return store().load(job.id)


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _data(html: str) -> tuple[dict, list[dict]]:
    """The page's index block and its document bodies, read back as the browser reads them."""
    blocks = dict(re.findall(r'<script type="application/json" id="([\w-]+)">(.*?)</script>', html, flags=re.S))
    index = orjson.loads(blocks.pop("review-data"))
    bodies = [body for key in sorted(blocks, key=lambda k: int(k.split("-")[1])) for body in orjson.loads(blocks[key])]
    return index, bodies


def test_review_writes_the_page_and_changes_nothing_in_the_job(tmp_path: Path) -> None:
    job = _verified(tmp_path)
    before = _snapshot(job.path)
    page = tmp_path / "out" / "page.html"

    result = invoke("review", job.id, "--html", str(page), "--json")

    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout) == {
        "job_id": job.id,
        "state": "verified",
        "html_file": str(page),
        "summary": orjson.loads(job.verify_path.read_bytes())["summary"],
    }
    assert _snapshot(job.path) == before  # read-only: not a byte, not a timestamp
    assert store().load(job.id).state is State.VERIFIED


def test_the_page_is_well_formed_self_contained_and_carries_the_job_as_data_only(tmp_path: Path) -> None:
    job = _verified(tmp_path)
    page = tmp_path / "page.html"
    assert invoke("review", job.id, "--html", str(page)).exit_code == 0
    html = page.read_text(encoding="utf-8")

    parsed = StrictHTML.check(html)
    assert parsed.links == []  # the header links nowhere; documents are built by the page's script
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1])
    assert (
        "default-src 'none'" in csp
        and "script-src 'sha256-" in csp
        and "unsafe" not in csp.replace("style-src 'unsafe-inline'", "")
    )
    assert "http://" not in html and "https://" not in html  # nothing fetched, no CDN
    assert html.count("<script") == 3 and html.count("</script>") == 3  # the document's </script> stays in its string
    index, bodies = _data(html)
    assert [d["path"] for d in index["documents"]] == ["a.txt", "b.txt"]
    texts = dict(iter_job_texts(job))
    report = orjson.loads(job.verify_path.read_bytes())
    for doc, body in zip(report["documents"], bodies, strict=True):
        assert body["text"] == texts[doc["custom_id"]]
        for start, end, verdict, name, _type, _keys in body["marks"]:
            entity = next((e for e in doc["entities"] if e["name"] == name), None)
            if verdict == "source":  # where a name that leaked into another document sits here
                assert body["text"][start:end] == "Acme Corp" and entity is None
            else:
                assert entity["span"] == [start, end] and entity["verdict"] == verdict
    a, b = bodies
    assert [m[3] for m in a["marks"]] == ["Ann Lee", "Microsoft's", "Zürich", "AT&T"]
    assert a["leaked"] == [["Acme Corp", "ORGANIZATION", [{"doc": 1, "path": "b.txt", "key": "acme corp"}]]]
    assert a["ungrounded"] == [["Zorblax <Quint>", "PERSON"]]
    assert "(in b.txt)" in a["reasons"][0]  # reasons name the source by file name, not by hash
    assert b["marks"][1][2:] == ["source", "Acme Corp", "", ["acme corp"]]


def test_review_refuses_a_job_before_verify_naming_the_next_command(tmp_path: Path) -> None:
    job = ingest(prepare(write_docs(tmp_path / "docs", TEXTS)), ANSWERS, tmp_path)

    result = invoke("review", job.id, "--html", str(tmp_path / "page.html"))

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: Job {job.id} is collected, so it cannot be reviewed — run `extractor verify {job.id}` first"
    )
    assert not (tmp_path / "page.html").exists()


def test_review_open_hands_the_file_to_the_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _verified(tmp_path)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    monkeypatch.chdir(tmp_path)

    assert invoke("review", job.id, "--open").exit_code == 0

    page = tmp_path / f"review-{job.id}.html"
    assert page.exists() and opened == [page.resolve().as_uri()]


def test_overlapping_and_out_of_range_spans_are_skipped() -> None:
    entities = [
        {"name": "New York City", "verdict": "grounded", "span": [0, 13], "type": "LOCATION"},
        {"name": "York", "verdict": "fuzzy", "span": [4, 8], "type": "LOCATION"},  # inside the first: skipped
        {"name": "Gone", "verdict": "grounded", "span": [40, 44], "type": "PERSON"},  # past the end: skipped
        {"name": "Leak", "verdict": "leaked", "span": None, "type": "PERSON"},
        {"name": "is", "verdict": "grounded", "span": [14, 16], "type": "OTHER"},
    ]
    assert _marks("New York City is big & old", entities, {}) == [
        [0, 13, "grounded", "New York City", "LOCATION", []],
        [14, 16, "grounded", "is", "OTHER", []],
    ]
    # a name that leaked elsewhere lands on this document's own entity, else where it aligns in the text
    assert _marks("New York City is big & old", entities, {"new york city": "New York City", "old": "old"}) == [
        [0, 13, "grounded", "New York City", "LOCATION", ["new york city"]],
        [14, 16, "grounded", "is", "OTHER", []],
        [23, 26, "source", "old", "", ["old"]],
    ]


@pytest.mark.graph
def test_run_html_then_review_after_commit_and_after_rollback(emu: BatchEmulator, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_documents(load_redocred()[:2], docs)
    page = tmp_path / "run.html"

    ran = invoke_json("run", str(docs), "--backend", "openai", "--poll-interval", "0.05", "--html", str(page))

    assert ran["state"] == "committed" and ran["html_file"] == str(page)
    job_id = ran["job_id"]
    assert f'<code id="undo">extractor rollback {job_id}</code>' in page.read_text(encoding="utf-8")
    # the old spelling still works on a committed job, and leaves its verdicts as they are
    verify_json = (store().root / job_id / "verify.json").read_bytes()
    alias = invoke("verify", job_id, "--html", str(tmp_path / "alias.html"))
    assert alias.exit_code == 0, alias.stderr
    assert f"job {job_id} is committed" in alias.stderr and (tmp_path / "alias.html").exists()
    assert (store().root / job_id / "verify.json").read_bytes() == verify_json

    assert invoke("rollback", job_id).exit_code == 0
    after = tmp_path / "after.html"
    assert invoke("review", job_id, "--html", str(after)).exit_code == 0
    html = after.read_text(encoding="utf-8")
    assert "Rolled back: nothing of this job is in the graph" in html and "<b>rolled_back</b>" in html
    assert store().load(job_id).state is State.ROLLED_BACK


# ---------------------------------------------------------------- hostile strings, generated

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE = st.text(
    alphabet=st.sampled_from(list("<>/&\"'!-= scriptSCRIPT\u2028\u2029\x00\U0001f600é\n")), max_size=40
) | st.text(max_size=40)
SUMMARY = {
    "job_id": "j<1>",
    "state": "verified",
    "model": "m</title>",
    "backend": "local",
    "cost_usd": None,
    "created_at": None,
    "source": None,
    "undo": None,
    "committed": None,
    "rolled_back": False,
    "against": [],
    "policy": {"leaked": "quarantine", "ungrounded": "drop"},
    "summary": {
        "documents": 1,
        "clean": 1,
        "quarantined": 0,
        "failed": 0,
        "entities": dict.fromkeys(("grounded", "fuzzy", "leaked", "ungrounded"), 0),
        "relations": dict.fromkeys(("grounded", "fuzzy", "leaked", "ungrounded"), 0),
    },
}


@settings(max_examples=150, deadline=None)
@given(path=HOSTILE, title=HOSTILE, text=HOSTILE, name=HOSTILE, count=st.integers(1, 3))
def test_any_file_name_title_text_or_name_comes_back_as_the_same_string(
    path: str, title: str, text: str, name: str, count: int
) -> None:
    import io

    from extractor.review.page import render_review

    entries = [
        (
            {"path": path, "title": title, "status": "clean", "ungrounded": 1, "types": [name], "find": name.lower()},
            {
                "text": text,
                "reasons": [name],
                "marks": _marks(
                    text, [{"name": name, "verdict": "grounded", "span": [0, len(text)], "type": name}], {}
                ),
                "leaked": [],
                "ungrounded": [[name, name]],
                "relations": [[name, name, name, "ungrounded", name, None, []]],
            },
        )
        for _ in range(count)
    ]
    out = io.BytesIO()
    render_review(SUMMARY, iter(entries), out)
    html = out.getvalue().decode("utf-8")

    StrictHTML.check(html)
    index, bodies = _data(html)
    assert index["documents"] == [e for e, _ in entries] and bodies == [b for _, b in entries]
    assert html.count("<script") == 3  # no value opened or closed an element of its own
