"""The morning-after page: every document's text with its facts highlighted in place, leaks linked to their source."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from ..jobs import Job
from ..storage import atomic_write_bytes

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
.status{font-weight:bold;padding:0 .4em;border-radius:3px}
.clean{background:#dfd} .quarantined{background:#fdd} .failed{background:#eee}
mark.grounded{background:#cfc} mark.fuzzy{background:#ffe08a;border-bottom:2px dotted #b80}
.text{white-space:pre-wrap;background:#fafafa;padding:.8em;border:1px solid #eee}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
.leaked{color:#a00} .ungrounded{color:#666}
"""


def render_html(job: Job, report: dict[str, Any], texts: dict[str, str]) -> str:
    s = report["summary"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>verify {escape(job.id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Verification of job {escape(job.id)}</h1>",
        "<table><tr><th>documents</th><th>clean</th><th>quarantined</th><th>failed</th>"
        "<th>grounded</th><th>fuzzy</th><th>leaked</th><th>ungrounded</th></tr>",
        f"<tr><td>{s['documents']}</td><td>{s['clean']}</td><td>{s['quarantined']}</td><td>{s['failed']}</td>"
        + "".join(f"<td>{s['entities'][v]}</td>" for v in ("grounded", "fuzzy", "leaked", "ungrounded"))
        + "</tr></table>",
    ]
    for doc in report["documents"]:
        parts.append(_document_section(doc, texts.get(doc["custom_id"], "")))
    parts.append("</body></html>")
    return "\n".join(parts)


def _document_section(doc: dict[str, Any], text: str) -> str:
    status = doc["status"]
    out = [
        f'<h2 id="doc-{escape(doc["doc_id"])}">{escape(doc["path"])} '
        f'<span class="status {status}">{status}</span></h2>'
    ]
    if doc["reasons"]:
        out.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in doc["reasons"]) + "</ul>")
    out.append(f'<div class="text">{highlight(text, doc["entities"])}</div>')
    leaked = [e for e in doc["entities"] if e["verdict"] == "leaked"]
    if leaked:
        items = "".join(
            f'<li class="leaked">{escape(e["name"])} ({escape(e["type"] or "")}) — found in '
            + ", ".join(f'<a href="#doc-{escape(src)}">{escape(src)}</a>' for src in e["sources"]) + "</li>"
            for e in leaked
        )
        out.append(f"<p>Leaked from other documents:</p><ul>{items}</ul>")
    ungrounded = [e for e in doc["entities"] if e["verdict"] == "ungrounded"]
    if ungrounded:
        items = "".join(f'<li class="ungrounded">{escape(e["name"])} ({escape(e["type"] or "")})</li>' for e in ungrounded)
        out.append(f"<p>Found in no document:</p><ul>{items}</ul>")
    return "\n".join(out)


def highlight(text: str, entities: list[dict[str, Any]]) -> str:
    """Escape the text and wrap each found entity's span in <mark>; overlapping spans keep the first."""
    spans = sorted(
        (tuple(e["span"]) + (e["verdict"], e["name"]) for e in entities if e.get("span") and e["verdict"] in ("grounded", "fuzzy")),
        key=lambda s: (s[0], -s[1]),
    )
    out, pos = [], 0
    for start, end, verdict, name in spans:
        if start < pos or end > len(text):
            continue
        out.append(escape(text[pos:start]))
        out.append(f'<mark class="{verdict}" title="{escape(name)}">{escape(text[start:end])}</mark>')
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)


def write_html(job: Job, report: dict[str, Any], path: Path) -> None:
    from .verdicts import iter_job_texts

    texts = dict(iter_job_texts(job))
    atomic_write_bytes(path, render_html(job, report, texts).encode("utf-8"))
