"""The review page: one self-contained HTML file, nothing fetched, every value from the job shown as text.

The summary is HTML written here. The documents travel as one JSON block in a
`<script type="application/json">` (never executed; every `<` in it is written as `\\u003c`, so no
value can close the element) and the page's script builds them with `textContent` only, so a
document, a file name or an answer is never parsed as markup. A Content-Security-Policy allows
no fetch of any kind and only the page's own script, by its hash.

At 10,000 documents the page stays usable: every document gets a light shell (its file name and
status) at once, and its text, highlights and relations are built when it scrolls near the screen.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from html import escape
from importlib import resources
from pathlib import Path
from typing import IO, Any

import orjson

from extractor.jobs import Job
from extractor.review.data import iter_review_documents, load_review
from extractor.storage import atomic_file

CHUNK = 100  # document bodies per JSON block, parsed when one of them is opened
PAGE = 50  # documents per page of the list

# Verdicts in the order the legend lists them, with what each means to a reader.
LEGEND = (
    ("grounded", "found in this document"),
    ("fuzzy", "found in this document, spelled a little differently"),
    ("leaked", "found only in other documents — listed below the text, linked to the source"),
    ("ungrounded", "found in no document — listed below the text"),
    ("source", "a name that leaked from here into another document"),
)


def write_review(job: Job, path: Path) -> dict[str, Any]:
    """Write the page for a job from verified on to `path` (atomically); the job is only read. Returns the summary."""
    report, summary = load_review(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as raw:
        render_review(summary, iter_review_documents(job, report), raw)
    return summary


def render_review(
    summary: dict[str, Any], documents: Iterable[tuple[dict[str, Any], dict[str, Any]]], out: IO[bytes]
) -> None:
    """The whole page into a binary stream.

    Order matters for the first screen: the browser runs the page's script as soon as it has read it,
    so the file holds the summary, the index of every document (what filters and search need) and the
    bodies of the first CHUNK documents, then the script, then the remaining bodies in blocks of
    CHUNK, each parsed only when one of its documents is opened. Bodies past the first block wait in
    a temporary file while the index is gathered, so memory holds the index, not the texts.
    """
    script = _asset("review.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    index: list[dict[str, Any]] = []
    first: list[bytes] = []
    with tempfile.TemporaryFile(prefix="extractor-review-") as rest:
        block: list[bytes] = []
        for entry, body in documents:
            index.append(entry)
            if len(index) <= CHUNK:
                first.append(_json(body))
                continue
            block.append(_json(body))
            if len(block) == CHUNK:
                _write_chunk(rest, len(index) - CHUNK, block)
                block = []
        if block:
            _write_chunk(rest, len(index) - len(block), block)
        title = f"review {summary['job_id']}"
        out.write(
            (
                '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
                f"<style>{_asset('review.css')}</style></head><body>\n"
                + _header(summary)
                + _controls()
                + _legend()
                + '<main id="docs" aria-live="polite"></main><nav id="pager" aria-label="pages"></nav>\n'
                + '<noscript><p class="notice">This page builds its documents with JavaScript; '
                "verify.json in the job folder holds the same verdicts.</p></noscript>\n"
            ).encode("utf-8")
        )
        out.write(
            b'<script type="application/json" id="review-data">{"summary":'
            + _json(summary)
            + f',"chunk":{CHUNK},"page":{PAGE},"documents":['.encode()
            + b",\n".join(map(_json, index))
            + b"]}</script>\n"
        )
        _write_chunk(out, 0, first)
        out.write(b"<script>" + script.encode("utf-8") + b"</script>\n")
        rest.seek(0)
        shutil.copyfileobj(rest, out, 1 << 20)
    out.write(b"</body></html>\n")


def _write_chunk(out: IO[bytes], start: int, bodies: list[bytes]) -> None:
    out.write(
        f'<script type="application/json" id="chunk-{start // CHUNK}">['.encode()
        + b",\n".join(bodies)
        + b"]</script>\n"
    )


def _json(value: Any) -> bytes:
    # `<` only ever occurs inside JSON strings, where \u003c means the same character
    return orjson.dumps(value).replace(b"<", b"\\u003c")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _header(s: dict[str, Any]) -> str:
    counts = s["summary"]
    verdicts = ("grounded", "fuzzy", "leaked", "ungrounded")
    cost = "n/a" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
    rows = "".join(
        f"<tr><th>{kind}</th>" + "".join(f'<td class="v-{v}">{counts[kind].get(v, 0)}</td>' for v in verdicts) + "</tr>"
        for kind in ("entities", "relations")
    )
    policy = s["policy"]
    against = "".join(f"<li>{escape(str(c.get('kind')))} {escape(str(c.get('ref')))}</li>" for c in s["against"])
    if s["undo"]:
        undo = f'<p class="undo">Committed. To undo the commit: <code id="undo">{escape(s["undo"])}</code></p>'
    elif s["rolled_back"]:
        undo = (
            f'<p class="undo">Rolled back: nothing of this job is in the graph. To commit it again: '
            f"<code>extractor commit {escape(s['job_id'])}</code></p>"
        )
    else:
        undo = '<p class="undo">Not committed: nothing of this job is in the graph yet.</p>'
    return (
        f'<header><h1>Review of job <span id="job-id">{escape(s["job_id"])}</span></h1>\n'
        f'<p class="meta">state <b>{escape(s["state"])}</b> · model <b>{escape(str(s["model"]))}</b> '
        f'({escape(str(s["backend"]))}) · cost <b id="cost">{cost}</b>'
        + (f" · created {escape(str(s['created_at']))}" if s["created_at"] else "")
        + "</p>\n"
        f'<p class="counts" id="counts"><b>{counts["documents"]}</b> documents: '
        f'<span class="badge clean">{counts["clean"]} clean</span> '
        f'<span class="badge quarantined">{counts["quarantined"]} quarantined</span> '
        f'<span class="badge failed">{counts["failed"]} failed</span></p>\n'
        f'<table class="verdicts"><tr><th></th>{"".join(f"<th>{v}</th>" for v in verdicts)}</tr>{rows}</table>\n'
        f'<p class="meta">policy: leaked → {escape(str(policy.get("leaked")))}, '
        f"ungrounded → {escape(str(policy.get('ungrounded')))}</p>\n"
        + (f'<p class="meta">leaks also looked for in:</p><ul class="meta">{against}</ul>\n' if against else "")
        + undo
        + "</header>\n"
    )


def _controls() -> str:
    return (
        '<nav id="filters" aria-label="filters">'
        '<label>show <select id="f-status">'
        '<option value="">all documents</option><option value="quarantined">quarantined</option>'
        '<option value="failed">failed</option><option value="clean">clean</option></select></label> '
        '<label><input type="checkbox" id="f-ungrounded"> has ungrounded names</label> '
        '<label>entity type <select id="f-type"><option value="">any</option></select></label> '
        '<input type="search" id="f-search" placeholder="search names and file names" aria-label="search"> '
        '<span id="shown" class="meta"></span></nav>\n'
    )


def _legend() -> str:
    items = "".join(f'<li><mark class="v-{v}">{v}</mark> {escape(text)}</li>' for v, text in LEGEND)
    return (
        f'<ul id="legend" class="legend">{items}<li><mark class="evidence">evidence</mark> a relation\'s quote, '
        "shown on demand</li></ul>\n"
    )
