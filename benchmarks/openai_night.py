"""One night of the OpenAI Batch lane per model against the emulator with an enqueued-token limit.

    .venv/bin/python -m benchmarks.openai_night [--docs 1500] [--lines-per-file 250] [--limit 2000000]

The emulator (tests/openai_emulator.py) enforces the real API's per-model rules and a per-model enqueued-token
limit (2 M by default, the tier-1 figure of openai-python#2084). The corpus is Re-DocRED documents glued ten
to a file (~2,700 input tokens a request line): 1,500 files in six request files of 250 lines is ~4.1 M input
tokens, two request files a wave, so three waves under the limit. Each night:
prepare (exact token count) → submit → collect --wait, in-process, with defaults otherwise (max_tokens 4096,
the lowest reasoning effort the model allows). Printed per night: batches created (and how many the emulator
refused for the limit), waves, lines failed, the prepare-time cost estimate (an upper bound: every answer at
its full budget) against the cost recorded from the answers' usage.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from extractor.collect.results import collect_job
from extractor.jobs import JobStore
from extractor.lanes import WaitOptions, lane_for
from extractor.lanes.submit import SubmitOptions, submit_job
from extractor.prepare.stage import PrepareOptions, prepare_job
from tests.openai_emulator import BatchEmulator, Behaviour, GoldAnswerer
from tests.redocred import gold_answer, load_redocred, redocred_text

NIGHTS = (("gpt-5.4-mini", "chat"), ("gpt-5-mini", "chat"), ("gpt-5.4-mini", "responses"))
PER_FILE = 10
MAX_ANSWER_TOKENS = 2000  # documents whose gold answer fits the default budget with reasoning on top


def build_corpus(folder: Path, count: int) -> None:
    """count files, each PER_FILE Re-DocRED documents (answers under MAX_ANSWER_TOKENS), so no two dedupe."""
    docs = [d for d in load_redocred() if len(json.dumps(gold_answer(d), ensure_ascii=False)) // 4 < MAX_ANSWER_TOKENS]
    folder.mkdir(parents=True)
    for i in range(count):
        parts = [redocred_text(docs[(i * PER_FILE + k) % len(docs)]) for k in range(PER_FILE)]
        header = f"Filing {i:05d}"
        (folder / f"filing-{i:05d}.txt").write_text(header + "\n\n" + "\n\n".join(parts) + "\n", encoding="utf-8")


def night(docs: Path, model: str, endpoint: str, limit: int, lines_per_file: int) -> dict[str, Any]:
    jobs = Path(tempfile.mkdtemp(prefix="night-jobs-"))
    with BatchEmulator(GoldAnswerer(load_redocred()), Behaviour(enqueued_token_limit=limit)) as emu:
        os.environ["OPENAI_API_KEY"], os.environ["OPENAI_BASE_URL"] = emu.api_key, emu.base_url
        started = time.monotonic()
        summary = prepare_job(
            JobStore(jobs),
            docs,
            PrepareOptions(backend="openai", model=model, endpoint=endpoint, max_lines_per_file=lines_per_file),
        )
        job = summary.job
        submit_job(job, SubmitOptions(max_enqueued_tokens=limit))
        wait = WaitOptions(wait=True, poll_interval_s=0.01, max_interval_s=0.05)
        collected = collect_job(job, lane_for(job), wait=wait)
        seconds = time.monotonic() - started
        refused = sum(
            1
            for b in emu.batches.values()
            if b.obj["status"] == "failed" and b.obj["errors"]["data"][0]["code"] == "token_limit_exceeded"
        )
        return {
            "model": model,
            "endpoint": endpoint,
            "documents": summary.documents,
            "shards": summary.shards,
            "input_tokens": summary.input_tokens,
            "batches_created": len(emu.batches),
            "refused_for_limit": refused,
            "waves": job.manifest["remote"].get("waves"),
            "lines_failed": len(collected.failed),
            "outcomes": {k: v for k, v in collected.outcomes.items() if v},
            "estimate_usd": summary.estimated_cost_usd,
            "recorded_usd": job.manifest["cost"]["usd"],
            "reasoning_effort": job.manifest["settings"].get("reasoning_effort"),
            "seconds": round(seconds, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--lines-per-file", type=int, default=250)
    parser.add_argument("--limit", type=int, default=2_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="night-docs-"))
    build_corpus(root / "docs", args.docs)
    rows = [night(root / "docs", model, endpoint, args.limit, args.lines_per_file) for model, endpoint in NIGHTS]
    print(
        "| model | endpoint | effort | docs | shards | input tokens | batches created (refused for the limit)"
        " | waves | lines failed | estimate (upper bound) | recorded | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['endpoint']} | {r['reasoning_effort']} | {r['documents']} | {r['shards']} |"
            f" {r['input_tokens']:,} | {r['batches_created']} ({r['refused_for_limit']}) | {r['waves']} |"
            f" {r['lines_failed']} | ${r['estimate_usd']:.2f} | ${r['recorded_usd']:.2f} | {r['seconds']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
