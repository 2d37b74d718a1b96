"""`report --html`: the report as one standalone page (no scripts, no fetches) with small inline SVG charts."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from .storage import atomic_write_bytes

COLOURS = {"openai": "#1f77b4", "local": "#2ca02c"}
OTHER_COLOUR = "#7f7f7f"
WIDTH, HEIGHT, PAD, LEFT = 640, 180, 36, 72  # LEFT leaves room for the y-axis labels

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.alert { color: #b00020; } .ok { color: #2e7d32; } .muted { color: #777; }
svg { border: 1px solid #eee; margin-bottom: 1em; }
"""


def write_report_html(report: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, render_report_html(report).encode("utf-8"))


def render_report_html(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    check = report["check"]
    verdict = ('<p class="alert">Quality check failed: ' + "; ".join(escape(f["message"]) for f in check["flags"]) + "</p>"
               if check["failed"] else '<p class="ok">Quality check passed.</p>')
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>extractor report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>extractor report</h1>",
        f'<p class="muted">generated {escape(report["generated_at"])} from {escape(report["ledger"])}'
        + (f' · since {escape(report["since"])}' if report["since"] else "")
        + f' · flag threshold {report["threshold"]:.2f} below the trailing average of {report["window"]} jobs</p>',
        verdict,
        "<h2>Over jobs</h2>",
        _chart("cost per document (USD)", jobs, "cost_per_document", lambda v: f"${v:.6f}"),
        _chart("grounded rate", jobs, "grounded_rate", lambda v: f"{v:.0%}", fixed_max=1.0),
        "<h2>Per backend</h2>", _backends_table(report["backends"]),
        "<h2>Per job</h2>", _jobs_table(jobs),
        "<h2>What each lane costs</h2>", _lanes_table(jobs, report["price_model"]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _chart(title: str, jobs: list[dict[str, Any]], metric: str, fmt: Any, fixed_max: float | None = None) -> str:
    """Jobs left to right in time, one dot per job coloured by backend; hover a dot for its job."""
    points = [(i, job[metric], job) for i, job in enumerate(jobs) if job[metric] is not None]
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
    label = f'<text x="{LEFT}" y="14" font-size="12">{escape(title)}</text>'
    if not points:
        return f'{head}{label}<text x="{PAD}" y="{HEIGHT // 2}" font-size="12" fill="#777">no data yet</text></svg>'
    top = fixed_max if fixed_max is not None else max(v for _, v, _ in points) or 1.0
    span = max(len(jobs) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = LEFT + (WIDTH - LEFT - PAD) * (i / span if len(jobs) > 1 else 0.5)
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v / top if top else 0)
        return round(x, 1), round(y, 1)

    coords = [xy(i, v) for i, v, _ in points]
    line = " ".join(f"{x},{y}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x}" cy="{y}" r="4" fill="{COLOURS.get(job["backend"], OTHER_COLOUR)}">'
        f'<title>{escape(job["job_id"])} ({escape(job["backend"])}/{escape(job["model"])}): {escape(fmt(v))}</title></circle>'
        for (x, y), (_, v, job) in zip(coords, points, strict=True))
    axis = (f'<line x1="{LEFT}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
            f'<text x="2" y="{PAD + 4}" font-size="10">{escape(fmt(top))}</text>'
            f'<text x="2" y="{HEIGHT - PAD + 4}" font-size="10">{escape(fmt(0.0))}</text>')
    legend = "".join(f'<circle cx="{WIDTH - 150 + 70 * n}" cy="10" r="4" fill="{colour}"/>'
                     f'<text x="{WIDTH - 142 + 70 * n}" y="14" font-size="11">{name}</text>'
                     for n, (name, colour) in enumerate(COLOURS.items()))
    return f'{head}{label}{legend}{axis}<polyline points="{line}" fill="none" stroke="#bbb"/>{dots}</svg>'


def _jobs_table(jobs: list[dict[str, Any]]) -> str:
    head = ["job", "created", "backend", "model", "state", "documents", "cost/doc", "tokens in", "tokens out",
            "latency p50/p95/p99", "schema-valid", "grounded", "leaked", "quarantined", "trend (grounded)"]
    rows = []
    for job in jobs:
        trend = job["trend"].get("grounded_rate")
        flagged = bool(job["flags"])
        rows.append([
            _text(job["job_id"]), _text(job["created_at"] or ""), _text(job["backend"]), _text(job["model"]),
            _text(job["state"]), job["documents"], _usd(job["cost_per_document"]), job["tokens"]["prompt"],
            job["tokens"]["completion"], _latency(job["latency_ms"]),
            _pct(job["schema_valid_rate"]), _pct(job["grounded_rate"]), _pct(job["leak_rate"]),
            _pct(job["quarantine_rate"]),
            (f'<span class="{"alert" if flagged else "muted"}">{trend["delta"]:+.2f} vs {trend["trailing_average"]:.2f}</span>'
             if trend else ""),
        ])
    return _table(head, rows)


def _backends_table(backends: list[dict[str, Any]]) -> str:
    head = ["backend", "jobs", "documents", "cost", "cost/doc", "tokens in", "tokens out", "latency p50/p95/p99",
            "schema-valid", "grounded", "leaked", "quarantined"]
    rows = [[_text(b["backend"]), b["jobs"], b["documents"], _usd(b["cost_usd"]), _usd(b["cost_per_document"]),
             b["tokens"]["prompt"], b["tokens"]["completion"],
             _latency(b["latency_ms"]),
             _pct(b["schema_valid_rate"]), _pct(b["grounded_rate"]), _pct(b["leak_rate"]), _pct(b["quarantine_rate"])]
            for b in backends]
    return _table(head, rows)


def _lanes_table(jobs: list[dict[str, Any]], price_model: str) -> str:
    head = ["job", "backend", "priced as", "paid", "local lane", "OpenAI batch", "OpenAI live", "saved vs live"]
    rows = [[_text(j["job_id"]), _text(j["backend"]), _text(j["lanes"]["priced_as"]), _usd(j["lanes"]["actual_usd"]),
             _usd(j["lanes"]["local_usd"]), _usd(j["lanes"]["openai_batch_usd"]), _usd(j["lanes"]["openai_live_usd"]),
             _usd(j["lanes"]["saved_vs_live_usd"])]
            for j in jobs if j["lanes"]]
    note = (f'<p class="muted">Local jobs are priced as {escape(price_model)} with their own token counts '
            "(another tokenizer would count somewhat differently).</p>")
    return _table(head, rows) + note


def _table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _text(value: str) -> str:
    return f'<span class="text">{escape(str(value))}</span>'


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _latency(lat: dict[str, Any]) -> str:
    return f'{_ms(lat["p50"])} / {_ms(lat["p95"])} / {_ms(lat["p99"])} ({lat["kind"]})'


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1000:.1f}s" if value >= 10_000 else f"{value:.0f}ms")
