"""`python -m benchmarks` (make bench) finds every benchmark, and --quick knows a small size for each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import QUICK, benchmark_names, main

REPO = Path(__file__).resolve().parents[1]


def test_every_benchmark_module_is_run_and_has_a_quick_size() -> None:
    files = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
    assert benchmark_names() == files
    assert sorted(QUICK) == files


def test_list_and_an_unknown_name() -> None:
    listed = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == benchmark_names()
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert refused.returncode == 2 and f"no benchmark nope — there are {', '.join(benchmark_names())}" in refused.stderr


def test_a_failing_benchmark_fails_the_run_and_the_rest_still_run(monkeypatch, capsys) -> None:
    calls: list[list[str]] = []

    def fake_call(command: list[str], cwd: Path) -> int:
        calls.append(command)
        return 3 if command[2] == "benchmarks.graph" else 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    assert main(["--quick", "--only", "graph,prepare"]) == 1
    assert [c[2:] for c in calls] == [["benchmarks.graph", *QUICK["graph"]], ["benchmarks.prepare", *QUICK["prepare"]]]
    assert "failed: graph" in capsys.readouterr().err
