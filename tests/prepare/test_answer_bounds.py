"""Runaway answers: local requests bound their arrays, llama.cpp honours the bound, collect keeps each fact once."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from extractor.lanes.local import run_local_lane
from extractor.prepare.answer_bounds import ITEM_TOKENS, bounded_response_format, drop_repeats
from extractor.spec.schema import DEFAULT_SPEC_PATH, load_spec
from extractor.storage import iter_jsonl
from tests.llm_fixtures import request_line
from tests.verify_fixtures import answer, ingest, prepare, write_docs


def request_schema(job) -> dict:
    line = next(iter_jsonl(job.request_files()[0]))
    return line["body"]["response_format"]["json_schema"]["schema"]


def test_local_requests_bound_the_arrays_by_max_tokens_and_openai_requests_keep_the_spec(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", {"a.txt": "Ada Lovelace met Charles Babbage in London.\n"})
    local = request_schema(prepare(docs, "--backend", "local"))
    assert (
        (local["properties"]["entities"]["maxItems"], local["properties"]["relations"]["maxItems"])
        == (768 // 2 // ITEM_TOKENS["entities"], 768 // 2 // ITEM_TOKENS["relations"])
        == (24, 8)
    )
    short = request_schema(prepare(docs, "--backend", "local", "--max-tokens", "200"))
    assert (short["properties"]["entities"]["maxItems"], short["properties"]["relations"]["maxItems"]) == (6, 2)
    remote = request_schema(prepare(docs, "--backend", "openai"))
    assert remote["properties"]["entities"]["maxItems"] == remote["properties"]["relations"]["maxItems"] == 60


def test_a_lower_max_items_in_the_spec_stays_and_the_spec_itself_is_not_changed() -> None:
    spec = load_spec(DEFAULT_SPEC_PATH)
    before = copy.deepcopy(spec.schema)
    spec.schema["properties"]["relations"]["maxItems"] = 3
    bounded = bounded_response_format(spec, 4096)["json_schema"]["schema"]
    assert bounded["properties"]["relations"]["maxItems"] == 3
    assert bounded["properties"]["entities"]["maxItems"] == 60  # 4096 tokens hold more than the spec allows
    spec.schema["properties"]["relations"]["maxItems"] = 60
    assert spec.schema == before


def test_collect_keeps_each_entity_and_relation_once(tmp_path: Path) -> None:
    job = prepare(write_docs(tmp_path / "docs", {"a.txt": "Ada Lovelace met Charles Babbage in London.\n"}))
    looping = answer(
        [
            ("Ada Lovelace", "PERSON"),
            ("London", "LOCATION"),
            ("ada  lovelace", "PERSON"),
            ("Ada Lovelace", "PERSON"),
            ("London", "ORGANIZATION"),
        ],
        [("Ada Lovelace", "RELATED_TO", "Charles Babbage", "met")] * 3
        + [("Ada Lovelace", "LOCATED_IN", "London", "in London")],
    )
    job = ingest(job, {"a.txt": looping}, tmp_path)
    row = orjson.loads(job.results_path.read_bytes().splitlines()[0])
    assert row["outcome"] == "ok" and row["repeats_dropped"] == 4
    assert [(e["name"], e["type"]) for e in row["answer"]["entities"]] == [
        ("Ada Lovelace", "PERSON"),
        ("London", "LOCATION"),
        ("London", "ORGANIZATION"),
    ]
    assert [r["type"] for r in row["answer"]["relations"]] == ["RELATED_TO", "LOCATED_IN"]


def test_drop_repeats_leaves_odd_items_alone() -> None:
    spec = load_spec(DEFAULT_SPEC_PATH)
    odd = {
        "entities": [{"name": None, "type": "PERSON"}, {"name": None, "type": "PERSON"}, "x", "x"],
        "relations": None,
    }
    assert drop_repeats(copy.deepcopy(odd), spec) == (odd, 0)


@pytest.mark.llm
def test_llama_cpp_closes_an_array_at_max_items(tmp_path: Path, llama_url: str) -> None:
    # A list the 270M model would go on with; the grammar llama.cpp builds from the schema must close it at one
    # item (without the bound, twelve names take more than the 64 tokens and the answer is cut off).
    names = ", ".join(f"{first} {last}" for first in ("Ann", "Bob", "Cid", "Dee") for last in ("Lee", "Roe", "Poe"))
    line = request_line("doc-bound", f"The guests were {names}.", max_tokens=64)
    schema = copy.deepcopy(line["body"]["response_format"]["json_schema"]["schema"])
    schema["properties"]["entities"]["maxItems"] = 1
    schema["properties"]["relations"]["maxItems"] = 0
    line["body"]["response_format"]["json_schema"]["schema"] = schema
    out = tmp_path / "output.jsonl"

    run_local_lane(iter([line]), output_path=out, error_path=tmp_path / "errors.jsonl", base_url=llama_url)

    body = next(iter_jsonl(out))["response"]["body"]
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    content = orjson.loads(choice["message"]["content"])
    assert len(content["entities"]) <= 1 and content["relations"] == []
