"""`report`: figures per job and per backend, trends against earlier jobs, `--check` for cron, lane prices, `--html`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from extractor.pricing import estimate_cost
from extractor.reports.reporting import parse_since
from tests.job_fixtures import invoke, invoke_json, job_from_answers
from tests.redocred import gold_answer, load_redocred, write_documents

NIGHTS = [f"2026-01-0{day}T02:00:00+00:00" for day in range(1, 8)]
MADE_UP = {
    "entities": [{"name": "Zorblax Quintaine", "type": "PERSON"}, {"name": "Vexmoor", "type": "LOCATION"}],
    "relations": [],
}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    written = write_documents(load_redocred()[:3], tmp_path / "docs")
    return tmp_path / "docs", written


def gold(written: dict[str, dict]) -> dict[str, dict]:
    return {name: gold_answer(doc) for name, doc in written.items()}


def test_check_fires_when_the_grounded_rate_drops_below_the_trailing_average(corpus, tmp_path: Path) -> None:
    docs, written = corpus
    earlier = [job_from_answers(docs, gold(written), tmp_path, created_at=night) for night in NIGHTS[:3]]
    assert invoke("report", "--check").exit_code == 0

    names = sorted(written)
    # Tonight two of three answers name things their documents never mention.
    answers = {**gold(written), names[0]: MADE_UP, names[1]: MADE_UP}
    tonight = job_from_answers(docs, answers, tmp_path, created_at=NIGHTS[3])

    result = invoke("report", "--check", "--json")

    assert result.exit_code == 3
    data = orjson.loads(result.stdout)
    by_id = {j["job_id"]: j for j in data["jobs"]}
    assert [j["job_id"] for j in data["jobs"]] == [j.id for j in earlier] + [tonight.id]
    assert all(by_id[j.id]["grounded_rate"] == 1.0 and by_id[j.id]["flags"] == [] for j in earlier)
    entities = len(gold(written)[names[2]]["entities"])
    assert by_id[tonight.id]["grounded_rate"] == round(entities / (entities + 4), 4)
    [flag] = data["check"]["flags"]
    assert (flag["job_id"], flag["metric"], flag["trailing_average"]) == (tonight.id, "grounded_rate", 1.0)
    assert flag["delta"] == pytest.approx(by_id[tonight.id]["grounded_rate"] - 1.0, abs=1e-6)
    assert by_id[tonight.id]["trend"]["grounded_rate"]["jobs"] == 3
    assert "quality dropped: " + tonight.id in result.stderr
    # A looser threshold lets the same drop pass.
    assert invoke("report", "--check", "--threshold", "0.9").exit_code == 0


def test_check_fires_on_a_schema_valid_drop_and_only_for_the_newest_job(corpus, tmp_path: Path) -> None:
    docs, written = corpus
    for night in NIGHTS[:2]:
        job_from_answers(docs, gold(written), tmp_path, created_at=night)
    broken = job_from_answers(docs, {name: "not json" for name in written}, tmp_path, created_at=NIGHTS[2])

    data = invoke_json("report", "--check", codes=(3,))
    [flag] = data["check"]["flags"]
    assert (flag["job_id"], flag["metric"], flag["value"], flag["trailing_average"]) == (
        broken.id,
        "schema_valid_rate",
        0.0,
        1.0,
    )

    # The next night is fine again: the old alarm is still shown, but no longer fails the check.
    fine = job_from_answers(docs, gold(written), tmp_path, created_at=NIGHTS[3])
    data = invoke_json("report", "--check")
    assert data["check"] == {"failed": False, "jobs_checked": [fine.id], "flags": []}
    assert [a["job_id"] for a in data["alerts"]] == [broken.id]
    # With --since, every job since that date is checked.
    assert invoke("report", "--check", "--since", NIGHTS[2][:10]).exit_code == 3
    since = invoke_json("report", "--since", NIGHTS[3][:10])
    assert [j["job_id"] for j in since["jobs"]] == [fine.id]
    assert since["jobs"][0]["trend"]["schema_valid_rate"]["jobs"] == 3  # trends still see the earlier nights


def test_local_jobs_show_what_their_tokens_would_cost_on_each_openai_lane(corpus, tmp_path: Path) -> None:
    docs, written = corpus
    local = job_from_answers(
        docs, gold(written), tmp_path, backend="local", prompt_tokens=1000, completion_tokens=300, created_at=NIGHTS[0]
    )
    remote = job_from_answers(
        docs,
        gold(written),
        tmp_path,
        backend="openai",
        model="gpt-4o-mini",
        prompt_tokens=1000,
        completion_tokens=300,
        created_at=NIGHTS[1],
    )

    data = invoke_json("report", "--price-model", "gpt-4.1")
    by_id = {j["job_id"]: j for j in data["jobs"]}

    lanes = by_id[local.id]["lanes"]
    assert lanes == {
        "priced_as": "gpt-4.1",
        "local_usd": 0.0,
        "actual_usd": 0.0,
        "openai_batch_usd": round(estimate_cost("gpt-4.1", 3000, 900, batch=True), 6),
        "openai_live_usd": round(estimate_cost("gpt-4.1", 3000, 900, batch=False), 6),
        "saved_vs_live_usd": round(estimate_cost("gpt-4.1", 3000, 900, batch=False), 6),
    }
    paid = estimate_cost("gpt-4o-mini", 3000, 900, batch=True)
    assert by_id[remote.id]["cost_usd"] == pytest.approx(paid)
    assert by_id[remote.id]["cost_per_document"] == pytest.approx(paid / 3, abs=1e-4)
    assert by_id[remote.id]["lanes"]["priced_as"] == "gpt-4o-mini"  # an OpenAI job is priced as itself
    assert by_id[remote.id]["lanes"]["saved_vs_live_usd"] == pytest.approx(paid, abs=1e-6)  # batch is half of live
    backends = {b["backend"]: b for b in data["backends"]}
    assert set(backends) == {"local", "openai"}
    assert (backends["local"]["documents"], backends["local"]["tokens"]) == (3, {"prompt": 3000, "completion": 900})
    assert backends["local"]["latency_ms"]["kind"] == "request" and backends["openai"]["latency_ms"]["kind"] == "batch"


def test_html_is_one_standalone_page_with_both_charts(corpus, tmp_path: Path) -> None:
    docs, written = corpus
    made = [job_from_answers(docs, gold(written), tmp_path, created_at=night) for night in NIGHTS[:2]]
    made.append(job_from_answers(docs, {n: MADE_UP for n in written}, tmp_path, created_at=NIGHTS[2]))
    page = tmp_path / "out" / "report.html"

    result = invoke("report", "--html", str(page))

    assert result.exit_code == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    HTMLParser().feed(html)  # parses without error
    assert (
        html.startswith("<!DOCTYPE html>")
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    charts = {re.search(r'aria-label="([^"]*)"', c)[1]: c for c in re.findall(r"<svg .*?</svg>", html, flags=re.S)}
    night = [name for name, chart in charts.items() if 'class="night"' in chart]
    assert night == [
        "cost per night (USD)",
        "documents per night",
        "grounded rate per night",
        "leaked rate per night",
        "ungrounded rate per night",
        f"latency per batch, openai/{made[0].manifest['model']}",
    ]
    assert all(charts[name].count("<circle cx=") == 3 for name in night[:5])  # a dot per night (one lane/model)
    grounded = re.findall(r"<title>(2026-01-0\d) · openai/[^:]*: (\d+%)</title>", charts["grounded rate per night"])
    assert grounded == [("2026-01-01", "100%"), ("2026-01-02", "100%"), ("2026-01-03", "0%")]
    ungrounded = re.findall(r"<title>(2026-01-0\d) · openai/[^:]*: (\d+%)</title>", charts["ungrounded rate per night"])
    assert ungrounded == [("2026-01-01", "0%"), ("2026-01-02", "0%"), ("2026-01-03", "100%")]
    # the night report --check alerts on is shaded in every night chart and named above them
    assert all(
        charts[name].count('class="alert-night"') == 1 and "2026-01-03: report --check alerts" in charts[name]
        for name in night[:5]
    )  # (the latency chart has no data: the Batch output files were not timed)
    assert "Nights <code>report --check</code> alerts on: 2026-01-03" in html
    assert charts["cost per document (USD)"].count("<circle cx=") == 3 + 2  # over jobs: a dot per job, the legend's two
    assert all(job.id in html for job in made)
    assert "Quality check failed" in html and "grounded rate 0.00 is 1.00 below" in html


def test_since_must_be_a_date() -> None:
    result = invoke("report", "--since", "last tuesday")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --since 'last tuesday' is not a date — use YYYY-MM-DD, an ISO timestamp "
        "like 2026-01-31T02:00:00+00:00, or 7d for the last seven days"
    )


def test_since_takes_dates_times_and_days_ago() -> None:
    now = datetime(2026, 1, 31, 7, 0, tzinfo=UTC)
    assert parse_since("2026-01-30") == datetime(2026, 1, 30, tzinfo=UTC)
    assert parse_since("2026-01-30T02:00:00+01:00") == datetime(2026, 1, 30, 1, 0, tzinfo=UTC)
    assert parse_since("2026-01-30T02:00:00") == datetime(2026, 1, 30, 2, 0, tzinfo=UTC)  # naive = UTC
    assert parse_since("7d", now=now) == datetime(2026, 1, 24, 7, 0, tzinfo=UTC)


def test_an_empty_ledger_reports_nothing_and_passes_the_check() -> None:
    data = invoke_json("report", "--check")

    assert (data["jobs"], data["backends"], data["alerts"], data["check"]["failed"]) == ([], [], [], False)


@pytest.mark.browser
def test_report_page_in_chromium_draws_the_nights_and_shades_the_alert(tmp_path: Path, open_page) -> None:
    written = write_documents(load_redocred()[:1], tmp_path / "docs")
    docs = tmp_path / "docs"
    for night in NIGHTS[:2]:
        job_from_answers(docs, gold(written), tmp_path, created_at=night)
    job_from_answers(docs, {n: MADE_UP for n in written}, tmp_path, created_at=NIGHTS[2])
    page_path = tmp_path / "report.html"
    assert invoke("report", "--html", str(page_path)).exit_code == 0

    opened = open_page(page_path, ready=None)
    page = opened.page
    charts = page.locator("svg.night")
    assert charts.count() == 6
    for chart in charts.all():  # drawn at their size, not collapsed or broken
        box = chart.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 150
    grounded = page.locator("svg[aria-label='grounded rate per night']")
    top, second, dropped = (c.bounding_box()["y"] for c in grounded.locator("circle").all()[:3])
    assert top == second < dropped - 100  # two nights at 100 %, the third at 0 %, far below
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    shade = grounded.locator("rect.alert-night")
    assert shade.count() == 1 and shade.bounding_box()["width"] > 0
    assert page.locator("p.alert").nth(1).inner_text().startswith("Nights report --check alerts on: 2026-01-03")
    assert opened.errors == [] and opened.dialogs == []
