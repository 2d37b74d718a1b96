"""A whole night at scale, every stage a CLI process: prepare → submit → collect → verify → commit → reopen → rollback.

    .venv/bin/python -m benchmarks.night [--docs 100000] [--sizes 10000,100000] [--workdir DIR] [--json]

The corpus: Re-DocRED dev texts, copy k of each with its capitalised PER/ORG/LOC/MISC mention
tokens renamed per copy (`benchmarks.verify_speed.made_up`), so no two documents are alike and
the graph grows with the night (~20 entities, up to 10 relations per document). `submit` sends
the job to the OpenAI Batch emulator (tests/openai_emulator.py) over real HTTP through the
`openai` SDK: 100,000 documents are two shards at the 50,000-line limit. The emulator answers
each request with the gold annotation of its document (found by the hash of its user message),
runs in this process and shares the machine's cores with the CLI: its upload handling is inside
submit's figure; its answering of every line (the provider's part of the night) runs between
submit and collect, timed apart and not in the night's total, so collect is the download and
classification of the answers. Then `verify`, `commit` into the embedded FalkorDB (the default
graph), `commit` again ("reopen": a new process restarts the server, which loads the graph, and
the commit finds every chunk landed and writes nothing), and `rollback`; the graph must then be
empty by a full dump.

Each stage runs as `python -m extractor.cli …` in its own process: its seconds are wall time,
its peak RSS is that process's VmHWM read at its exit, the server's own memory not included.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
DOCS_MD = REPO / "docs" / "benchmarks.md"
MAX_RELATIONS = 10
STAGES = ("prepare", "submit", "collect", "verify", "commit", "reopen", "rollback")
_NAME = re.compile(r"doc-(\d+)\.txt\Z")


# ---------------------------------------------------------------- the corpus and its answers


class Corpus:
    """Document i: copy i // 500 of Re-DocRED document i % 500, renamed; its answer is its gold annotation."""

    def __init__(self) -> None:
        from benchmarks.verify_speed import renamed_positions
        from tests.redocred import load_redocred

        self.docs = load_redocred()
        self.positions = [renamed_positions(doc) for doc in self.docs]

    def variant(self, i: int) -> dict[str, Any]:
        from benchmarks.verify_speed import made_up

        copy, base = divmod(i, len(self.docs))
        doc = self.docs[base]
        if not copy:
            return doc
        sents = [list(s) for s in doc["sents"]]
        for s, t in self.positions[base]:
            sents[s][t] = made_up(copy, doc["sents"][s][t])
        return {**doc, "sents": sents}

    def text(self, i: int) -> str:
        from tests.redocred import redocred_text

        return redocred_text(self.variant(i)) + "\n"

    def answer(self, i: int) -> dict[str, Any]:
        from tests.redocred import gold_answer

        gold = gold_answer(self.variant(i))
        gold["relations"] = gold["relations"][:MAX_RELATIONS]
        return gold

    def write(self, folder: Path, numbers: Sequence[int] | range) -> Path:
        """Documents `numbers` as folder/doc-NNNNNN.txt."""
        folder.mkdir(parents=True, exist_ok=True)
        for i in numbers:
            (folder / f"doc-{i:06d}.txt").write_text(self.text(i), encoding="utf-8")
        return folder


def document_number(path: str) -> int:
    match = _NAME.search(path)
    if match is None:
        raise ValueError(f"{path} is not a night document")
    return int(match.group(1))


def write_output_file(corpus: Corpus, jobs_dir: Path, job_id: str, output: Path) -> Path:
    """A batch output file answering every request of the job with its document's gold answer."""
    from extractor.jobs import JobStore
    from tests.verify_fixtures import output_line

    job = JobStore(jobs_dir).load(job_id)
    with output.open("wb") as fh:
        for doc in job.documents():
            fh.write(orjson.dumps(output_line(doc["custom_id"], corpus.answer(document_number(doc["path"])))) + b"\n")
    return output


