"""docs/review.png: the review page of a 20-document demo job over examples/docs, in headless Chromium.

    .venv/bin/python -m examples.review_demo [--out docs/review.png] [--html review-demo.html]

The job goes the way a batch job goes: `prepare examples/docs --backend openai`, then the
answers ingested with `collect --output-file` as a Batch output file. The answers are the
Re-DocRED gold annotations of the documents (examples/build_docs.py made them from that set),
so names and relations are what a good model returns; one answer also carries its
neighbour's entities, the way a batch that mixes documents up does, so the page shows a
quarantine and where the leaked names came from. Needs `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
LEAKY = "rufus_carter.txt"  # its answer also lists the entities of the file before it


def build_job(workdir: Path) -> str:
    from typer.testing import CliRunner

    from examples.build_docs import slug
    from extractor.cli import app
    from tests.redocred import gold_answer, load_redocred
    from tests.verify_fixtures import output_line

    os.environ["EXTRACTOR_JOBS_DIR"] = str(workdir / "jobs")
    runner = CliRunner()
    prepared = runner.invoke(app, ["prepare", str(REPO / "examples" / "docs"), "--backend", "openai", "--json"])
    assert prepared.exit_code == 0, prepared.output
    job_id = orjson.loads(prepared.stdout)["job_id"]
    gold = {f"{slug(doc['title'])}.txt": gold_answer(doc) for doc in load_redocred()}
    manifest = orjson.loads((workdir / "jobs" / job_id / "job.json").read_bytes())
    names = sorted(d["path"] for d in manifest["documents"])
    answers = {name: gold[name] for name in names}
    before = names[names.index(LEAKY) - 1]
    answers[LEAKY] = {**answers[LEAKY], "entities": answers[LEAKY]["entities"] + answers[before]["entities"][:3]}
    output = workdir / "output.jsonl"
    output.write_bytes(
        b"".join(orjson.dumps(output_line(d["custom_id"], answers[d["path"]])) + b"\n" for d in manifest["documents"])
    )
    collected = runner.invoke(app, ["collect", job_id, "--output-file", str(output)])
    assert collected.exit_code == 0, collected.output
    verified = runner.invoke(app, ["verify", job_id])
    assert verified.exit_code in (0, 3), verified.output
    return job_id


def screenshot(page_path: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser_fixtures import FLAGS, chromium_path

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 1300},
            device_scale_factor=1,
            offline=True,
        )
        page = context.new_page()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_selector("html[data-loaded='1']", state="attached")
        page.select_option("#f-status", "quarantined")
        page.wait_for_selector("section.doc .text")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out))
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "review.png")
    parser.add_argument("--html", type=Path, default=None, help="Also keep the page here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        job_id = build_job(workdir)
        from extractor.jobs import JobStore
        from extractor.review import write_review

        page = args.html or workdir / "review.html"
        write_review(JobStore(workdir / "jobs").load(job_id), page)
        screenshot(page, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
