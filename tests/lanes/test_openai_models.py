"""The OpenAI lane against today's rules, one test (at least) per way the lane used to break them.

Each runs the CLI and the real openai SDK against the emulator, which refuses what the real API refuses
(tests/openai_rules.py cites each rule). The rows: temperature/seed on reasoning models, reasoning effort,
the enqueued-token limit, errors by kind, the cost cap across retries, strict-mode parity, current and
retired models, and /v1/responses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from extractor.errors import BadInput
from extractor.jobs import Job, JobStore
from extractor.prepare import models
from extractor.prepare.stage import DEFAULT_OPENAI_MODEL, PrepareOptions, prepare_job
from extractor.pricing import price_for
from extractor.storage import iter_jsonl
from tests.job_fixtures import invoke
from tests.openai_emulator import BatchEmulator, DropConnection
from tests.openai_rules import Refused, check_request, input_tokens
from tests.redocred import write_documents

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def as_json(result: Result) -> dict:
    return orjson.loads(result.stdout)


def store() -> JobStore:
    return JobStore(Path(os.environ["EXTRACTOR_JOBS_DIR"]))


def docs(tmp_path: Path, corpus: list[dict], count: int, start: int = 0) -> Path:
    folder = tmp_path / "docs"
    write_documents(corpus[start : start + count], folder)
    return folder


def collect(job_id: str) -> Result:
    return invoke("collect", job_id, "--wait", "--poll-interval", "0.01", "--json")


def lines(job: Job) -> list[dict]:
    return [line for path in job.request_files() for line in iter_jsonl(path)]


def results(job: Job) -> dict[str, dict]:
    return {row["custom_id"]: row for row in iter_jsonl(job.results_path)}


# ---------------------------------------------------------------- temperature, seed and reasoning effort


@pytest.mark.parametrize("model", ["gpt-5-mini", "gpt-5.4-mini", "o3"])
def test_a_reasoning_model_job_is_answered_in_full(
    model: str, emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Before: every line carried temperature 0 and seed 0, and every line of a gpt-5 / o-series job failed."""
    # documents 5-7: gold answers of 700-1,900 tokens, inside the default 4,096 with reasoning on top
    submitted = invoke("submit", docs(tmp_path, corpus, 3, start=5), "--backend", "openai", "--model", model, "--json")
    assert submitted.exit_code == 0, submitted.stderr
    job = store().load(as_json(submitted)["job_id"])

    collected = collect(job.id)

    assert collected.exit_code == 0, collected.stdout
    assert as_json(collected)["outcomes"]["ok"] == 3
    body = lines(job)[0]["body"]
    profile = models.profile_for(model)
    assert body["reasoning_effort"] == profile.efforts[0]  # the lowest the model allows
    assert ("temperature" in body) == (body["reasoning_effort"] == "none") and "seed" not in body
    assert "max_tokens" not in body and body["max_completion_tokens"] == 4096


def test_a_non_reasoning_model_keeps_temperature_0_and_seed_0(tmp_path: Path, corpus: list[dict]) -> None:
    job = prepare_job(
        store(), docs(tmp_path, corpus, 1), PrepareOptions(backend="openai", model="gpt-4.1-mini", count_tokens=False)
    ).job
    body = lines(job)[0]["body"]
    assert (body["temperature"], body["seed"]) == (0.0, 0) and "reasoning_effort" not in body


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--model", "gpt-5-mini", "--reasoning-effort", "none"),
            "model gpt-5-mini does not take reasoning_effort 'none' — use one of minimal, low, medium, high",
        ),
        (
            ("--model", "gpt-4.1-mini", "--reasoning-effort", "low"),
            "model gpt-4.1-mini is not a reasoning model and refuses reasoning_effort — drop --reasoning-effort",
        ),
        (
            ("--model", "gpt-4.1-mini", "--verbosity", "low"),
            "model gpt-4.1-mini does not take verbosity (gpt-5 and later do) — drop --verbosity",
        ),
        (
            ("--model", "gpt-5.4-mini", "--reasoning-effort", "turbo"),
            "model gpt-5.4-mini does not take reasoning_effort 'turbo' — use one of none, low, medium, high, xhigh",
        ),
        (("--model", "gpt-5.5-pro"), "model gpt-5.5-pro answers only on /v1/responses — pass --endpoint responses"),
        (
            ("--model", "gpt-4.1-nano"),
            "model gpt-4.1-nano was shut down on 2026-10-23 (OpenAI deprecations page) — use gpt-5.6-luna"
            " (--model gpt-5.6-luna)",
        ),
    ],
)
def test_prepare_refuses_what_the_model_refuses_in_one_line(
    args: tuple[str, ...], message: str, tmp_path: Path, corpus: list[dict]
) -> None:
    result = invoke("prepare", docs(tmp_path, corpus, 1), "--backend", "openai", *args)

    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == f"Error: {message}"
    assert not list(store())  # nothing written, nothing sent