class HashAnswerer:
    """The emulator's answerer: the gold answer of the document whose text is the request's user message."""

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.numbers: dict[bytes, int] = {}

    def learn(self, jobs_dir: Path, job_id: str) -> None:
        """Map each request line's user message to its document number (read from the job, before submit)."""
        from extractor.jobs import JobStore
        from extractor.prepare.requests import request_text
        from extractor.storage import iter_jsonl

        job = JobStore(jobs_dir).load(job_id)
        numbers = {doc["custom_id"]: document_number(doc["path"]) for doc in job.documents()}
        for path in job.request_files():
            for line in iter_jsonl(path):
                self.numbers[_digest(request_text(line))] = numbers[line["custom_id"]]

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        from tests.redocred import request_text

        number = self.numbers.get(_digest(request_text(body)))
        return {"entities": [], "relations": []} if number is None else self.corpus.answer(number)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


# ---------------------------------------------------------------- stages as CLI processes


# The CLI under a wrapper that writes its peak RSS (VmHWM) at exit. ru_maxrss will not do:
# Linux carries the forking parent's high-water mark across exec, and the parent here holds
# the emulator and its answers, so every stage would report at least the benchmark's size.
_WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(out, "w") as fh:
        fh.write(str(kib))
atexit.register(peak)
sys.argv[0] = "extractor"
runpy.run_module("extractor.cli", run_name="__main__", alter_sys=True)
"""


def cli(env: dict[str, str], *args: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """`extractor ARGS --json` in its own process: its JSON answer, seconds and peak RSS (MiB, the server's not
    included)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        started = time.perf_counter()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.run(
                [sys.executable, "-c", _WRAPPER, str(peak_file), *args, "--json"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
            )
        seconds = time.perf_counter() - started
        stdout, stderr = out_path.read_bytes(), err_path.read_text(errors="replace")
        peak_kib = int(peak_file.read_text()) if peak_file.exists() else 0
    if proc.returncode not in codes:
        raise RuntimeError(f"extractor {' '.join(args)} exited {proc.returncode}: {stderr.strip()[-2000:]}")
    data = orjson.loads(stdout) if stdout.strip() else {}
    return {"data": data, "seconds": seconds, "peak_rss_mib": peak_kib / 1024, "exit_code": proc.returncode}


def night_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTRACTOR_", "OPENAI_"))}
    env.update(
        {
            "EXTRACTOR_JOBS_DIR": str(workdir / "jobs"),
            "EXTRACTOR_DATA_DIR": str(workdir / "data"),
            "PYTHONPATH": str(REPO),
            # One 50,000-line shard holds ~36M input tokens: over the default enqueued-token limit of the
            # lowest usage tier (2M for gpt-5.4-mini), so the night runs as an organisation at a high tier.
            "EXTRACTOR_MAX_ENQUEUED_TOKENS": "10000000000",
            **extra,
        }
    )
    return env


def run_night(
    count: int,
    workdir: Path,
    *,
    poll_interval: float = 0.5,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The night of `count` documents in `workdir`; the figures of each stage, and the graph's dump at the end."""
    from extractor.graph import dump_graph, open_store
    from tests.openai_emulator import BatchEmulator

    corpus = Corpus()
    started = time.perf_counter()
    folder = corpus.write(workdir / "docs", range(count))
    write_s = time.perf_counter() - started
    answerer = HashAnswerer(corpus)
    stages: dict[str, dict[str, Any]] = {}

    def stage(name: str, env: dict[str, str], *args: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
        stages[name] = cli(env, *args, codes=codes)
        if on_stage is not None:
            on_stage(name, stages[name])
        return stages[name]["data"]

    with BatchEmulator(answerer) as emulator:
        env = night_env(workdir, OPENAI_API_KEY=emulator.api_key, OPENAI_BASE_URL=emulator.base_url)
        job_id = stage("prepare", env, "prepare", str(folder), "--backend", "openai")["job_id"]
        answerer.learn(workdir / "jobs", job_id)
        stage("submit", env, "submit", "--job", job_id)
        # The provider's night: the emulator answers every line now, outside any stage, so
        # collect's figure is fetching and classifying, not the wait between polls.
        provider = time.perf_counter()
        emulator.complete_all()
        provider_s = time.perf_counter() - provider
        stage("collect", env, "collect", job_id, "--wait", "--poll-interval", str(poll_interval))
    stage("verify", env, "verify", job_id, codes=(0, 3))
    stage("commit", env, "commit", job_id)
    stage("reopen", env, "commit", job_id)
    stage("rollback", env, "rollback", job_id)
    with open_store("embedded", data_dir=workdir / "data") as store:
        dump = dump_graph(store)
    total = sum(s["seconds"] for s in stages.values())
    return {
        "documents": count,
        "job_id": job_id,
        "corpus_write_s": write_s,
        "provider_s": provider_s,
        "stages": stages,
        "night_s": total,
        "docs_per_s": count / total,
        "server_loads": server_loads(workdir / "data"),
        "dump_after_rollback": dump,
    }


def server_loads(data_dir: Path) -> list[str]:
    """The server's own lines on what it loaded at each start (RDB base, AOF increments), in order."""
    try:
        lines = (data_dir / "falkordb.log").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line.split(" * ", 1)[-1] for line in lines if "DB loaded from" in line]


# ---------------------------------------------------------------- the report


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| documents | " + " | ".join(STAGES) + " | night | docs/s |", "|---:|" + "---:|" * (len(STAGES) + 2)]
    for result in results:
        cells = [
            f"{result['stages'][s]['seconds']:.1f} s / {result['stages'][s]['peak_rss_mib']:.0f} MiB" for s in STAGES
        ]
        rows.append(
            f"| {result['documents']:,} | "
            + " | ".join(cells)
            + f" | {result['night_s']:.0f} s | {result['docs_per_s']:.0f} |"
        )
    return "\n".join(rows)


def growth(results: list[dict[str, Any]]) -> str:
    """Seconds per 1,000 documents of each stage at each size: flat means linear."""
    if len(results) < 2:
        return ""
    small, large = results[0], results[-1]
    parts = []
    for s in STAGES:
        a = small["stages"][s]["seconds"] / small["documents"] * 1000
        b = large["stages"][s]["seconds"] / large["documents"] * 1000
        parts.append(f"{s} {a:.2f} → {b:.2f} ({b / a:.2f}×)")
    return f"seconds per 1,000 documents, {small['documents']:,} → {large['documents']:,}: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--sizes", default="10000", help="smaller nights run first, comma-separated ('' for none)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the nights run (default: a temp dir, removed)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON after each night")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | {args.docs})
    base = args.workdir or Path(tempfile.mkdtemp(prefix="night-"))
    results = []
    try:
        for count in sizes:
            workdir = base / f"night-{count}"
            shutil.rmtree(workdir, ignore_errors=True)

            def show(name: str, figures: dict[str, Any], count: int = count) -> None:
                print(
                    f"{count:>7,} {name:<9} {figures['seconds']:8.1f} s {figures['peak_rss_mib']:7.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )

            result = run_night(count, workdir, on_stage=show)
            if result["dump_after_rollback"]:
                raise SystemExit(
                    f"the graph is not empty after the rollback: {len(result['dump_after_rollback'])} items"
                )
            result["dump_after_rollback"] = []
            for figures in result["stages"].values():
                figures["data"] = {k: v for k, v in figures["data"].items() if not isinstance(v, (list, dict))}
            results.append(result)
            if args.out is not None:
                args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        return
    print(table(results))
    print(growth(results))
    for result in results:
        commit = result["stages"]["commit"]["data"]
        print(
            f"{result['documents']:,}: emulator answering {result['provider_s']:.1f} s (not in the night); "
            f"{commit.get('nodes', 0):,} nodes, {commit.get('relationships', 0):,} "
            f"relationships committed; server loads: {'; '.join(result['server_loads'])}"
        )


if __name__ == "__main__":
    main()
