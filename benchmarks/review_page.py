"""Review page at field size: write the page of a verified job, open it in headless Chromium, time the first screen.

    .venv/bin/python -m benchmarks.review_page [--docs 10000] [--repeat 3] [--workdir DIR]

The job is the verify-speed corpus (benchmarks/verify_speed.py: Re-DocRED texts renamed copy by
copy, ~20 entities and up to 10 relations an answer, 1 % of answers with a planted leak), through
the real prepare → collect → verify path. Then:
- write: `write_review` (the page file), wall and CPU seconds, page size;
- first screen: Debian's Chromium (headless, a fresh profile, the flags of tests/browser_fixtures.py)
  opens the file; timed from the navigation until the page has built its first documents and a
  frame has been drawn after that (wall, measured by the driver), with the page's own figures
  (its "review-ready" mark and first contentful paint, ms since navigation start);
- filter and search: one status filter and one search over all documents, timed in the page,
  layout included.
Needs `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.browser_fixtures import FLAGS, VIEWPORT, chromium_path

FILTER_JS = """() => {
  const t = performance.now();
  const s = document.getElementById('f-status');
  s.value = 'quarantined'; s.dispatchEvent(new Event('change'));
  void document.body.offsetHeight;
  const filtered = performance.now() - t;
  const shown = document.querySelectorAll('section.doc:not([hidden])').length;
  s.value = ''; s.dispatchEvent(new Event('change'));
  const q = document.getElementById('f-search');
  const t2 = performance.now();
  q.value = 'zzzz-no-such-name'; q.dispatchEvent(new Event('input'));
  return new Promise(done => setTimeout(() => {
    void document.body.offsetHeight;
    done({filter_ms: filtered, quarantined_shown: shown, search_ms: performance.now() - t2 - 120});
  }, 120));
}"""
READY_JS = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
  const ready = performance.getEntriesByName('review-ready')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  done({ready_ms: ready ? ready.startTime : null, fcp_ms: fcp ? fcp.startTime : null,
        built: document.querySelectorAll('section.doc .text').length,
        sections: document.querySelectorAll('section.doc').length});
})))"""


def build(workdir: Path, count: int, reuse: bool) -> tuple[Path, dict[str, Any]]:
    from benchmarks.verify_speed import build_job
    from extractor.jobs import JobStore
    from extractor.review import write_review
    from extractor.verify.verdicts import read_report, verify_job

    store = JobStore(workdir / "jobs")
    done = [j for j in store if j.verify_path.exists() and len(j.documents()) == count] if reuse else []
    if done:
        job, setup = done[-1], {"setup_s": None}
        summary = read_report(job)["summary"]
    else:
        job_id, setup = build_job(workdir, count)
        job = store.load(job_id)
        summary = verify_job(job)["summary"]
    page = workdir / f"review-{count}.html"
    wall, cpu = time.perf_counter(), time.process_time()
    write_review(job, page)
    return page, {
        "documents": summary["documents"],
        "quarantined": summary["quarantined"],
        "write_s": time.perf_counter() - wall,
        "write_cpu_s": time.process_time() - cpu,
        "page_mb": page.stat().st_size / 2**20,
        "setup_s": setup["setup_s"],
    }


def open_timed(page_path: Path, repeat: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=FLAGS, viewport=VIEWPORT, offline=True
        )
        for _ in range(repeat):
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.on("console", lambda msg, errors=errors: errors.append(msg.text) if msg.type == "error" else None)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
            before = _busy(cdp)
            started = time.perf_counter()
            page.goto(page_path.resolve().as_uri(), wait_until="commit")
            page.wait_for_selector("html[data-ready='1']", state="attached", timeout=120_000)
            figures = page.evaluate(READY_JS)
            figures["first_screen_s"] = time.perf_counter() - started
            figures["first_screen_busy_s"] = _busy(cdp) - before
            page.wait_for_selector("html[data-loaded='1']", state="attached", timeout=300_000)
            figures["loaded_s"] = time.perf_counter() - started
            figures["loaded_busy_s"] = _busy(cdp) - before
            figures.update(page.evaluate(FILTER_JS))
            figures["errors"] = errors
            runs.append(figures)
            page.close()
        context.close()
    return runs


def _busy(cdp: Any) -> float:
    """Seconds the page's main thread has spent in tasks (CDP Performance.getMetrics TaskDuration): unlike wall
    time, it does not grow when other processes share the cores."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["TaskDuration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="Reuse a verified job of --docs documents in --workdir.")
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit("Chromium is not installed — install it with `apt-get install -y chromium`")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        page, written = build(workdir, args.docs, args.reuse)
        runs = open_timed(page, args.repeat)
    median = {
        k: statistics.median(r[k] for r in runs)
        for k in (
            "first_screen_s",
            "first_screen_busy_s",
            "loaded_s",
            "loaded_busy_s",
            "ready_ms",
            "fcp_ms",
            "filter_ms",
            "search_ms",
        )
    }
    load = os.getloadavg()
    print(json.dumps({"written": written, "runs": runs, "median": median, "load_average": load}, indent=1))
    print(f"load average while measuring: {load[0]:.1f} (1 min) on {os.cpu_count()} cores")
    print(
        "\n| documents | page MiB | write s (CPU s) | first screen s wall (main thread busy s) | whole file read s "
        "wall (busy s) | ready ms | FCP ms | bodies built at first | status filter ms | search ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {written['documents']:,} | {written['page_mb']:.1f} "
        f"| {written['write_s']:.2f} ({written['write_cpu_s']:.2f}) "
        f"| {median['first_screen_s']:.2f} ({median['first_screen_busy_s']:.2f}) "
        f"| {median['loaded_s']:.2f} ({median['loaded_busy_s']:.2f}) | {median['ready_ms']:.0f} "
        f"| {median['fcp_ms']:.0f} | {runs[0]['built']} | {median['filter_ms']:.0f} | {median['search_ms']:.0f} |"
    )
    print(f"(median of {len(runs)} opens in headless Chromium {chromium_path()})")


if __name__ == "__main__":
    main()
