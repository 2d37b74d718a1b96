"""Verify speed: `verify_job` on a prepared and collected job against the floor of reading and normalising every
document once.

    .venv/bin/python -m benchmarks.verify_speed [--docs 100000] [--sizes 10000,30000] [--workdir DIR] [--write-docs]

The corpus: Re-DocRED dev texts (tokens joined by spaces), copy k of each with every
capitalised token of its PER/ORG/LOC/MISC mentions renamed to a made-up word seeded by
(k, token), so no two documents are alike and names differ from copy to copy. Each
document's answer is its gold entities (~20, renamed alike) and up to 10 gold relations
with their evidence sentence; 1 % of the answers get one entity of the next document
planted (a leak): a name of two or more words, since one word alone ("France", a first name)
is no leak by itself under verify's rule (verify/leaks.py). The job goes through the real
`prepare` and `collect --output-file` path (`prepare_job`, `ingest_files`, `collect_job`).

Each measurement runs in its own process, so peak RSS (ru_maxrss) is its own:
- floor: read every request line of the job (the same template-slice reader verify uses)
  and `normalize` its text, nothing else;
- verify: `verify_job(job)`, verify.json written.
Both report wall time and CPU time (time.process_time of the measuring process): the
machine has 2 cores shared with other people's test runs, so CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
KINDS = ("floor", "verify")
RENAMED_TYPES = frozenset({"PER", "ORG", "LOC", "MISC"})
SYLLABLES = [a + b for a in "bdgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "is")]
LEAK_EVERY = 100  # 1 % of the answers carry one planted leak
MAX_RELATIONS = 10


def made_up(copy: int, token: str) -> str:
    """A made-up capitalised word standing for `token` in copy `copy` (the same in every document of that copy)."""
    digest = hashlib.blake2b(f"{copy}:{token}".encode(), digest_size=8).digest()
    count = 2 + digest[0] % 2
    word = "".join(SYLLABLES[b % len(SYLLABLES)] for b in digest[1 : 1 + count])
    return word.capitalize()


def renamed_positions(doc: dict[str, Any]) -> list[tuple[int, int]]:
    """(sentence, token) of every capitalised token inside a PER/ORG/LOC/MISC mention."""
    positions = set()
    for cluster in doc["vertexSet"]:
        for mention in cluster:
            if mention["type"] not in RENAMED_TYPES:
                continue
            start, end = mention["pos"]
            for t in range(start, end):
                token = doc["sents"][mention["sent_id"]][t]
                if token[:1].isupper():
                    positions.add((mention["sent_id"], t))
    return sorted(positions)


def build_corpus(folder: Path, output: Path, count: int) -> int:
    """count documents in folder/ and their answers as batch output lines (custom_id = file name for now)."""
    from tests.redocred import gold_answer, load_redocred, redocred_text

    docs = load_redocred()
    positions = [renamed_positions(doc) for doc in docs]
    folder.mkdir(parents=True)
    answers: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        copy, base = divmod(i, len(docs))
        doc = docs[base]
        sents = [list(s) for s in doc["sents"]]
        if copy:
            for s, t in positions[base]:
                sents[s][t] = made_up(copy, doc["sents"][s][t])
        variant = {**doc, "sents": sents}
        name = f"doc-{i:06d}.txt"
        (folder / name).write_text(redocred_text(variant) + "\n", encoding="utf-8")
        gold = gold_answer(variant)
        gold["relations"] = gold["relations"][:MAX_RELATIONS]
        answers.append((name, gold))
    leaks = 0
    texts: dict[str, str] = {}
    for i in range(7, count, LEAK_EVERY):
        name, ans = answers[i]
        other = answers[(i + 1) % count][1]
        text = texts.get(name) or (folder / name).read_text(encoding="utf-8")
        for ent in other["entities"]:
            if (
                f" {ent['name']} " not in f" {text} "
                and ent["type"] in ("PERSON", "ORGANIZATION", "LOCATION")
                and " " in ent["name"].strip()
            ):
                ans["entities"].append({"name": ent["name"], "type": ent["type"]})
                leaks += 1
                break
    with output.open("wb") as fh:
        for name, ans in answers:
            fh.write(orjson.dumps([name, ans]) + b"\n")
    return leaks


def build_job(workdir: Path, count: int) -> tuple[str, dict[str, Any]]:
    """Prepare and collect a job of `count` documents in workdir/jobs; returns its id and what it took."""
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.jobs import JobStore
    from extractor.prepare.stage import PrepareOptions, prepare_job
    from tests.verify_fixtures import output_line

    corpus, answers = workdir / f"docs-{count}", workdir / f"answers-{count}.jsonl"
    shutil.rmtree(corpus, ignore_errors=True)
    started = time.perf_counter()
    leaks = build_corpus(corpus, answers, count)
    store = JobStore(workdir / "jobs")
    job = prepare_job(store, corpus, PrepareOptions(backend="openai", count_tokens=False)).job
    cid = {d["path"]: d["custom_id"] for d in job.documents()}
    output = workdir / f"output-{count}.jsonl"
    with answers.open("rb") as src, output.open("wb") as out:
        for raw in src:
            name, ans = orjson.loads(raw)
            out.write(orjson.dumps(output_line(cid[name], ans)) + b"\n")
    ingest_files(job, output, None)
    summary = collect_job(store.load(job.id), fetch=False)
    shutil.rmtree(corpus)
    output.unlink()
    answers.unlink()
    return job.id, {"leaks": leaks, "ok": summary.outcomes["ok"], "setup_s": time.perf_counter() - started}


def measure(kind: str, jobs_dir: Path, job_id: str) -> dict[str, Any]:
    """One measurement in this process: wall and CPU seconds; RSS after imports, after loading the job, at the end;
    peak RSS."""
    from extractor.jobs import JobStore
    from extractor.verify.corpus import iter_job_texts
    from extractor.verify.normalize import normalize
    from extractor.verify.verdicts import verify_job

    baseline = _current_rss_mb()
    job = JobStore(jobs_dir).load(job_id)
    loaded = _current_rss_mb()  # the manifest (one entry per document) is loaded by every command
    wall, cpu = time.perf_counter(), time.process_time()
    if kind == "floor":
        chars = 0
        for _, text in iter_job_texts(job):
            chars += len(normalize(text).text)
        result: dict[str, Any] = {"chars": chars}
    else:
        summary = verify_job(job)["summary"]
        result = {"summary": summary}
    return {
        "kind": kind,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mb": _maxrss_mb(),
        "baseline_rss_mb": baseline,
        "loaded_rss_mb": loaded,
        "end_rss_mb": _current_rss_mb(),
        **result,
    }


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _maxrss_mb() -> float:
    """Peak RSS of this process image (VmHWM): ru_maxrss would carry over the parent's peak across fork and exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_child(kind: str, jobs_dir: Path, job_id: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.verify_speed", "--measure", kind, "--jobs", str(jobs_dir), "--job", job_id],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(kind: str, jobs_dir: Path, job_id: str, repeat: int) -> dict[str, Any]:
    """The run with the least CPU time; peak RSS is the largest seen."""
    runs = [measure_in_child(kind, jobs_dir, job_id) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["cpu_seconds"])
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def report(results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    rows = [
        "| documents | floor CPU s | verify CPU s | × floor (CPU) | floor wall s | verify wall s | × floor (wall) |"
        " verify µs CPU / document | RSS after loading the job, MiB | verify peak RSS MiB | floor peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        floor, verify = results[size]["floor"], results[size]["verify"]
        rows.append(
            f"| {size:,} | {floor['cpu_seconds']:.2f} | {verify['cpu_seconds']:.2f} |"
            f" {verify['cpu_seconds'] / floor['cpu_seconds']:.2f} | {floor['seconds']:.2f} | {verify['seconds']:.2f} |"
            f" {verify['seconds'] / floor['seconds']:.2f} | {verify['cpu_seconds'] / size * 1e6:.0f} |"
            f" {verify['loaded_rss_mb']:.0f} | {verify['peak_rss_mb']:.0f} | {floor['peak_rss_mb']:.0f} |"
        )
    large = results[sizes[-1]]
    s = large["verify"]["summary"]
    lines = ["\n".join(rows), ""]
    lines.append(
        f"{sizes[-1]:,} documents: {s['entities']['grounded'] + s['entities']['fuzzy']:,} entities found in their own"
        f" document, {s['entities']['leaked']} leaked (of {large['setup']['leaks']} planted),"
        f" {s['entities']['ungrounded']} ungrounded; {s['relations']['grounded'] + s['relations']['fuzzy']:,}"
        f" relations found; {s['quarantined']} documents quarantined."
    )
    if len(sizes) > 1:
        per_doc = [results[n]["verify"]["cpu_seconds"] / n * 1e6 for n in sizes]
        lines.append(
            "verify CPU µs per document by size: "
            + ", ".join(f"{n:,}: {v:.0f}" for n, v in zip(sizes, per_doc, strict=True))
            + " (flat = linear)"
        )
    return "\n".join(lines)


def write_docs(text: str, command: str) -> None:
    """Replace (or append) the "## verify speed" section of docs/benchmarks.md, leaving other sections alone."""
    write_section("verify speed", f"`{command}`\n\n{text}\n")


def write_section(title: str, body: str) -> None:
    docs_md = REPO / "docs" / "benchmarks.md"
    section = f"## {title}\n\n{body}"
    existing = docs_md.read_text(encoding="utf-8") if docs_md.exists() else "# Benchmarks\n"
    start = existing.find(f"\n## {title}\n")
    if start < 0:
        updated = existing.rstrip("\n") + "\n\n" + section
    else:
        end = existing.find("\n## ", start + 1)
        updated = existing[: start + 1] + section + (existing[end:] if end >= 0 else "")
    docs_md.parent.mkdir(parents=True, exist_ok=True)
    docs_md.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="documents in the largest job")
    parser.add_argument("--sizes", default="10000,30000", help="smaller jobs, comma-separated (linearity); '' for none")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the least CPU time is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the jobs here between runs")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(orjson.dumps(measure(args.measure, args.jobs, args.job)).decode())
        return
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip() and int(s) < args.docs} | {args.docs})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="verify-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    for size in sizes:
        known = workdir / f"job-{size}.json"
        if known.exists():
            job_id, setup = json.loads(known.read_text())
        else:
            job_id, setup = build_job(workdir, size)
            known.write_text(json.dumps([job_id, setup]))
        print(f"{size:,} documents: job {job_id} ({setup['setup_s']:.0f} s to build)", file=sys.stderr)
        results[size] = {"setup": setup}
        for kind in KINDS:
            results[size][kind] = best_of(kind, workdir / "jobs", job_id, args.repeat)
            r = results[size][kind]
            print(
                f"  {kind}: {r['cpu_seconds']:.2f} s CPU, {r['seconds']:.2f} s wall, "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB",
                file=sys.stderr,
            )
    text = report(results)
    print(text)
    if args.write_docs:
        command = "python -m benchmarks.verify_speed" + (f" --docs {args.docs}" if args.docs != 100_000 else "")
        write_docs(text, command)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
