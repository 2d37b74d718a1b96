"""The whole pipeline on real components: llama.cpp (Gemma 270M) answers, FalkorDB stores, rollback restores."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from extractor.graph import open_store
from extractor.graph.commit import dump_graph
from extractor.jobs import JobStore, State
from extractor.storage import iter_jsonl, read_json
from tests.job_fixtures import invoke

pytestmark = [pytest.mark.llm, pytest.mark.graph, pytest.mark.slow]
runner = CliRunner()
MAX_TOKENS = "200"  # short answers keep the suite fast on 2 cores


def graph_dump() -> list:
    with open_store("embedded", data_dir=Path(os.environ["EXTRACTOR_DATA_DIR"])) as store:
        return dump_graph(store)


def run_job(docs: Path, llama_url: str, *extra: str) -> dict:
    result = invoke("run", str(docs), "--local-url", llama_url, "--max-tokens", MAX_TOKENS, "--json", *extra)
    assert result.exit_code in (0, 3, 6), result.stderr
    data = orjson.loads(result.stdout)
    assert data["exit_code"] == result.exit_code
    return data


def test_run_verify_commit_rollback_restores_the_graph(tmp_path: Path, docs_dir: Path, llama_url: str) -> None:
    store = JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))

    # An earlier night's job, committed first: rollback of the next job must leave it untouched.
    earlier_docs = tmp_path / "earlier"
    earlier_docs.mkdir()
    first = sorted(docs_dir.iterdir())[0]
    (earlier_docs / first.name).write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    earlier = run_job(earlier_docs, llama_url)
    assert store.load(earlier["job_id"]).state is State.COMMITTED
    before = graph_dump()

    data = run_job(docs_dir, llama_url, "--no-commit")
    job = store.load(data["job_id"])
    assert job.state is State.VERIFIED
    assert data["prepare"]["documents"] == 3 and data["prepare"]["requests"] == 3

    # every document has an outcome; every entity of every answered document has a verdict
    results = {r["custom_id"]: r for r in iter_jsonl(job.results_path)}
    report = read_json(job.verify_path)
    assert len(report["documents"]) == 3
    for doc in report["documents"]:
        row = results[doc["custom_id"]]
        if row["outcome"] != "ok":
            assert doc["status"] == "failed"
            continue
        assert len(doc["entities"]) == len(row["answer"]["entities"])
        text = next(
            line["body"]["messages"][1]["content"]
            for f in job.request_files()
            for line in iter_jsonl(f)
            if line["custom_id"] == doc["custom_id"]
        )
        for ent in doc["entities"]:
            assert ent["verdict"] in ("grounded", "fuzzy", "leaked", "ungrounded")
            if ent["verdict"] in ("grounded", "fuzzy"):
                start, end = ent["span"]
                assert text[start:end], ent  # the span points at real text of this document
            if ent["verdict"] == "grounded":
                assert text[start:end].casefold().startswith(ent["name"].casefold()[:3])

    committed = invoke("commit", job.id, "--json")
    assert committed.exit_code == 0, committed.stderr
    summary = orjson.loads(committed.stdout)
    after_commit = graph_dump()
    clean = [d for d in report["documents"] if d["status"] == "clean"]
    doc_nodes = [n for n in after_commit if n["kind"] == "node" and "Document" in n["labels"]]
    job_docs = {n["properties"]["doc_id"] for n in doc_nodes if job.id in n["properties"]["jobs"]}
    assert job_docs == {d["doc_id"] for d in clean}
    assert summary["documents"] == len(clean)
    if clean:
        assert after_commit != before

    rolled = invoke("rollback", job.id, "--json")
    assert rolled.exit_code == 0, rolled.stderr
    assert graph_dump() == before
    assert store.load(job.id).state is State.ROLLED_BACK
