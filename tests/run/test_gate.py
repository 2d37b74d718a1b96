"""`run --pipeline`: a gate job, then extraction of exactly the documents it passed — through the OpenAI Batch
emulator."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from extractor.jobs import Job
from extractor.run.gate import GATE_FILE, gate_prompt
from extractor.run.gated import extract_prepare_options, extraction_estimates, prepare_gated
from extractor.run.pipeline_file import load_pipeline
from extractor.spec.schema import load_spec
from extractor.storage import iter_jsonl, read_json
from tests.job_fixtures import cli_process, invoke, invoke_json, jobs, store
from tests.openai_emulator import BatchEmulator, GoldAnswerer
from tests.redocred import load_redocred, request_text, write_documents

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Is this document about a person?"


class GateAnswerer:
    """Gate requests (schema "gate"): yes for the titles in `passing`, an invalid answer for those in `invalid`;
    extraction requests: the document's gold entities and relations."""

    def __init__(self, corpus: list[dict]):
        self.gold = GoldAnswerer(corpus)
        self.passing: set[str] = set()
        self.invalid: set[str] = set()
        self.gate_calls = 0

    def __call__(self, body: dict) -> dict:
        if body["response_format"]["json_schema"]["name"] != "gate":
            return self.gold(body)
        self.gate_calls += 1
        doc = self.gold.find(request_text(body))
        assert doc is not None and QUESTION in body["messages"][0]["content"]
        title = doc["title"]
        if title in self.invalid:
            return {"answer": "maybe", "reason": "unsure"}  # breaks the strict schema: collect calls it schema_invalid
        return {"answer": title in self.passing, "reason": f"{title} decided by the test"}


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return load_redocred()[:4]


@pytest.fixture
def answerer(corpus: list[dict]) -> GateAnswerer:
    answerer = GateAnswerer(corpus)
    answerer.passing = {corpus[0]["title"], corpus[2]["title"]}
    return answerer


@pytest.fixture
def emu(answerer: GateAnswerer, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchEmulator]:
    with BatchEmulator(answerer) as emulator:
        monkeypatch.setenv("OPENAI_API_KEY", emulator.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)
        yield emulator


@pytest.fixture
def docs(tmp_path: Path, corpus: list[dict]) -> Path:
    write_documents(corpus, tmp_path / "docs")
    return tmp_path / "docs"


def pipeline_file(
    tmp_path: Path,
    *,
    on_failure: str = "extract",
    gate_backend: str = "openai",
    extract_backend: str = "openai",
    extra: str = "",
) -> Path:
    path = tmp_path / "pipelines" / "test.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"""name = "people"
