"""The OpenAI Batch emulator, driven through the real openai SDK over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.openai_emulator import (
    BatchEmulator,
    GoldAnswerer,
    gold_answer,
    load_redocred,
    redocred_text,
)
from tests.openai_rules import Refused, check_request

SPEC = json.loads((Path(__file__).resolve().parents[2] / "extractor" / "spec" / "default.json").read_text())
IDS = ["d0", "d1", "d2", "d3"]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return load_redocred()


@pytest.fixture(scope="module")
def answerer(docs: list[dict]) -> GoldAnswerer:
    return GoldAnswerer(docs)


@pytest.fixture
def emu(answerer: GoldAnswerer) -> Iterator[BatchEmulator]:
    with BatchEmulator(answerer) as emulator:
        yield emulator


@pytest.fixture
def client(emu: BatchEmulator) -> OpenAI:
    return OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)


def request_lines(docs: list[dict], ids: list[str] = IDS) -> bytes:
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "max_completion_tokens": 800,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "strict": True, "schema": SPEC["schema"]},
                },
                "messages": [
                    {"role": "system", "content": "Extract entities and relations."},
                    {"role": "user", "content": redocred_text(doc)},
                ],
            },
        }
        for custom_id, doc in zip(ids, docs, strict=False)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def submit(client: OpenAI, data: bytes, **metadata: str) -> str:
    upload = client.files.create(file=("requests.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata or None
    )
    return batch.id


def poll(client: OpenAI, batch_id: str) -> tuple[openai.types.Batch, list[str]]:
    """Retrieve until terminal; returns the final batch and every status seen."""
    seen = []
    for _ in range(20):
        batch = client.batches.retrieve(batch_id)
        seen.append(batch.status)
        if batch.status in {"completed", "failed", "expired", "cancelled"}:
            return batch, seen
    raise AssertionError(f"batch never finished: {seen}")


def download(client: OpenAI, file_id: str | None) -> list[str]:
    return [] if file_id is None else client.files.content(file_id).text.splitlines()


def answers(lines: list[str]) -> dict[str, dict]:
    parsed = [json.loads(line) for line in lines]
    return {
        line["custom_id"]: json.loads(line["response"]["body"]["choices"][0]["message"]["content"]) for line in parsed
    }


def test_round_trip_maps_answers_by_custom_id(client: OpenAI, emu: BatchEmulator, docs: list[dict]) -> None:
    data = request_lines(docs[:4])
    upload = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert (upload.purpose, upload.bytes) == ("batch", len(data))
    assert client.files.retrieve(upload.id).filename == "requests.jsonl"
    assert emu.file_bytes(upload.id) == data
    created = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert created.status == "validating"

    batch, seen = poll(client, created.id)

    assert seen == ["in_progress", "finalizing", "completed"]
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}
    assert batch.completed_at and batch.in_progress_at and batch.finalizing_at and batch.error_file_id is None
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    lines = [json.loads(line) for line in download(client, batch.output_file_id)]
    assert [line["custom_id"] for line in lines] == IDS
    first = lines[0]
    assert set(first) == {"id", "custom_id", "response", "error"} and first["error"] is None
    assert first["id"].startswith("batch_req_") and first["response"]["status_code"] == 200
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    got = answers(download(client, batch.output_file_id))
    assert got == {custom_id: gold_answer(doc) for custom_id, doc in zip(IDS, docs, strict=False)}
    assert emu.calls["POST /v1/batches"] == 1 and emu.calls["GET /v1/batches/{id}"] == 3


def test_gold_answers_fit_the_default_spec_and_quote_their_document(docs: list[dict]) -> None:
    validator = jsonschema.Draft202012Validator(SPEC["schema"])
    for doc in docs:
        answer, text = gold_answer(doc), redocred_text(doc)
        validator.validate(answer)
        assert all(entity["name"] in text for entity in answer["entities"])
        assert all(relation["evidence"] in text for relation in answer["relations"])


def test_gold_answerer_finds_a_document_inside_a_template(answerer: GoldAnswerer, docs: list[dict]) -> None:
    text = f"Document:\n{redocred_text(docs[7])}\n"
    wrapped = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    assert answerer(wrapped) == gold_answer(docs[7])
    unknown = {"messages": [{"role": "user", "content": "no such document"}]}
    assert answerer(unknown) == {"entities": [], "relations": []}


def test_wrong_key_raises_authentication_error(emu: BatchEmulator) -> None:
    client = OpenAI(base_url=emu.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.batches.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"


def test_unknown_ids_are_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-missing")


def test_sdk_retries_429_and_500_on_create_and_download(emu: BatchEmulator, docs: list[dict]) -> None:
    emu.behaviour.faults = {"POST /v1/batches": [429, 500], "GET /v1/files/{id}/content": [500, 429]}
    client = OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=2)

    batch, _ = poll(client, submit(client, request_lines(docs[:3], IDS[:3])))
    lines = download(client, batch.output_file_id)

    assert len(lines) == 3
    assert emu.calls["POST /v1/batches"] == 3 and emu.calls["GET /v1/files/{id}/content"] == 3
    assert len(emu.batches) == 1  # the failed attempts created nothing


def test_faults_beyond_the_retry_budget_reach_the_caller(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.faults = {"POST /v1/batches": [429]}
    with pytest.raises(openai.RateLimitError):
        submit(client, request_lines(docs[:1], IDS[:1]))


def test_shuffled_output_keeps_every_custom_id(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.shuffle_output = True
    batch, _ = poll(client, submit(client, request_lines(docs[:4])))
    lines = download(client, batch.output_file_id)
    order = [json.loads(line)["custom_id"] for line in lines]
    assert order != IDS and sorted(order) == IDS
    assert answers(lines) == {custom_id: gold_answer(doc) for custom_id, doc in zip(IDS, docs, strict=False)}


def test_failing_ids_go_to_the_error_file(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.fail_ids = {"d1"}
    batch, _ = poll(client, submit(client, request_lines(docs[:4])))
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 3, "failed": 1}
    (error,) = [json.loads(line) for line in download(client, batch.error_file_id)]
    assert error["custom_id"] == "d1" and error["error"] is None
    assert error["response"]["status_code"] == 500 and error["response"]["body"]["error"]["type"] == "server_error"
    assert sorted(answers(download(client, batch.output_file_id))) == ["d0", "d2", "d3"]


def test_a_fraction_fails_with_response_null(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.fail_fraction, emu.behaviour.fail_status = 0.5, None
    batch, _ = poll(client, submit(client, request_lines(docs[:4])))
    errors = [json.loads(line) for line in download(client, batch.error_file_id)]
    assert len(errors) == 2 and batch.request_counts.failed == 2
    assert all(line["response"] is None and line["error"]["code"] == "server_error" for line in errors)


def test_expired_batch_keeps_half_and_drops_the_rest(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.expire_at_fraction = 0.5
    batch, seen = poll(client, submit(client, request_lines(docs[:4])))
    assert seen[-1] == "expired" and batch.expired_at and batch.completed_at is None
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 0}
    assert sorted(answers(download(client, batch.output_file_id))) == ["d0", "d1"]
    assert batch.error_file_id is None


def test_expired_batch_can_report_the_rest(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.expire_at_fraction, emu.behaviour.expired_error_lines = 0.5, True
    batch, _ = poll(client, submit(client, request_lines(docs[:4])))
    errors = [json.loads(line) for line in download(client, batch.error_file_id)]
    assert [(line["custom_id"], line["error"]["code"], line["response"]) for line in errors] == [
        ("d2", "batch_expired", None),
        ("d3", "batch_expired", None),
    ]


def test_cancel_keeps_the_lines_done_so_far(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.auto_complete, emu.behaviour.lines_per_step = False, 2
    batch_id = submit(client, request_lines(docs[:4]))
    assert emu.advance(batch_id, steps=2) == "in_progress"  # validated, then two lines answered

    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert client.batches.retrieve(batch_id).status == "cancelling"  # auto_complete off: nothing moves
    emu.complete_all()
    batch = client.batches.retrieve(batch_id)

    assert batch.status == "cancelled" and batch.cancelled_at
    assert sorted(answers(download(client, batch.output_file_id))) == ["d0", "d1"]
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch_id)
    assert emu.calls["POST /v1/batches/{id}/cancel"] == 2


def test_malformed_output_line_is_not_json(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.malformed_ids = {"d2"}
    batch, _ = poll(client, submit(client, request_lines(docs[:3], IDS[:3])))
    lines = download(client, batch.output_file_id)
    assert len(lines) == 3
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[2])
    assert sorted(answers(lines[:2])) == ["d0", "d1"]


def test_schema_violation_truncation_and_refusal(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.schema_violation_ids, emu.behaviour.truncated_ids, emu.behaviour.refusal_ids = {"d0"}, {"d1"}, {"d2"}
    batch, _ = poll(client, submit(client, request_lines(docs[:3], IDS[:3])))
    choices = {
        line["custom_id"]: line["response"]["body"]["choices"][0]
        for line in map(json.loads, download(client, batch.output_file_id))
    }

    violating = json.loads(choices["d0"]["message"]["content"])
    assert not jsonschema.Draft202012Validator(SPEC["schema"]).is_valid(violating)
    assert choices["d1"]["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choices["d1"]["message"]["content"])
    assert choices["d2"]["message"]["content"] is None and choices["d2"]["message"]["refusal"]


def test_concatenation_adds_neighbour_entities(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.concatenate, emu.behaviour.concatenate_ids = True, {"d1"}
    batch, _ = poll(client, submit(client, request_lines(docs[:4])))
    got = answers(download(client, batch.output_file_id))
    gold = {custom_id: gold_answer(doc) for custom_id, doc in zip(IDS, docs, strict=False)}

    assert {custom_id for custom_id in IDS if got[custom_id] != gold[custom_id]} == {"d1"}
    leaked = [entity for entity in got["d1"]["entities"] if entity not in gold["d1"]["entities"]]
    neighbours = gold["d0"]["entities"] + gold["d2"]["entities"]
    assert leaked and all(entity in neighbours for entity in leaked)
    assert any(entity["name"] not in redocred_text(docs[1]) for entity in leaked)  # a leak a verifier can see


def test_list_paginates_newest_first_with_metadata(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    data = request_lines(docs[:1], IDS[:1])
    ids = [submit(client, data, job="j1", shard=str(shard)) for shard in range(3)]

    page = client.batches.list(limit=2)
    assert [batch.id for batch in page.data] == ids[:0:-1] and page.has_more
    everything = list(client.batches.list(limit=2))  # the SDK follows the `after` cursor
    assert [batch.id for batch in everything] == ids[::-1]
    assert [batch.id for batch in everything if batch.metadata == {"job": "j1", "shard": "1"}] == [ids[1]]
    assert emu.calls["GET /v1/batches"] == 3


def test_invalid_input_file_fails_validation(client: OpenAI, docs: list[dict]) -> None:
    data = request_lines(docs[:2], ["same", "same"]) + b"not json\n"
    batch, seen = poll(client, submit(client, data))
    assert seen == ["failed"] and batch.failed_at
    found = [(error.code, error.line) for error in batch.errors.data]
    assert found == [("duplicate_custom_id", 2), ("invalid_json_line", 3)]


def test_create_rejects_an_unknown_endpoint(client: OpenAI, docs: list[dict]) -> None:
    upload = client.files.create(file=("requests.jsonl", request_lines(docs[:1], IDS[:1])), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h")


def test_a_custom_answerer_is_used_and_its_crash_becomes_a_500_line(docs: list[dict]) -> None:
    def answer(body: dict) -> dict:
        if "Ross Patterson Alger" in body["messages"][-1]["content"]:
            raise RuntimeError("boom")
        return {"entities": [{"name": body["model"], "type": "OTHER"}], "relations": []}

    with BatchEmulator(answer) as emu:
        client = OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
        emu.behaviour.auto_complete = False
        batch_id = submit(client, request_lines(docs[:2], IDS[:2]))
        emu.complete_all()
        batch = client.batches.retrieve(batch_id)
        got = answers(download(client, batch.output_file_id))
        (error,) = map(json.loads, download(client, batch.error_file_id))
    assert batch.status == "completed"
    assert got == {"d0": {"entities": [{"name": "gpt-4o-mini", "type": "OTHER"}], "relations": []}}
    assert error["custom_id"] == "d1" and error["response"]["status_code"] == 500


def test_forced_expiry_keeps_the_lines_done(emu: BatchEmulator, client: OpenAI, docs: list[dict]) -> None:
    emu.behaviour.auto_complete, emu.behaviour.lines_per_step = False, 1
    batch_id = submit(client, request_lines(docs[:3], IDS[:3]))
    emu.advance(batch_id, steps=2)
    emu.expire(batch_id)
    assert emu.batch(batch_id)["status"] == "expired"
    batch = client.batches.retrieve(batch_id)
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 0}
    assert sorted(answers(download(client, batch.output_file_id))) == ["d0"]


# ---------------------------------------------------------------- the real API's per-model rules (issue 16)

_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": SPEC["schema"]}}


def _chat(model: str, **extra: object) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "x"}],
        "response_format": _SCHEMA,
        "max_completion_tokens": 100,
        **extra,
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        # QwenLM/qwen-code#921, tmc/langchaingo#1355: gpt-5 family, temperature 0
        (_chat("gpt-5-mini", temperature=0), 400, "unsupported_value", "temperature"),
        (_chat("gpt-5-2025-08-07", temperature=0), 400, "unsupported_value", "temperature"),
        # OpenHands#4131: o-series
        (_chat("o3", temperature=0.2), 400, "unsupported_value", "temperature"),
        # johny-b/llmcomp#69: gpt-5.4 with reasoning on
        (_chat("gpt-5.4-mini", temperature=0, reasoning_effort="low"), 400, "unsupported_value", "temperature"),
        # ReasoningEffort docstring: models before gpt-5.1 do not support none; gpt-5.1 has no xhigh
        (_chat("gpt-5-mini", reasoning_effort="none"), 400, "unsupported_value", "reasoning_effort"),
        (_chat("gpt-5.1", reasoning_effort="xhigh"), 400, "unsupported_value", "reasoning_effort"),
        (_chat("gpt-4.1-mini", reasoning_effort="low"), 400, "unsupported_parameter", "reasoning_effort"),
        (_chat("gpt-4.1-mini", verbosity="low"), 400, "unsupported_parameter", "verbosity"),
        ({**_chat("o3"), "max_tokens": 100}, 400, "unsupported_parameter", "max_tokens"),
        # deprecations page: shut down 2026-10-23
        (_chat("gpt-4.1-nano"), 404, "model_not_found", "model"),
        (_chat("gpt-4o-2024-05-13"), 404, "model_not_found", "model"),
        # -pro models: Responses API only
        (_chat("gpt-5.5-pro"), 404, None, "model"),
    ],
)
def test_the_emulator_refuses_what_the_api_refuses(body: dict, status: int, code: str | None, param: str) -> None:
    with pytest.raises(Refused) as refused:
        check_request("/v1/chat/completions", body)
    assert (refused.value.status, refused.value.error["code"], refused.value.error["param"]) == (status, code, param)


@pytest.mark.parametrize(
    "body",
    [
        _chat("gpt-4.1-mini", temperature=0, seed=0),
        _chat("gpt-5-mini", reasoning_effort="minimal"),
        _chat("gpt-5.4-mini", temperature=0, reasoning_effort="none"),
        _chat("gpt-5.4-mini", temperature=0),  # default effort none
        _chat("gpt-5.6-luna", reasoning_effort="xhigh", verbosity="low"),
        _chat("gpt-4o-2024-08-06", temperature=0),
    ],
)
def test_the_emulator_accepts_what_the_api_accepts(body: dict) -> None:
    check_request("/v1/chat/completions", body)


def test_a_refused_line_comes_back_as_the_real_apis_per_line_error(client: OpenAI, docs: list[dict]) -> None:
    line = {
        "custom_id": "d0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": _chat("gpt-5-mini", temperature=0, seed=0),
    }
    batch, _ = poll(client, submit(client, (json.dumps(line) + "\n").encode()))

    assert batch.status == "completed" and batch.request_counts.failed == 1
    [error_line] = [json.loads(raw) for raw in download(client, batch.error_file_id)]
    assert error_line["error"] is None and error_line["response"]["status_code"] == 400
    assert error_line["response"]["body"]["error"] == {
        "message": "Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value"
        " is supported.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "unsupported_value",
    }


def test_responses_batches_answer_in_the_responses_shape(client: OpenAI, docs: list[dict]) -> None:
    body = {
        "model": "gpt-5.4-mini",
        "input": [{"role": "system", "content": "Extract."}, {"role": "user", "content": redocred_text(docs[5])}],
        "text": {"format": {"type": "json_schema", "name": "x", "strict": True, "schema": SPEC["schema"]}},
        "max_output_tokens": 4096,
        "reasoning": {"effort": "low"},
    }
    line = {"custom_id": "d5", "method": "POST", "url": "/v1/responses", "body": body}
    upload = client.files.create(file=("r.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
    created = client.batches.create(input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h")
    batch, _ = poll(client, created.id)

    [out] = [json.loads(raw) for raw in download(client, batch.output_file_id)]
    response = out["response"]["body"]
    assert response["object"] == "response" and response["status"] == "completed"
    [reasoning, message] = response["output"]
    assert reasoning["type"] == "reasoning" and message["content"][0]["type"] == "output_text"
    assert json.loads(message["content"][0]["text"]) == gold_answer(docs[5])
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


def test_a_batch_over_the_enqueued_token_limit_fails_whole(
    emu: BatchEmulator, client: OpenAI, docs: list[dict]
) -> None:
    emu.behaviour.enqueued_token_limit = 100
    batch, _ = poll(client, submit(client, request_lines(docs)))

    assert batch.status == "failed"
    [error] = batch.errors.data
    assert error.code == "token_limit_exceeded" and error.message.startswith(
        "Enqueued token limit reached for gpt-4o-mini in organization org-emulator. Limit: 100 enqueued tokens."
    )
