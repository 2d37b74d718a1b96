"""Bounded work under hostile input (issue 15): log appends at any log size, verify with huge entity names.

    .venv/bin/python -m benchmarks.robustness [--events 100000] [--names 10000,40000,160000,1000000]

- log: `Job.log` (the path every lane event takes: open the appender, write one line, close) for
  --events events into one log.jsonl; CPU time per block of 1,000 events. The target: the last 1,000
  cost no more than 1.2x the first 1,000. The pre-issue-15 appender (which re-read the whole log on
  every open to repair a torn tail) is timed over the first 20,000 events for contrast.
- verify: one prepared and collected job of 3 documents whose answers carry one entity name of N
  characters; CPU time of `verify_job`. Linear in the answer means flat here: names over
  alignment.MAX_NAME_CHARS are judged ungrounded without alignment.
CPU time (time.process_time) is reported: the machine is shared, so wall time is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK = 1000


def _old_repair_tail(path: Path) -> None:
    """The appender's tail repair before issue 15: the whole file read on every open."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        fh.truncate(data.rfind(b"\n") + 1)


def bench_log(events: int, workdir: Path) -> dict:
    from extractor import storage
    from extractor.jobs import Job

    results = {}
    for label, count, repair in (("now", events, None), ("before", min(events, 20_000), _old_repair_tail)):
        folder = workdir / f"log-{label}"
        folder.mkdir()
        job = Job(folder, {"job_id": "bench", "state": "submitted"})
        saved = storage.JsonlAppender.__dict__["_repair_tail"]
        if repair is not None:
            storage.JsonlAppender._repair_tail = staticmethod(repair)
        try:
            blocks = []
            for _ in range(count // BLOCK):
                start = time.process_time()
                for n in range(BLOCK):
                    job.log(
                        "request",
                        custom_id=f"doc-{n:024d}",
                        latency_ms=123.4,
                        prompt_tokens=812,
                        completion_tokens=96,
                        attempt=1,
                    )
                blocks.append((time.process_time() - start) / BLOCK * 1e6)
        finally:
            storage.JsonlAppender._repair_tail = saved
        results[label] = {
            "events": count,
            "log_bytes": job.log_path.stat().st_size,
            "first_1000_us_per_event": round(blocks[0], 1),
            "last_1000_us_per_event": round(blocks[-1], 1),
            "ratio_last_to_first": round(blocks[-1] / blocks[0], 2),
            "median_first_10_blocks_us": round(statistics.median(blocks[:10]), 1),
            "median_last_10_blocks_us": round(statistics.median(blocks[-10:]), 1),
        }
    return results


def bench_verify(sizes: list[int], workdir: Path) -> list[dict]:
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.jobs import JobStore
    from extractor.prepare.stage import PrepareOptions, prepare_job
    from extractor.verify.verdicts import verify_job
    from tests.job_fixtures import completion_line

    docs = workdir / "docs"
    docs.mkdir()
    for path in sorted((REPO / "examples" / "docs").glob("*.txt"))[:3]:
        (docs / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    rows = []
    for size in sizes:
        store = JobStore(workdir / f"jobs-{size}")
        job = prepare_job(store, docs, PrepareOptions(backend="openai", count_tokens=False)).job
        name = ("Anita Ekberg " * (size // 13 + 1))[:size]
        answer = {
            "entities": [{"name": name, "type": "PERSON"}, {"name": "Anita Ekberg", "type": "PERSON"}],
            "relations": [],
        }
        out = workdir / f"answers-{size}.jsonl"
        out.write_text(
            "".join(json.dumps(completion_line(d["custom_id"], json.dumps(answer))) + "\n" for d in job.documents()),
            encoding="utf-8",
        )
        ingest_files(job, out, None)
        job = store.load(job.id)
        summary = collect_job(job, fetch=False)
        job = store.load(job.id)
        start = time.process_time()
        report = verify_job(job)
        rows.append(
            {
                "name_chars": size,
                "answer_outcomes_ok": summary.outcomes["ok"],
                "verify_cpu_s": round(time.process_time() - start, 3),
                "ungrounded": report["summary"]["entities"]["ungrounded"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--names", default="10000,40000,160000,1000000")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-robustness-") as tmp:
        os.environ.setdefault("EXTRACTOR_JOBS_DIR", str(Path(tmp) / "jobs"))
        log = bench_log(args.events, Path(tmp))
        verify = bench_verify([int(x) for x in args.names.split(",")], Path(tmp))
    print(json.dumps({"log": log, "verify": verify}, indent=2))


if __name__ == "__main__":
    main()