[gate]
question = "{QUESTION}"
backend = "{gate_backend}"
model = "gpt-5.4-nano"
on_failure = "{on_failure}"
max_tokens = 64
{extra}
[extract]
spec = "{REPO / "extractor" / "spec" / "default.json"}"
backend = "{extract_backend}"
model = "gpt-4.1-mini"
""",
        encoding="utf-8",
    )
    return path


def run_args(docs: Path, pipeline: Path, *extra: str) -> tuple[str, ...]:
    return ("run", str(docs), "--pipeline", str(pipeline), "--poll-interval", "0.05", "--no-commit", *extra)


def gate_and_extraction() -> tuple[Job, Job]:
    by_spec = {job.manifest["spec"]["name"]: job for job in jobs()}
    assert len(jobs()) == 2 and set(by_spec) == {"gate", "entities_relations"}
    return by_spec["gate"], by_spec["entities_relations"]


def paths(job: Job) -> set[str]:
    return {d["path"] for d in job.documents()}


# ---------------------------------------------------------------- the two stages


def test_a_gate_that_rejects_half_leaves_exactly_the_other_half_to_extraction(
    emu: BatchEmulator, docs: Path, tmp_path: Path, corpus: list[dict]
) -> None:
    data = invoke_json(*run_args(docs, pipeline_file(tmp_path)))

    gate_job, extraction = gate_and_extraction()
    decisions = read_json(gate_job.path / GATE_FILE)
    passed = {d["path"] for d in decisions["documents"] if d["decision"] == "passed"}
    assert len(passed) == 2 and paths(extraction) == passed  # the extraction job holds exactly the passing half
    assert {d["sha256"] for d in extraction.documents()} == {
        d["sha256"] for d in decisions["documents"] if d["extract"]
    }
    assert len(emu.batches) == 2 and emu.calls["POST /v1/batches"] == 2  # one gate batch, one extraction batch
    extraction_lines = list(iter_jsonl(extraction.request_files()[0]))
    assert len(extraction_lines) == 2

    gate = data["gate"]
    assert (gate["job_id"], gate["documents"], gate["passed"], gate["rejected"], gate["failed"], gate["extracted"]) == (
        gate_job.id,
        4,
        2,
        2,
        0,
        2,
    )
    assert (gate["backend"], gate["model"], gate["question"]) == ("openai", "gpt-5.4-nano", QUESTION)
    assert data["extract"]["job_id"] == extraction.id and data["extract"]["collect"]["ok"] == 2
    assert data["extract"]["verify"]["clean"] == 2 and data["exit_code"] == 0
    # each stage has its own cost; the run's is their sum
    assert gate["cost_usd"] == gate_job.manifest["cost"]["usd"] > 0
    assert data["cost_usd"] == pytest.approx(gate["cost_usd"] + extraction.manifest["cost"]["usd"], abs=1e-6)

    for doc in decisions["documents"]:
        assert doc["outcome"] == "ok" and isinstance(doc["answer"], bool) and doc["reason"].endswith("by the test")
        assert doc["tokens"]["prompt"] > 0 and doc["tokens"]["completion"] > 0 and doc["cost_usd"] > 0
        assert doc["decision"] == ("passed" if doc["answer"] else "rejected")
    # what the gate saved: the extraction estimate of the rejected documents; the passed ones' estimate is
    # what prepare priced the extraction job at
    summary = decisions["summary"]
    rejected = [d["extraction_estimate_usd"] for d in decisions["documents"] if d["decision"] == "rejected"]
    assert summary["saved_usd"] == gate["saved_usd"] == data["saved_usd"] == pytest.approx(sum(rejected), abs=1e-6)
    assert summary["saved_usd"] > 0
    assert summary["extraction_estimate_passed_usd"] == pytest.approx(
        extraction.manifest["estimate"]["estimated_cost_usd"], abs=1e-5
    )
    assert summary["extraction_estimate_usd"] == pytest.approx(
        summary["saved_usd"] + summary["extraction_estimate_passed_usd"]
    )
    assert gate_job.manifest["gate"] == summary and gate_job.state.value == "collected"


def test_the_gate_request_holds_the_question_in_the_system_message_and_one_document_alone(
    emu: BatchEmulator, docs: Path, tmp_path: Path
) -> None:
    invoke_json(*run_args(docs, pipeline_file(tmp_path)))

    gate_job, _ = gate_and_extraction()
    texts = {p.name: p.read_text(encoding="utf-8") for p in docs.iterdir()}
    for line in iter_jsonl(gate_job.request_files()[0]):
        system, user = line["body"]["messages"]
        assert system["role"] == "system" and f"Question: {QUESTION}" in system["content"]
        assert user["content"] in set(texts.values())
        assert line["body"]["response_format"]["json_schema"]["name"] == "gate"
        assert line["body"]["max_completion_tokens"] == 64 and line["body"]["model"] == "gpt-5.4-nano"
    assert gate_job.manifest["audit"]["problems"] == []


def test_the_pipeline_summary_shows_both_stages(emu: BatchEmulator, docs: Path, tmp_path: Path) -> None:
    result = invoke(
        "run", str(docs), "--pipeline", str(pipeline_file(tmp_path)), "--poll-interval", "0.05", "--no-commit"
    )

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in (
        "pipeline people",
        "Is this document about a person?",
        "passed",
        "rejected",
        "saved by the gate",
        "answers valid against the schema",
        "documents clean",
        "total cost",
    ):
        assert text in out, out


def test_report_shows_the_money_the_gate_saved(emu: BatchEmulator, docs: Path, tmp_path: Path) -> None:
    data = invoke_json(*run_args(docs, pipeline_file(tmp_path)))
    saved = data["gate"]["saved_usd"]
    assert saved > 0

    report = invoke_json("report")
    gates = [j for j in report["jobs"] if j["gate"]]
    assert [j["job_id"] for j in gates] == [data["gate"]["job_id"]]
    assert gates[0]["gate"] == {"passed": 2, "rejected": 2, "failed": 0, "saved_usd": pytest.approx(saved)}
    assert report["saved_by_gates_usd"] == pytest.approx(saved, abs=1e-6)
    shown = invoke("report")
    assert shown.exit_code == 0 and "gates (extraction they kept out:" in shown.stdout


# ---------------------------------------------------------------- failed gate answers follow the policy


def test_invalid_gate_answers_are_extracted_by_default(
    emu: BatchEmulator, answerer: GateAnswerer, docs: Path, tmp_path: Path, corpus: list[dict]
) -> None:
    answerer.invalid = {corpus[1]["title"]}

    data = invoke_json(*run_args(docs, pipeline_file(tmp_path)))

    gate_job, extraction = gate_and_extraction()
    decisions = read_json(gate_job.path / GATE_FILE)
    [failed] = [d for d in decisions["documents"] if d["decision"] == "failed"]
    assert failed["outcome"] == "schema_invalid" and failed["extract"] and failed["answer"] is None
    assert failed["errors"] and failed["reason"] is None
    assert (data["gate"]["passed"], data["gate"]["rejected"], data["gate"]["failed"], data["gate"]["extracted"]) == (
        2,
        1,
        1,
        3,
    )
    assert failed["path"] in paths(extraction) and len(extraction.documents()) == 3
    assert data["exit_code"] == 0


def test_the_reject_policy_keeps_failed_gate_answers_out_and_says_so(
    emu: BatchEmulator, answerer: GateAnswerer, docs: Path, tmp_path: Path, corpus: list[dict]
) -> None:
    answerer.invalid = {corpus[1]["title"]}
    data = invoke_json(*run_args(docs, pipeline_file(tmp_path, on_failure="reject")), codes=(6,))

    gate_job, extraction = gate_and_extraction()
    decisions = read_json(gate_job.path / GATE_FILE)
    [failed] = [d for d in decisions["documents"] if d["decision"] == "failed"]
    assert not failed["extract"] and failed["path"] not in paths(extraction)
    assert len(extraction.documents()) == 2 and data["gate"]["extracted"] == 2
    assert data["exit_code"] == 6  # a document was not processed: cron should know


def test_nothing_passing_the_gate_makes_no_extraction_job(
    emu: BatchEmulator, answerer: GateAnswerer, docs: Path, tmp_path: Path
) -> None:
    answerer.passing = set()

    data = invoke_json(*run_args(docs, pipeline_file(tmp_path)))

    [gate_job] = jobs()
    assert data["nothing_passed"] and data["extract"] is None and data["gate"]["rejected"] == 4
    assert gate_job.manifest["spec"]["name"] == "gate" and len(emu.batches) == 1


# ---------------------------------------------------------------- resume


def test_a_run_killed_after_the_gate_reuses_the_gate_job_and_makes_one_extraction_job(
    emu: BatchEmulator, answerer: GateAnswerer, docs: Path, tmp_path: Path
) -> None:
    args = run_args(docs, pipeline_file(tmp_path))

    crashed = cli_process(*args, crash_after="gate")
    _, err = crashed.communicate(timeout=120)
    assert crashed.returncode == -signal.SIGKILL, err.decode()
    [gate_job] = jobs()
    assert (gate_job.path / GATE_FILE).is_file() and answerer.gate_calls == 4

    data = invoke_json(*args)
    again = invoke_json(*args)

    gate_job, extraction = gate_and_extraction()  # still one gate job and one extraction job
    assert data["gate"]["job_id"] == again["gate"]["job_id"] == gate_job.id and data["gate"]["resumed"]
    assert data["extract"]["job_id"] == again["extract"]["job_id"] == extraction.id
    assert answerer.gate_calls == 4 and len(emu.batches) == 2  # nothing was sent twice
    assert len(extraction.documents()) == 2 and again["extract"]["resumed"]


# ---------------------------------------------------------------- prepare, the spec, the pipeline file


def test_prepare_gated_prices_both_stages_with_extraction_as_an_upper_bound(docs: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(pipeline_file(tmp_path))

    data = prepare_gated(store(), docs, pipeline)

    [gate_job] = jobs()
    estimates = extraction_estimates(docs, extract_prepare_options(pipeline.extract))
    assert data["gate"]["job_id"] == gate_job.id and data["gate"]["documents"] == 4
    assert data["extract"]["documents"] == 4 and data["extract"]["model"] == "gpt-4.1-mini"
    assert data["extract"]["estimated_cost_usd_max"] == pytest.approx(sum(estimates.values()), abs=1e-6)
    assert data["estimated_cost_usd"] == pytest.approx(
        data["gate"]["estimated_cost_usd"] + data["extract"]["estimated_cost_usd_max"]
    )
    assert prepare_gated(store(), docs, pipeline)["gate"]["resumed"] and len(jobs()) == 1


def test_a_spec_with_null_grounding_loads_and_names_no_entities() -> None:
    spec = load_spec(REPO / "extractor" / "spec" / "gate.json")

    assert spec.entities is None and spec.entity_types() == [] and spec.relation_types() == []
    assert spec.validate_answer({"answer": True, "reason": "yes"}) == []
    assert spec.validate_answer({"answer": "maybe", "reason": "?"}) == ["/answer: 'maybe' is not of type 'boolean'"]
    assert spec.parse_answer({"answer": True, "reason": "yes"}).entities == []


def test_the_question_fills_the_gate_prompt_and_changes_its_hash() -> None:
    a, b = gate_prompt("local", "Is it {odd}?"), gate_prompt("local", "Is it about a film?")

    assert "Question: Is it {odd}?" in a.text and "{question}" not in a.text and a.name == "gate"
    assert a.sha256 != b.sha256 and gate_prompt("openai", "Q?").backend == "openai"


def test_the_bundled_example_pipeline_loads() -> None:
    pipeline = load_pipeline(REPO / "pipelines" / "filings.toml")

    assert (
        pipeline.gate.question == QUESTION
        and pipeline.gate.backend == "local"
        and pipeline.gate.on_failure == "extract"
    )
    assert pipeline.extract.spec == REPO / "extractor" / "spec" / "default.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[gate]\nquestion = "Q?"\ncolour = "red"\n',
            "gate.colour: unknown key — the gate table has only question, backend, model, pass_answer,"
            " max_tokens, on_failure",
        ),
        ('[gate]\nquestion = "Q?"\nmax_tokens = "64"\n', "gate.max_tokens: must be a positive integer, not '64'"),
        ('[gate]\nquestion = "Q?"\nmax_tokens = true\n', "gate.max_tokens: must be a positive integer, not True"),
        ('[gate]\nquestion = "Q?"\nbackend = "anthropic"\n', "gate.backend: must be local or openai, not 'anthropic'"),
        ('[gate]\nquestion = "Q?"\non_failure = "drop"\n', "gate.on_failure: must be extract or reject, not 'drop'"),
        ('[gate]\nbackend = "local"\n', 'gate.question: missing — add question = "Is this document about …?"'),
        ('[extract]\nspec = "x.json"\n', 'the gate table is missing — add one with at least question = "…"'),
        ('[gate]\nquestion = "Q?"\n[extract]\nspec = "nope.json"\n', "extract.spec: no such file"),
        ("stages = 2\n", "unknown key 'stages' — a pipeline file has only name, description, gate, extract"),
        ("[gate\n", "not valid TOML"),
    ],
)
def test_a_bad_pipeline_file_is_named_with_the_key_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")

    result = invoke("run", str(tmp_path), "--pipeline", str(path))

    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}: ") and message in " ".join(result.stderr.split()), result.stderr


def test_stage_flags_cannot_be_combined_with_a_pipeline(tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path), "--pipeline", str(pipeline_file(tmp_path)), "--model", "gpt-4o")

    assert result.exit_code == 2
    assert "--model cannot be combined with --pipeline" in " ".join(result.stderr.split())
