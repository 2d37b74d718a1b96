"""How `extractor report` and `extractor compare` look on a terminal (their --json is the dict itself)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from extractor.cli import console
from extractor.pricing import usd


def render_report(data: dict[str, Any]) -> None:
    """Quality per job, cost and latency per job, per backend, gates, then one line per alert."""
    printer = _table_printer()
    jobs = data["jobs"]
    printer.print(
        console.rows_table(
            f"quality per job ({data['ledger']})",
            [
                "job",
                "backend",
                "model",
                "state",
                "docs",
                "schema-valid",
                "grounded",
                "leaked",
                "quarantined",
                "grounded trend",
            ],
            [
                [
                    j["job_id"],
                    j["backend"],
                    j["model"],
                    j["state"],
                    j["documents"],
                    _pct(j["schema_valid_rate"]),
                    _pct(j["grounded_rate"]),
                    _pct(j["leak_rate"]),
                    _pct(j["quarantine_rate"]),
                    _trend(j),
                ]
                for j in jobs
            ],
        )
    )
    printer.print(
        console.rows_table(
            f"cost and latency per job (local tokens priced as {data['price_model']} on the OpenAI lanes)",
            [
                "job",
                "paid",
                "cost/doc",
                "tokens in/out",
                "latency ms p50/95/99",
                "OpenAI batch",
                "OpenAI live",
                "saved vs live",
            ],
            [
                [
                    j["job_id"],
                    _usd(j["cost_usd"]),
                    _usd(j["cost_per_document"]),
                    _tokens(j),
                    _latency(j["latency_ms"]),
                    _usd((j["lanes"] or {}).get("openai_batch_usd")),
                    _usd((j["lanes"] or {}).get("openai_live_usd")),
                    _usd((j["lanes"] or {}).get("saved_vs_live_usd")),
                ]
                for j in jobs
            ],
        )
    )
    printer.print(
        console.rows_table(
            "per backend",
            [
                "backend",
                "jobs",
                "docs",
                "cost",
                "cost/doc",
                "tokens in/out",
                "latency ms p50/95/99",
                "schema-valid",
                "grounded",
                "leaked",
                "quarantined",
            ],
            [
                [
                    b["backend"],
                    b["jobs"],
                    b["documents"],
                    _usd(b["cost_usd"]),
                    _usd(b["cost_per_document"]),
                    _tokens(b),
                    _latency(b["latency_ms"]),
                    _pct(b["schema_valid_rate"]),
                    _pct(b["grounded_rate"]),
                    _pct(b["leak_rate"]),
                    _pct(b["quarantine_rate"]),
                ]
                for b in data["backends"]
            ],
        )
    )
    gates = [j for j in jobs if j["gate"]]
    if gates:
        printer.print(
            console.rows_table(
                f"gates (extraction they kept out: {_usd(data['saved_by_gates_usd'])} saved)",
                ["gate job", "passed", "rejected", "failed", "extraction saved"],
                [
                    [
                        j["job_id"],
                        j["gate"]["passed"],
                        j["gate"]["rejected"],
                        j["gate"]["failed"],
                        _usd(j["gate"]["saved_usd"]),
                    ]
                    for j in gates
                ],
            )
        )
    for alert in data["alerts"]:
        printer.print(f"flag: {alert['job_id']}: {alert['message']}", markup=False, highlight=False, soft_wrap=True)


def render_comparison(data: dict[str, Any], job_a: str, job_b: str) -> None:
    """Scores overall and per entity type, then the documents where the two jobs disagree most."""
    printer = _table_printer()
    scores = ["precision", "recall", "f1", "tp", "fp", "fn"]
    rows = [
        ["overall", *(data["overall"][k] for k in scores)],
        ["overall, ignoring type", *(data["overall_ignoring_type"][k] for k in scores)],
    ]
    rows += [[t, *(s[k] for k in scores)] for t, s in data["per_type"].items()]
    printer.print(
        console.rows_table(
            f"{job_a} ({data['models']['a']}) against {job_b} ({data['models']['b']}) on {data['documents']} documents",
            ["entities", *scores],
            rows,
        )
    )
    printer.print(
        console.rows_table(
            "documents where they disagree most",
            ["document", "f1", "agreed", "only in A", "only in B"],
            [
                [
                    d["path"],
                    d["f1"],
                    d["agreed"],
                    f"{d['only_a_count']}: " + ", ".join(d["only_a"]),
                    f"{d['only_b_count']}: " + ", ".join(d["only_b"]),
                ]
                for d in data["disagree_most"]
            ],
        )
    )


def _table_printer() -> Console:
    # Cron mail and log files have no terminal width: give the tables room instead of squeezing them to 80.
    return console.out if console.out.is_terminal else Console(width=200, highlight=False)


def _usd(value: Any) -> str:
    return usd(value, places=6, unknown="n/a")


def _pct(value: Any) -> str:
    return "" if value is None else f"{value:.1%}"


def _tokens(row: dict[str, Any]) -> str:
    return f"{row['tokens']['prompt']}/{row['tokens']['completion']}"


def _latency(lat: dict[str, Any]) -> str:
    return "/".join("-" if lat[k] is None else f"{lat[k]:.0f}" for k in ("p50", "p95", "p99")) + f" ({lat['kind']})"


def _trend(job: dict[str, Any]) -> str:
    t = job["trend"].get("grounded_rate")
    return "" if not t else f"{t['delta']:+.2f}" + (" !" if job["flags"] else "")
