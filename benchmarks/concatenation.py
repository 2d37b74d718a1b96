"""Concatenation: does verify catch a provider that stitches neighbours into one prompt, with a real model?

    .venv/bin/python -m benchmarks.concatenation [--docs 30] [--max-tokens 256] [--chars 500]
        [--keep DIR | --answers DIR] [--pad 470] [--write-docs]

What our user met: a provider that packed several documents into one prompt and returned the
answer as if it were the first document's. Reproduced with the embedded llama.cpp server and the
bundled Gemma 270M, through the real path (`prepare_job` for the request lines and their
bounded schema, `run_local_lane` to the server, `ingest_files` + `collect_job`, `verify_job`):

- documents: the `--docs` shortest Re-DocRED dev documents of the held-out half (250-499), each
  cut at the last sentence end before `--chars` characters (prompt time is most of a CPU run);
- stitched: for document i, one prompt of document i followed by document i+1, and by i+2 too
  for every other i (cyclic), sent under document i's custom_id: the answer is attributed to it;
- honest: the same documents, one per request.

Measured on verify.json under the default policy:
- the share of stitched answers that really contain a neighbour's name: an entity name whose
  words occur in a neighbour's text and not in the document's own (casefolded word sequence,
  checked apart from verify);
- the share of those that verify quarantines (goal ≥ 95 %), and every miss with its names;
- the share of honest answers that verify quarantines (goal ≤ 5 %), and every false quarantine
  with its reasons.

A night is thousands of documents, not 30, and the more documents a job holds, the likelier an
invented name is found in one of them. `--pad N` verifies the same answers a second time in a job
padded with N more Re-DocRED dev documents (the rest of the split first, answered with no
entities), so the leak search runs over 30 + N documents, and reports that job too.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
_PUNCTUATION = re.compile(r"[^\w\s']")


def words(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return f" {' '.join(_PUNCTUATION.sub(' ', folded).split())} "


def occurs(name: str, text_words: str) -> bool:
    core = words(name).strip()
    return bool(core) and f" {core} " in text_words


def pick_documents(count: int, chars: int) -> list[str]:
    from tests.redocred import load_redocred, redocred_text

    texts = [redocred_text(doc) for doc in load_redocred()[250:500]]
    chosen = sorted(texts, key=len)[:count]
    cut = []
    for text in chosen:
        if len(text) > chars:
            end = text.rfind(" . ", 0, chars)
            text = text[: end + 2] if end > 0 else text[:chars]
        cut.append(text)
    return cut


def neighbours(i: int, count: int) -> list[int]:
    return [(i + 1) % count] + ([(i + 2) % count] if i % 2 == 0 else [])


def run_lane(lines: list[dict[str, Any]], out: Path, base_url: str) -> float:
    from extractor.lanes.local import run_local_lane

    started = time.monotonic()
    run_local_lane(
        iter(lines),
        output_path=out,
        error_path=out.with_name(out.stem + "-errors.jsonl"),
        base_url=base_url,
        concurrency=1,
        timeout_s=900,
    )
    return time.monotonic() - started


def padding(texts: list[str], count: int) -> list[str]:
    """`count` Re-DocRED dev documents that are none of `texts`: the rest of the held-out half first, then the other."""
    from tests.redocred import load_redocred, redocred_text

    documents = load_redocred()
    chosen = [t[:200] for t in texts]
    pool = [redocred_text(doc) for doc in documents[250:] + documents[:250]]
    return [t for t in pool if not any(t.startswith(c) for c in chosen)][:count]


def empty_answer(custom_id: str) -> bytes:
    """A batch output line answering `custom_id` with no entities and no relations."""
    body = {
        "choices": [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {"role": "assistant", "content": '{"entities": [], "relations": []}'},
            }
        ],
        "object": "chat.completion",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    line = {"id": "pad", "custom_id": custom_id, "response": {"status_code": 200, "request_id": "pad", "body": body}}
    return orjson.dumps({**line, "error": None})


def verified(workdir: Path, folder: Path, output: Path, max_tokens: int) -> dict[str, dict[str, Any]]:
    """A fresh job of the folder, the lane's answers ingested and collected, verified: verify.json documents by file.

    Documents of the folder the answers do not cover (the padding) are answered with no entities.
    """
    from extractor.collect.ingest import ingest_files
    from extractor.collect.results import collect_job
    from extractor.jobs import JobStore
    from extractor.prepare.stage import PrepareOptions, prepare_job
    from extractor.verify.verdicts import read_report, verify_job

    store = JobStore(workdir)
    job = prepare_job(store, folder, PrepareOptions(backend="local", max_tokens=max_tokens, count_tokens=False)).job
    answered = {orjson.loads(raw)["custom_id"] for raw in output.read_bytes().splitlines() if raw.strip()}
    pad = [empty_answer(d["custom_id"]) for d in job.documents() if d["custom_id"] not in answered]
    if pad:
        padded = output.with_name(output.stem + "-padded.jsonl")
        padded.write_bytes(output.read_bytes() + b"".join(line + b"\n" for line in pad))
        output = padded
    ingest_files(job, output, None)
    collect_job(store.load(job.id), fetch=False)
    job = store.load(job.id)
    verify_job(job)
    return {d["path"]: d for d in read_report(job)["documents"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the answers (output files) in this folder")
    parser.add_argument(
        "--answers",
        type=Path,
        help="verify the answers a --keep run left (whole or cut short) instead of asking the model",
    )
    parser.add_argument("--pad", type=int, default=0, help="verify again in a job padded with N more documents")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    from extractor.jobs import JobStore
    from extractor.lanes.embedded_llm import EmbeddedLlamaServer, model_path
    from extractor.prepare.requests import iter_request_lines
    from extractor.prepare.stage import PrepareOptions, prepare_job

    texts = pick_documents(args.docs, args.chars)
    names = [f"{i:02d}.txt" for i in range(len(texts))]
    tmp = Path(tempfile.mkdtemp(prefix="bench-concatenation-"))
    try:
        folder = tmp / "docs"
        folder.mkdir()
        for name, text in zip(names, texts, strict=True):
            (folder / name).write_text(text + "\n", encoding="utf-8")
        store = JobStore(tmp / "lines")
        job = prepare_job(
            store, folder, PrepareOptions(backend="local", max_tokens=args.max_tokens, count_tokens=False)
        ).job
        lines = list(iter_request_lines(job.request_files()))
        by_path = {d["custom_id"]: d["path"] for d in job.documents()}
        index = {name: i for i, name in enumerate(names)}
        stitched_lines = []
        for line in lines:
            i = index[by_path[line["custom_id"]]]
            stitched = json.loads(json.dumps(line))
            stitched["body"]["messages"][-1]["content"] = "\n\n".join(
                [texts[i]] + [texts[j] for j in neighbours(i, len(texts))]
            )
            stitched_lines.append(stitched)
        keep = args.keep or tmp / "answers"
        keep.mkdir(parents=True, exist_ok=True)
        outputs = {"honest": tmp / "honest.jsonl", "stitched": tmp / "stitched.jsonl"}
        seconds: dict[str, float] = {}
        source = args.answers or keep
        if not args.answers:
            # one lane run, stitched and honest lines of each document in turn (a cut-short run still pairs them);
            # answers are appended to KEEP/answers.jsonl as they come, under "s:"/"h:" + the document's custom_id
            interleaved = []
            for stitched, honest in zip(stitched_lines, lines, strict=True):
                interleaved += [
                    {**stitched, "custom_id": "s:" + stitched["custom_id"]},
                    {**honest, "custom_id": "h:" + honest["custom_id"]},
                ]
            server = EmbeddedLlamaServer(model_path(), slots=1, threads=args.threads, ctx=4096)
            base_url = server.start()
            try:
                seconds["both"] = run_lane(interleaved, keep / "answers.jsonl", base_url)
            finally:
                server.stop()
        answered = {"s": [], "h": []}
        for raw in (source / "answers.jsonl").read_bytes().splitlines():
            if raw.strip():
                line = orjson.loads(raw)
                prefix, _, custom_id = line["custom_id"].partition(":")
                answered[prefix].append(orjson.dumps({**line, "custom_id": custom_id}))
        for kind, prefix in (("stitched", "s"), ("honest", "h")):
            outputs[kind].write_bytes(b"".join(row + b"\n" for row in answered[prefix]))
        results = {
            kind: verified(tmp / f"jobs-{kind}", folder, path, args.max_tokens) for kind, path in outputs.items()
        }
        padded_results = None
        if args.pad:
            for k, extra in enumerate(padding(texts, args.pad)):
                (folder / f"pad-{k:04d}.txt").write_text(extra + "\n", encoding="utf-8")
            padded_results = {
                kind: verified(tmp / f"jobs-padded-{kind}", folder, path, args.max_tokens)
                for kind, path in outputs.items()
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(texts, names, results, seconds, args)
    if padded_results is not None:
        documents = len(padded_results["honest"])
        text += f"\n\nThe same answers in a job of {documents} documents (`--pad {args.pad}`):\n\n"
        text += report(texts, names, padded_results, seconds, args, header=False)
    print(text)
    if args.write_docs:
        from benchmarks.verify_speed import write_section

        write_section("concatenation", text + "\n")


def report(
    texts: list[str],
    names: list[str],
    results: dict[str, dict[str, dict[str, Any]]],
    seconds: dict[str, float],
    args: argparse.Namespace,
    header: bool = True,
) -> str:
    own_words = [words(t) for t in texts]
    stitched, honest = results["stitched"], results["honest"]
    carriers, caught, misses, lost = 0, 0, [], []
    stitched_other_quarantined, other_quarantined = 0, []
    reached = [n for n in names if not (_missing(stitched[n]) or _missing(honest[n]))]
    for i, name in enumerate(names):
        doc = stitched[name]
        if name not in reached:
            continue
        if doc["status"] == "failed":
            lost.append(f"{name}: {'; '.join(doc['reasons'])[:120]}")
            continue
        foreign = sorted(
            {
                e["name"]
                for e in doc["entities"]
                if not occurs(e["name"], own_words[i])
                and any(occurs(e["name"], own_words[j]) for j in neighbours(i, len(names)))
            }
        )
        if not foreign:
            if doc["status"] == "quarantined":
                stitched_other_quarantined += 1
                other_quarantined.append(f"{name}: {'; '.join(doc['reasons'])}")
            continue
        carriers += 1
        if doc["status"] == "quarantined":
            caught += 1
        else:
            verdicts = {e["name"]: e["verdict"] for e in doc["entities"]}
            misses.append(f"{name}: " + ", ".join(f"{n!r} ({verdicts[n]})" for n in foreign))
    answered = len(reached) - len(lost)
    honest_ok = [n for n in reached if honest[n]["status"] != "failed"]
    false_q = [n for n in honest_ok if honest[n]["status"] == "quarantined"]
    truncated = {
        kind: sum(1 for d in docs.values() if any("truncated" in r for r in d["reasons"]))
        for kind, docs in results.items()
    }

    def pct(a: int, b: int) -> str:
        return f"{100 * a / b:.1f} % ({a}/{b})" if b else "n/a"

    title = [
        f"`python -m benchmarks.concatenation --docs {args.docs} --max-tokens {args.max_tokens} --chars {args.chars}`"
        f" (embedded llama.cpp, bundled Gemma 3 270M Q4_K_M, 1 slot, {args.threads} thread, temperature 0;"
        + (
            f" both runs {seconds['both']:.0f} s on the shared 2-core machine)"
            if seconds
            else " answers of a kept run)"
        ),
        "",
    ]
    lines = [
        *(title if header else []),
        "| measure | goal | result |",
        "|---|---|---|",
        f"| stitched answers that really contain a neighbour's name | | {pct(carriers, answered)} |",
        f"| … of those, quarantined by verify | ≥ 95 % | {pct(caught, carriers)} |",
        f"| stitched answers without a neighbour's name, quarantined anyway | "
        f"| {pct(stitched_other_quarantined, answered - carriers)} |",
        f"| honest answers quarantined | ≤ 5 % | {pct(len(false_q), len(honest_ok))} |",
        f"| documents reached (both answers in) | | {len(reached)} of {len(names)} |",
        f"| answers lost (failed: truncated or invalid), stitched / honest "
        f"| | {len(lost)} / {len(reached) - len(honest_ok)}"
        f" (truncated: {truncated['stitched']} / {truncated['honest']}) |",
        "",
        "Misses (a neighbour's name in the answer, document not quarantined; verdict of each such name):",
    ]
    lines += [f"- {m}" for m in misses] or ["- none"]
    lines += ["", "False quarantines of honest answers (verify's reasons):"]
    lines += [f"- {n}: {'; '.join(honest[n]['reasons'])}" for n in false_q] or ["- none"]
    if other_quarantined:
        lines += ["", "Stitched answers without a neighbour's name, quarantined anyway (verify's reasons):"]
        lines += [f"- {x}" for x in other_quarantined]
    if lost:
        lines += ["", "Stitched answers lost:"] + [f"- {x}" for x in lost]
    return "\n".join(lines)


def _missing(doc: dict[str, Any]) -> bool:
    """A document the run did not reach (cut short): collect found no answer line for it."""
    return doc["status"] == "failed" and any(r.startswith("missing") for r in doc["reasons"])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
