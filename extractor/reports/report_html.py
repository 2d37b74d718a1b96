"""`report --html`: the report as one standalone page (no scripts, no fetches) with inline SVG charts.

The charts go night by night (a night: the UTC date a job was created), one line per lane and
model: cost, documents, grounded / leaked / ungrounded rates, and latency percentiles. A night
that `report --check` alerts on is shaded red in every chart and listed above them.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from extractor.pricing import usd
from extractor.storage import atomic_write_bytes

COLOURS = {"openai": "#1f77b4", "local": "#2ca02c"}
PALETTE = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
NIGHT_W, NIGHT_H = 720, 200
OTHER_COLOUR = "#7f7f7f"
WIDTH, HEIGHT, PAD, LEFT = 640, 180, 36, 72  # LEFT leaves room for the y-axis labels

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.alert { color: #b00020; } .ok { color: #2e7d32; } .muted { color: #777; }
svg { border: 1px solid #eee; margin-bottom: 1em; }
.charts { display: flex; flex-wrap: wrap; gap: 0 1em; }
"""


def write_report_html(report: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, render_report_html(report).encode("utf-8"))


def render_report_html(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    check = report["check"]
    verdict = (
        '<p class="alert">Quality check failed: ' + "; ".join(escape(f["message"]) for f in check["flags"]) + "</p>"
        if check["failed"]
        else '<p class="ok">Quality check passed.</p>'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>extractor report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>extractor report</h1>",
        f'<p class="muted">generated {escape(report["generated_at"])} from {escape(report["ledger"])}'
        + (f" · since {escape(report['since'])}" if report["since"] else "")
        + f" · flag threshold {report['threshold']:.2f} below the trailing average of {report['window']} jobs</p>",
        verdict,
        *_night_charts(jobs, {f["job_id"] for f in check["flags"]}),
        "<h2>Over jobs</h2>",
        _chart("cost per document (USD)", jobs, "cost_per_document", lambda v: f"${v:.6f}"),
        _chart("grounded rate", jobs, "grounded_rate", lambda v: f"{v:.0%}", fixed_max=1.0),
        "<h2>Per backend</h2>",
        _backends_table(report["backends"]),
        "<h2>Per job</h2>",
        _jobs_table(jobs),
        "<h2>What each lane costs</h2>",
        _lanes_table(jobs, report["price_model"]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _chart(title: str, jobs: list[dict[str, Any]], metric: str, fmt: Any, fixed_max: float | None = None) -> str:
    """Jobs left to right in time, one dot per job coloured by backend; hover a dot for its job."""
    points = [(i, job[metric], job) for i, job in enumerate(jobs) if job[metric] is not None]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">'
    )
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
        f"<title>{escape(job['job_id'])} ({escape(job['backend'])}/{escape(job['model'])}): "
        f"{escape(fmt(v))}</title></circle>"
        for (x, y), (_, v, job) in zip(coords, points, strict=True)
    )
    axis = (
        f'<line x1="{LEFT}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<text x="2" y="{PAD + 4}" font-size="10">{escape(fmt(top))}</text>'
        f'<text x="2" y="{HEIGHT - PAD + 4}" font-size="10">{escape(fmt(0.0))}</text>'
    )
    legend = "".join(
        f'<circle cx="{WIDTH - 150 + 70 * n}" cy="10" r="4" fill="{colour}"/>'
        f'<text x="{WIDTH - 142 + 70 * n}" y="14" font-size="11">{name}</text>'
        for n, (name, colour) in enumerate(COLOURS.items())
    )
    return f'{head}{label}{legend}{axis}<polyline points="{line}" fill="none" stroke="#bbb"/>{dots}</svg>'


def _night_charts(jobs: list[dict[str, Any]], alerting: set[str]) -> list[str]:
    """Per night and per lane/model: cost, documents, the three rates, latency percentiles; alerting nights shaded."""
    nights = sorted({(job["created_at"] or "")[:10] for job in jobs})
    if not nights:
        return ["<h2>Night by night</h2>", '<p class="muted">no jobs yet</p>']
    at = {night: i for i, night in enumerate(nights)}
    by: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        by[(job["backend"], job["model"])][(job["created_at"] or "")[:10]].append(job)
    flagged = sorted({at[(j["created_at"] or "")[:10]] for j in jobs if j["job_id"] in alerting})
    colours = {key: PALETTE[n % len(PALETTE)] for n, key in enumerate(sorted(by))}

    def series(value: Any) -> dict[str, tuple[str, list[float | None]]]:
        return {
            f"{b}/{m}": (colours[(b, m)], [value(per_night.get(night, [])) for night in nights])
            for (b, m), per_night in sorted(by.items())
        }

    def total(key: str) -> Any:
        return lambda js: sum(j[key] for j in js if j[key] is not None) if any(j[key] is not None for j in js) else None

    def rate(*verdicts: str) -> Any:
        def of(js: list[dict[str, Any]]) -> float | None:
            found = sum((j["entities"].get(v) or 0) for j in js for v in verdicts)
            all_ = sum((j["entities"].get(v) or 0) for j in js for v in ("grounded", "fuzzy", "leaked", "ungrounded"))
            return found / all_ if all_ else None

        return of

    pct = lambda v: f"{v:.0%}"  # noqa: E731
    parts = ["<h2>Night by night</h2>"]
    if flagged:
        parts.append(
            '<p class="alert">Nights <code>report --check</code> alerts on: '
            + ", ".join(escape(nights[i]) for i in flagged)
            + " (shaded red below)</p>"
        )
    parts.append('<div class="charts">')
    parts.append(
        _night_chart(
            "cost per night (USD)",
            nights,
            series(total("cost_usd")),
            lambda v: f"${v:.2f}" if v >= 1 else f"${v:.6f}".rstrip("0").rstrip(".") if v else "$0",
            flagged,
        )
    )
    parts.append(_night_chart("documents per night", nights, series(total("documents")), lambda v: f"{v:.0f}", flagged))
    parts.append(
        _night_chart("grounded rate per night", nights, series(rate("grounded", "fuzzy")), pct, flagged, top=1.0)
    )
    parts.append(_night_chart("leaked rate per night", nights, series(rate("leaked")), pct, flagged, top=1.0))
    parts.append(_night_chart("ungrounded rate per night", nights, series(rate("ungrounded")), pct, flagged, top=1.0))
    for (backend, model), per_night in sorted(by.items()):
        kind = next((j["latency_ms"]["kind"] for js in per_night.values() for j in js), "request")
        lines = {
            q: (colour, [_last_latency(per_night.get(night, []), q) for night in nights])
            for q, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728"))
        }
        parts.append(_night_chart(f"latency per {kind}, {backend}/{model}", nights, lines, _ms, flagged))
    parts.append("</div>")
    parts.append('<p class="muted">A night sums its jobs of each lane and model; latency is that of its last job.</p>')
    return parts


def _last_latency(jobs: list[dict[str, Any]], q: str) -> float | None:
    values = [j["latency_ms"][q] for j in jobs if j["latency_ms"].get(q) is not None]
    return values[-1] if values else None


def _night_chart(
    title: str,
    nights: list[str],
    lines: dict[str, tuple[str, list[float | None]]],
    fmt: Any,
    flagged: list[int],
    top: float | None = None,
) -> str:
    """One line per series across the nights; hover a dot for its night and value."""
    w, h, left, pad, bottom = NIGHT_W, NIGHT_H, 72, 16, 40
    values = [v for _, vs in lines.values() for v in vs if v is not None]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" class="night" '
        f'aria-label="{escape(title)}">'
    )
    label = f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>'
    if not values:
        return f'{head}{label}<text x="{left}" y="{h // 2}" font-size="12" fill="#777">no data</text></svg>'
    top = top if top is not None else (max(values) or 1.0)
    step = (w - left - pad) / max(len(nights) - 1, 1)

    def x(i: int) -> float:
        return round(left + (step * i if len(nights) > 1 else (w - left - pad) / 2), 1)

    def y(v: float) -> float:
        return round(h - bottom - (h - bottom - 28) * (v / top if top else 0), 1)

    shade = "".join(
        f'<rect class="alert-night" x="{x(i) - max(step / 2, 8):.1f}" y="20" width="{max(step, 16):.1f}" '
        f'height="{h - bottom - 20}" fill="#fdd"><title>{escape(nights[i])}: report --check alerts</title></rect>'
        for i in flagged
    )
    axis = (
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - pad}" y2="{h - bottom}" stroke="#999"/>'
        f'<text x="{left - 6}" y="{y(top) + 4}" font-size="10" text-anchor="end">{escape(fmt(top))}</text>'
        f'<text x="{left - 6}" y="{h - bottom + 4}" font-size="10" text-anchor="end">{escape(fmt(0.0))}</text>'
    )
    every = max(1, len(nights) // 8)
    ticks = "".join(
        f'<text x="{x(i)}" y="{h - bottom + 16}" font-size="10" text-anchor="middle">{escape(night[5:])}</text>'
        for i, night in enumerate(nights)
        if i % every == 0 or i == len(nights) - 1
    )
    drawn = []
    for name, (colour, vs) in lines.items():
        points = [(x(i), y(v), i, v) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            drawn.append(
                f'<polyline points="{" ".join(f"{px},{py}" for px, py, _, _ in points)}" fill="none" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
        drawn.extend(
            f'<circle cx="{px}" cy="{py}" r="3.5" fill="{colour}"><title>{escape(nights[i])} · {escape(name)}: '
            f"{escape(fmt(v))}</title></circle>"
            for px, py, i, v in points
        )
    legend = "".join(
        f'<rect x="{left + 150 * n}" y="{h - 14}" width="10" height="10" fill="{colour}"/>'
        f'<text x="{left + 14 + 150 * n}" y="{h - 5}" font-size="10">{escape(name[:24])}</text>'
        for n, (name, (colour, _)) in enumerate(lines.items())
    )
    return f"{head}{shade}{label}{axis}{ticks}{''.join(drawn)}{legend}</svg>"


def _jobs_table(jobs: list[dict[str, Any]]) -> str:
    head = [
        "job",
        "created",
        "backend",
        "model",
        "state",
        "documents",
        "cost/doc",
        "tokens in",
        "tokens out",
        "latency p50/p95/p99",
        "schema-valid",
        "grounded",
        "leaked",
        "quarantined",
        "trend (grounded)",
    ]
    rows = []
    for job in jobs:
        trend = job["trend"].get("grounded_rate")
        flagged = bool(job["flags"])
        rows.append(
            [
                _text(job["job_id"]),
                _text(job["created_at"] or ""),
                _text(job["backend"]),
                _text(job["model"]),
                _text(job["state"]),
                job["documents"],
                _usd(job["cost_per_document"]),
                job["tokens"]["prompt"],
                job["tokens"]["completion"],
                _latency(job["latency_ms"]),
                _pct(job["schema_valid_rate"]),
                _pct(job["grounded_rate"]),
                _pct(job["leak_rate"]),
                _pct(job["quarantine_rate"]),
                (
                    f'<span class="{"alert" if flagged else "muted"}">{trend["delta"]:+.2f} vs '
                    f"{trend['trailing_average']:.2f}</span>"
                    if trend
                    else ""
                ),
            ]
        )
    return _table(head, rows)


def _backends_table(backends: list[dict[str, Any]]) -> str:
    head = [
        "backend",
        "jobs",
        "documents",
        "cost",
        "cost/doc",
        "tokens in",
        "tokens out",
        "latency p50/p95/p99",
        "schema-valid",
        "grounded",
        "leaked",
        "quarantined",
    ]
    rows = [
        [
            _text(b["backend"]),
            b["jobs"],
            b["documents"],
            _usd(b["cost_usd"]),
            _usd(b["cost_per_document"]),
            b["tokens"]["prompt"],
            b["tokens"]["completion"],
            _latency(b["latency_ms"]),
            _pct(b["schema_valid_rate"]),
            _pct(b["grounded_rate"]),
            _pct(b["leak_rate"]),
            _pct(b["quarantine_rate"]),
        ]
        for b in backends
    ]
    return _table(head, rows)


def _lanes_table(jobs: list[dict[str, Any]], price_model: str) -> str:
    head = ["job", "backend", "priced as", "paid", "local lane", "OpenAI batch", "OpenAI live", "saved vs live"]
    rows = [
        [
            _text(j["job_id"]),
            _text(j["backend"]),
            _text(j["lanes"]["priced_as"]),
            _usd(j["lanes"]["actual_usd"]),
            _usd(j["lanes"]["local_usd"]),
            _usd(j["lanes"]["openai_batch_usd"]),
            _usd(j["lanes"]["openai_live_usd"]),
            _usd(j["lanes"]["saved_vs_live_usd"]),
        ]
        for j in jobs
        if j["lanes"]
    ]
    note = (
        f'<p class="muted">Local jobs are priced as {escape(price_model)} with their own token counts '
        "(another tokenizer would count somewhat differently).</p>"
    )
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
    return usd(value, places=6, unknown="n/a")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _latency(lat: dict[str, Any]) -> str:
    return f"{_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])} ({lat['kind']})"


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1000:.1f}s" if value >= 10_000 else f"{value:.0f}ms")