def test_temperature_on_gpt54_is_refused_unless_reasoning_is_off() -> None:
    asked = models.RequestSettings(max_tokens=100, reasoning_effort="low", temperature=0.0)
    with pytest.raises(BadInput, match=r"refuses temperature 0.0: it takes only while reasoning effort is none"):
        models.resolve("gpt-5.4-mini", "chat", asked)
    assert (
        models.resolve("gpt-5.4-mini", "chat", models.RequestSettings(max_tokens=100, temperature=0.0))["temperature"]
        == 0.0
    )


def test_a_small_budget_is_not_spent_on_reasoning(emu: BatchEmulator, tmp_path: Path, corpus: list[dict]) -> None:
    """gpt-5-mini defaults to medium effort, which spends a small budget (the gate's 96) before answering."""
    folder = docs(tmp_path, corpus, 2, start=5)
    probe = prepare_job(store(), folder, PrepareOptions(backend="openai", model="gpt-5-mini", count_tokens=False)).job
    longest = max(len(json.dumps(emu.answerer(line["body"]), ensure_ascii=False)) // 4 + 1 for line in lines(probe))
    budget = longest + 40  # room for the answer and minimal effort's reasoning, not for medium's
    low = prepare_job(
        store(), folder, PrepareOptions(backend="openai", model="gpt-5-mini", max_tokens=budget, count_tokens=False)
    ).job
    medium = prepare_job(
        store(),
        folder,
        PrepareOptions(
            backend="openai", model="gpt-5-mini", max_tokens=budget, reasoning_effort="medium", count_tokens=False
        ),
    ).job
    for job in (low, medium):
        assert invoke("submit", "--job", job.id).exit_code == 0
        collect(job.id)
    assert {r["outcome"] for r in results(low).values()} == {"ok"}
    assert "truncated" in {r["outcome"] for r in results(medium).values()}  # what the model's default does
    usage = next(iter(results(low).values()))["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0  # billed as output, counted in the budget


# ---------------------------------------------------------------- current and retired models, prices


def test_defaults_are_the_users_choices_and_current_models_are_priced() -> None:
    from extractor.run.gate import DEFAULT_GATE_OPENAI_MODEL

    assert (DEFAULT_OPENAI_MODEL, DEFAULT_GATE_OPENAI_MODEL) == ("gpt-5.4-mini", "gpt-5.4-nano")
    current = [
        family
        for family, p in models.PROFILES.items()
        if p.shutdown is None or dt.date.fromisoformat(p.shutdown) > dt.date(2026, 12, 2)
    ]
    assert {"gpt-5.5", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.4-nano"} <= set(current)
    assert [family for family in current if price_for(family) is None] == []


def test_a_retired_snapshot_is_refused_and_a_deprecated_model_warns(tmp_path: Path, corpus: list[dict]) -> None:
    with pytest.raises(BadInput, match="gpt-4o-2024-05-13 was shut down on 2026-10-23"):
        models.check_available("gpt-4o-2024-05-13")
    assert models.check_available("gpt-4o-2024-08-06", today=dt.date(2026, 12, 2)).startswith(
        "model gpt-4o-2024-08-06 shuts down on 2027-01-14"
    )
    summary = prepare_job(
        store(), docs(tmp_path, corpus, 1), PrepareOptions(backend="openai", model="gpt-5-mini", count_tokens=False)
    )
    assert summary.warnings and summary.warnings[0].startswith("model gpt-5-mini shuts down on 2026-12-11")


# ---------------------------------------------------------------- errors by kind


def test_deterministic_errors_are_not_resent_and_show_their_code_and_param(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Before: a 400 was http_error, retryable, and `retry` spent a batch cycle resending it."""
    job = prepare_job(store(), docs(tmp_path, corpus, 3), PrepareOptions(backend="openai", count_tokens=False)).job
    ids = [line["custom_id"] for line in lines(job)]
    emu.behaviour.enforce_rules = False
    emu.behaviour.fail_ids = {ids[0]}  # a provider-side 500
    assert invoke("submit", "--job", job.id).exit_code == 0
    # the second line meets a per-line 400 as the real API writes it
    emu.behaviour.enforce_rules = True
    original = check_request

    def refuse_second(url: str, body: dict) -> None:
        if body["messages"][1]["content"] == lines(job)[1]["body"]["messages"][1]["content"]:
            raise Refused(
                400,
                "Unsupported value: 'temperature' does not support 0 with this model. Only the"
                " default (1) value is supported.",
                code="unsupported_value",
                param="temperature",
            )
        original(url, body)

    import tests.openai_emulator as emulator_module

    emulator_module.check_request = refuse_second
    try:
        assert collect(job.id).exit_code == 6
    finally:
        emulator_module.check_request = original

    rows = results(store().load(job.id))
    assert rows[ids[0]]["error"] == {
        "kind": "transient",
        "status": 500,
        "code": None,
        "param": None,
        "type": "server_error",
    }
    assert rows[ids[1]]["error"] == {
        "kind": "deterministic",
        "status": 400,
        "code": "unsupported_value",
        "param": "temperature",
        "type": "invalid_request_error",
    }
    status = as_json(invoke("status", job.id, "--json"))
    assert {(e["kind"], e["code"], e["param"], e["lines"]) for e in status["errors"]} == {
        ("transient", None, None, 1),
        ("deterministic", "unsupported_value", "temperature", 1),
    }

    emu.behaviour.fail_ids = set()
    retried = as_json(invoke("retry", job.id, "--json"))

    assert retried["retried"] == 1  # the 500 only
    child = store().load(job.id).manifest["remote"]["batches"][-1]
    sent = [orjson.loads(raw)["custom_id"] for raw in emu.file_bytes(child["input_file_id"]).splitlines()]
    assert sent == [ids[0]]


# ---------------------------------------------------------------- the cost cap over a job's life


def test_a_retry_that_would_cross_the_cap_is_refused_before_anything_is_sent(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Before: retry never looked at --max-cost, and truncated lines went out at twice the budget."""
    job = prepare_job(store(), docs(tmp_path, corpus, 4), PrepareOptions(backend="openai", max_tokens=8000)).job
    estimate = job.manifest["estimate"]["estimated_cost_usd"]
    cap = round(estimate * 1.3, 6)
    ids = [line["custom_id"] for line in lines(job)]
    emu.behaviour.truncated_ids = set(ids[:2])
    assert invoke("submit", "--job", job.id, "--max-cost", cap).exit_code == 0
    assert collect(job.id).exit_code == 6
    batches_before = len(emu.batches)

    refused = invoke("retry", job.id)  # the cap recorded at submit still holds

    assert refused.exit_code == 2
    message = " ".join(refused.stderr.split())
    assert f"Job {job.id}: retrying 2 documents could cost up to $" in message
    assert f"over the cap of ${cap:.4f} — raise --max-cost, or lower --max-attempts" in message
    assert len(emu.batches) == batches_before and "attempts" not in store().load(job.id).manifest
    assert not (store().load(job.id).path / "superseded").exists()  # nothing set aside either

    emu.behaviour.truncated_ids = set()
    allowed = invoke("retry", job.id, "--max-cost", cap * 10, "--json")
    assert allowed.exit_code == 0, allowed.stderr
    assert as_json(allowed)["retried"] == 2
    child = [line for line in iter_jsonl(store().load(job.id).path / "retries" / "1" / "00000.jsonl")]
    assert {line["body"]["max_completion_tokens"] for line in child} == {16_000}  # doubled, and paid for in the check


# ---------------------------------------------------------------- the enqueued-token limit


def _three_shards(tmp_path: Path, corpus: list[dict]) -> tuple[Job, int]:
    """A job of three request files, and a limit that holds one of them at a time (not two)."""
    job = prepare_job(
        store(), docs(tmp_path, corpus, 6), PrepareOptions(backend="openai", max_lines_per_file=2, count_tokens=False)
    ).job
    sizes = [-(-s["bytes"] // 3) for s in job.manifest["shards"]]
    return job, int(max(sizes) * 1.5)


def test_shards_go_out_in_waves_under_the_enqueued_token_limit(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Before: all shards' batches were created at once, and the API failed the ones over its limit."""
    job, limit = _three_shards(tmp_path, corpus)
    emu.behaviour.enqueued_token_limit = limit
    most_at_once = []
    emu.behaviour.hooks["POST /v1/batches"] = lambda _: most_at_once.append(
        sum(1 for b in emu.batches.values() if b.obj["status"] not in ("completed", "failed", "expired", "cancelled"))
    )

    submitted = invoke("submit", "--job", job.id, "--max-enqueued-tokens", limit, "--json")

    assert submitted.exit_code == 0, submitted.stderr
    assert (as_json(submitted)["created"], as_json(submitted)["waiting"]) == (1, 2)
    assert collect(job.id).exit_code == 0
    manifest = store().load(job.id).manifest
    assert [e["wave"] for e in manifest["remote"]["batches"]] == [1, 2, 3] and manifest["remote"]["waves"] == 3
    assert len(emu.batches) == 3 and max(most_at_once) == 1  # one unfinished batch at a time
    assert all(b.obj["status"] == "completed" for b in emu.batches.values())
    assert manifest["outcomes"]["ok"] == 6


def test_a_batch_refused_for_the_limit_is_created_again_later_not_failed(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Other work shares the limit: the API's token_limit_exceeded puts the shard back in the queue."""
    job, _ = _three_shards(tmp_path, corpus)
    emu.behaviour.enqueued_token_limit = (
        max(
            sum(input_tokens("/v1/chat/completions", line["body"]) for line in iter_jsonl(path))
            for path in job.request_files()
        )
        + 10
    )  # one batch at a time fits, on the emulator's own count

    assert invoke("submit", "--job", job.id, "--max-enqueued-tokens", 10**9).exit_code == 0
    collected = collect(job.id)

    assert collected.exit_code == 0, collected.stdout
    entries = store().load(job.id).manifest["remote"]["batches"]
    assert sum(len(e.get("token_limit_failures", [])) for e in entries) >= 1
    refused = [b for b in emu.batches.values() if b.obj["status"] == "failed"]
    assert refused and all(b.obj["errors"]["data"][0]["code"] == "token_limit_exceeded" for b in refused)
    assert sorted(e["batch_id"] for e in entries) == sorted(
        b.obj["id"] for b in emu.batches.values() if b.obj["status"] == "completed"
    )
    assert as_json(collected)["outcomes"]["ok"] == 6
    events = [e["event"] for e in iter_jsonl(store().load(job.id).log_path)]
    assert "batch_requeued" in events


def test_a_shard_over_the_limit_on_its_own_is_refused_before_sending(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    job, _ = _three_shards(tmp_path, corpus)
    result = invoke("submit", "--job", job.id, "--max-enqueued-tokens", 100)
    assert result.exit_code == 2
    assert "requests/00000.jsonl holds about" in result.stderr and "smaller --max-lines-per-file" in result.stderr
    assert not emu.batches and not emu.files


def test_kill_9_between_waves_then_rerun_gives_one_batch_per_shard(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    job, limit = _three_shards(tmp_path, corpus)
    emu.behaviour.enqueued_token_limit = limit
    assert invoke("submit", "--job", job.id, "--max-enqueued-tokens", limit).exit_code == 0  # wave 1
    victim: dict[str, subprocess.Popen] = {}

    def kill_after_create(_: dict) -> None:  # wave 2 is created remotely, the client dies before it hears
        emu.behaviour.hooks.clear()
        os.kill(victim["process"].pid, signal.SIGKILL)
        victim["process"].wait()
        raise DropConnection

    emu.behaviour.hooks["POST /v1/batches"] = kill_after_create
    victim["process"] = subprocess.Popen(
        [sys.executable, "-m", "extractor.cli", "collect", job.id, "--wait", "--poll-interval", "0.01"],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert victim["process"].wait(timeout=120) == -signal.SIGKILL
    assert len(emu.batches) == 2 and "creating_since" in store().load(job.id).manifest["remote"]["batches"][1]

    assert collect(job.id).exit_code == 0

    shards = sorted(b.obj["metadata"]["extractor_shard"] for b in emu.batches.values())
    assert shards == ["00000", "00001", "00002"]  # exactly one batch per shard
    assert store().load(job.id).manifest["outcomes"]["ok"] == 6


# ---------------------------------------------------------------- /v1/responses


def test_the_responses_endpoint_round_trip_verifies_like_chat(
    emu: BatchEmulator, tmp_path: Path, corpus: list[dict]
) -> None:
    """Before: only /v1/chat/completions, so -pro models failed every line."""
    folder = docs(tmp_path, corpus, 3)
    submitted = invoke("submit", folder, "--backend", "openai", "--endpoint", "responses", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    job = store().load(as_json(submitted)["job_id"])
    [batch] = emu.batches.values()
    assert batch.obj["endpoint"] == "/v1/responses"
    line = lines(job)[0]
    assert line["url"] == "/v1/responses" and [m["role"] for m in line["body"]["input"]] == ["system", "user"]
    assert line["body"]["text"]["format"]["type"] == "json_schema" and line["body"]["text"]["format"]["strict"]
    assert line["body"]["max_output_tokens"] == 4096 and line["body"]["reasoning"] == {"effort": "none"}

    assert collect(job.id).exit_code == 0
    rows = results(store().load(job.id))
    assert {r["outcome"] for r in rows.values()} == {"ok"}
    assert all(r["answer"]["entities"] for r in rows.values()) and store().load(job.id).manifest["cost"]["usd"] > 0
    verified = invoke("verify", job.id, "--json")
    assert verified.exit_code in (0, 3) and as_json(verified)["summary"]["documents"] == 3
    assert invoke("audit", job.id).exit_code == 0


def test_a_pro_model_runs_on_responses(emu: BatchEmulator, tmp_path: Path, corpus: list[dict]) -> None:
    submitted = invoke(
        "submit",
        docs(tmp_path, corpus, 2, start=5),
        "--backend",
        "openai",
        "--model",
        "gpt-5.5-pro",
        "--endpoint",
        "responses",
        "--json",
    )
    assert submitted.exit_code == 0, submitted.stderr
    collected = collect(as_json(submitted)["job_id"])
    assert collected.exit_code == 0 and as_json(collected)["outcomes"]["ok"] == 2


# ---------------------------------------------------------------- pipeline files and hostile input

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from extractor.spec.strict_mode import unsupported_regex  # noqa: E402


def test_a_pipeline_file_carries_the_openai_settings_to_its_stages(tmp_path: Path) -> None:
    from extractor.run.gate import gate_prepare_options
    from extractor.run.gated import extract_prepare_options
    from extractor.run.pipeline_file import load_pipeline

    path = tmp_path / "p.toml"
    path.write_text(
        '[gate]\nquestion = "Q?"\nbackend = "openai"\nreasoning_effort = "low"\n'
        '[extract]\nbackend = "openai"\nendpoint = "responses"\nverbosity = "low"\n',
        encoding="utf-8",
    )
    pipeline = load_pipeline(path)
    gate, extract = gate_prepare_options(pipeline.gate), extract_prepare_options(pipeline.extract)
    assert (gate.model, gate.reasoning_effort, gate.endpoint) == ("gpt-5.4-nano", "low", "chat")
    assert (extract.resolved_model(), extract.endpoint, extract.verbosity) == ("gpt-5.4-mini", "responses", "low")

    path.write_text('[gate]\nquestion = "Q?"\nendpoint = "batch"\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"gate.endpoint: must be chat or responses, not 'batch'"):
        load_pipeline(path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_the_regex_scan_never_crashes_and_flags_only_what_it_names(pattern: str) -> None:
    found = unsupported_regex(pattern)
    if "(?" not in pattern and "\\" not in pattern:
        assert found is None
    if found is not None:
        assert any(token in pattern for token in ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "\\"))


@settings(max_examples=300, deadline=None)
@given(
    model=st.text(max_size=30),
    effort=st.none() | st.text(max_size=8),
    verbosity=st.none() | st.text(max_size=8),
    endpoint=st.sampled_from(["chat", "responses", "batch"]),
)
def test_any_model_name_and_setting_resolve_or_fail_with_one_clear_line(
    model: str, effort: str | None, verbosity: str | None, endpoint: str
) -> None:
    try:
        resolved = models.resolve(
            model, endpoint, models.RequestSettings(max_tokens=64, reasoning_effort=effort, verbosity=verbosity)
        )
    except BadInput as exc:
        assert "\n" not in exc.message and exc.message
        return
    body = models.body_params(resolved, endpoint)
    assert body.get("max_completion_tokens", body.get("max_output_tokens")) == 64


def test_the_gate_spend_counts_against_the_extraction_cap(tmp_path: Path, corpus: list[dict]) -> None:
    from extractor.lanes.submit import check_cost_cap

    job = prepare_job(store(), docs(tmp_path, corpus, 2), PrepareOptions(backend="openai")).job
    estimate = job.manifest["estimate"]["estimated_cost_usd"]
    check_cost_cap(job, estimate + 0.01)  # fits alone
    with pytest.raises(BadInput, match=rf"estimated cost \${estimate:.4f} on top of \$0.0200 spent by the gate"):
        check_cost_cap(job, estimate + 0.01, spent_before_usd=0.02)
    assert store().load(job.id).manifest["cost_cap_spent_before_usd"] == 0.02  # retry counts it too
