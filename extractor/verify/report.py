"""The morning-after page: every document's text with its facts highlighted in place, leaks linked to their source.

One standalone HTML file (inline CSS, no scripts, nothing fetched). Each document is a
section with `id="doc-<doc_id>"`; found entities are `<mark>`s at their spans (fuzzy ones
dotted, with the name the model gave in the title), and `data-span="start,end"` gives the
offsets into the text as the model saw it. Leaked entities link to the documents that hold
them (in the page, or the file of a `--against` corpus); ungrounded ones are listed.
"""

from __future__ import annotations

import io
from html import escape
from pathlib import Path
from typing import IO, Any

from ..jobs import Job
from ..storage import atomic_file
from .corpus import TextCursor, iter_job_texts
from .verdicts import VERDICTS, read_report

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
.status{font-weight:bold;padding:0 .4em;border-radius:3px}
.clean{background:#dfd} .quarantined{background:#fdd} .failed{background:#eee}
mark.grounded{background:#cfc} mark.fuzzy{background:#ffe08a;border-bottom:2px dotted #b80}
.text{white-space:pre-wrap;background:#fafafa;padding:.8em;border:1px solid #eee}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}
li.leaked,td.leaked{color:#a00} li.ungrounded,td.ungrounded{color:#666}
"""


def write_html(job: Job, path: Path) -> None:
    """Write the page for a verified job to `path`, atomically, one document at a time."""
    report = read_report(job)
    with atomic_file(path) as raw:
        out = io.TextIOWrapper(raw, encoding="utf-8")
        render_html(job, report, out)
        out.flush()
        out.detach()  # atomic_file fsyncs and closes the file itself


def render_html(job: Job, report: dict[str, Any], out: IO[str]) -> None:
    """The whole page for verify.json `report` into `out`."""
    in_page = {doc["doc_id"] for doc in report["documents"]}
    links = _SourceLinks(in_page, report.get("external_sources") or {})
    title = f"verify {job.id}"
    out.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
              f"<style>{STYLE}</style></head><body>\n<h1>Verification of job {escape(job.id)}</h1>\n")
    out.write(_summary_table(report))
    texts = TextCursor(iter_job_texts(job))
    for doc in report["documents"]:
        out.write(_document_section(doc, texts.take(doc["custom_id"]) or "", links))
    out.write("</body></html>\n")


def _summary_table(report: dict[str, Any]) -> str:
    s = report["summary"]
    policy = report.get("policy") or {}
    head = "".join(f"<th>{v}</th>" for v in VERDICTS)
    rows = "".join(f"<tr><th>{kind}</th>" + "".join(f"<td>{s[kind][v]}</td>" for v in VERDICTS) + "</tr>"
                   for kind in ("entities", "relations"))
    against = "".join(f"<li>{escape(c['kind'])} {escape(c['ref'])}</li>" for c in report.get("against") or [])
    return (
        f"<p>{s['documents']} documents: {s['clean']} clean, {s['quarantined']} quarantined, {s['failed']} failed."
        f" Policy: leaked → {escape(str(policy.get('leaked')))}, ungrounded → {escape(str(policy.get('ungrounded')))}.</p>\n"
        f"<table><tr><th></th>{head}</tr>{rows}</table>\n"
        + (f"<p>Leaks also looked for in:</p><ul>{against}</ul>\n" if against else "")
    )


class _SourceLinks:
    """Where a source document id points: its section in this page, or the file it was read from."""

    def __init__(self, in_page: set[str], external: dict[str, dict[str, str]]):
        self._in_page = in_page
        self._external = external

    def link(self, doc_id: str) -> str:
        if doc_id in self._in_page:
            return f'<a href="#doc-{escape(doc_id)}">{escape(doc_id)}</a>'
        info = self._external.get(doc_id)
        if info is None:
            return escape(doc_id)
        where = f"{info.get('kind', '')} {info.get('ref', '')}: {info.get('path', '')}"
        if info.get("kind") == "folder":
            target = Path(info["ref"], info["path"]).resolve().as_uri()
            return f'<a href="{escape(target)}" title="{escape(where)}">{escape(doc_id)}</a>'
        return f'<span title="{escape(where)}">{escape(doc_id)}</span>'


def _document_section(doc: dict[str, Any], text: str, links: _SourceLinks) -> str:
    status = doc["status"]
    out = [f'<section id="doc-{escape(doc["doc_id"])}"><h2>{escape(doc["path"])} '
           f'<span class="status {status}">{status}</span></h2>']
    if doc["reasons"]:
        out.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in doc["reasons"]) + "</ul>")
    out.append(f'<div class="text">{highlight(text, doc["entities"])}</div>')
    leaked = [e for e in doc["entities"] if e["verdict"] == "leaked"]
    if leaked:
        items = "".join(
            f'<li class="leaked">{escape(e["name"])} ({escape(e["type"] or "")}) — found in '
            + ", ".join(links.link(src) for src in e["sources"]) + "</li>"
            for e in leaked
        )
        out.append(f"<p>Leaked from other documents:</p><ul>{items}</ul>")
    ungrounded = [e for e in doc["entities"] if e["verdict"] == "ungrounded"]
    if ungrounded:
        items = "".join(f'<li class="ungrounded">{escape(e["name"])} ({escape(e["type"] or "")})</li>' for e in ungrounded)
        out.append(f"<p>Found in no document:</p><ul>{items}</ul>")
    if doc["relations"]:
        out.append(_relations_table(doc["relations"], links))
    out.append("</section>\n")
    return "\n".join(out)


def _relations_table(relations: list[dict[str, Any]], links: _SourceLinks) -> str:
    rows = []
    for rel in relations:
        verdict = rel["verdict"]
        sources = ", ".join(links.link(src) for src in rel.get("sources") or [])
        rows.append(
            f"<tr><td>{escape(rel['source'])}</td><td>{escape(rel['type'] or '')}</td><td>{escape(rel['target'])}</td>"
            f'<td class="{verdict}">{verdict}{" — from " + sources if sources else ""}</td>'
            f"<td>{escape(rel.get('evidence') or '')}</td></tr>"
        )
    return ("<table><tr><th>source</th><th>type</th><th>target</th><th>verdict</th><th>evidence</th></tr>"
            + "".join(rows) + "</table>")


def highlight(text: str, entities: list[dict[str, Any]]) -> str:
    """Escape the text and wrap each found entity's span in <mark>; of overlapping spans the earliest, longest wins."""
    spans = [
        (e["span"][0], e["span"][1], e["verdict"], e["name"])
        for e in entities if e.get("span") and e["verdict"] in ("grounded", "fuzzy")
    ]
    spans.sort(key=lambda s: (s[0], -s[1]))
    out, pos = [], 0
    for start, end, verdict, name in spans:
        if start < pos or end > len(text) or start >= end:
            continue
        title = name if verdict == "grounded" else f"fuzzy match for {name}"
        out.append(escape(text[pos:start]))
        out.append(f'<mark class="{verdict}" title="{escape(title)}" data-span="{start},{end}">{escape(text[start:end])}</mark>')
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)
