"""`run --pipeline` with both stages on the local lane: the real llama.cpp server (Gemma 270M) answers the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from extractor.run.gate import DECISIONS, GATE_FILE
from extractor.storage import read_json
from tests.job_fixtures import invoke_json, jobs

pytestmark = [pytest.mark.llm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
# Tiny documents and budgets: the machine is shared and a 270M model on 2 cores is slow under load.
TEXTS = {
    "ada.txt": "Ada Lovelace was an English mathematician born in London in 1815.\n",
    "river.txt": "The Raritan River is a river in New Jersey. It flows into Raritan Bay.\n",
}


def test_both_stages_run_on_the_local_model_and_gate_json_agrees_with_the_extraction_job(
    tmp_path: Path, llama_url: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    pipeline = tmp_path / "people.toml"
    pipeline.write_text(
        f"""name = "people"
[gate]
question = "Is this document about a person?"
backend = "local"
max_tokens = 32
[extract]
spec = "{REPO / "extractor" / "spec" / "default.json"}"
backend = "local"
max_tokens = 16
""",
        encoding="utf-8",
    )

    data = invoke_json(
        "run", str(docs), "--pipeline", str(pipeline), "--local-url", llama_url, "--no-commit", codes=(0, 3, 6)
    )

    gate_jobs = [j for j in jobs() if j.manifest["spec"]["name"] == "gate"]
    [gate_job] = gate_jobs
    decisions = read_json(gate_job.path / GATE_FILE)
    documents = decisions["documents"]
    assert len(documents) == 2 and gate_job.manifest["backend"] == "local" and gate_job.manifest["cost"]["usd"] == 0
    for doc in documents:  # whatever a 270M model answers, each decision follows from it
        assert doc["decision"] in DECISIONS
        if doc["outcome"] == "ok":
            assert isinstance(doc["answer"], bool) and isinstance(doc["reason"], str)
            assert doc["decision"] == ("passed" if doc["answer"] else "rejected")
            assert doc["tokens"]["completion"] > 0
        else:
            assert doc["decision"] == "failed" and doc["answer"] is None
        assert doc["extract"] is (doc["decision"] != "rejected")  # the default policy extracts failed answers
    counts = {d: sum(doc["decision"] == d for doc in documents) for d in DECISIONS}
    assert {d: data["gate"][d] for d in DECISIONS} == counts
    extracted = {doc["sha256"] for doc in documents if doc["extract"]}
    others = [j for j in jobs() if j.id != gate_job.id]
    if extracted:
        [extraction] = others
        assert {d["sha256"] for d in extraction.documents()} == extracted
        assert data["extract"]["job_id"] == extraction.id and extraction.manifest["backend"] == "local"
    else:
        assert others == [] and data["nothing_passed"]
