"""Request lines: one document per line in OpenAI batch input format, prompt templates, the line template, sharding."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import IO, Any

import orjson

from extractor.errors import BadInput
from extractor.job_files import Shard
from extractor.lanes import describe
from extractor.storage import iter_jsonl

CHAT_URL = "/v1/chat/completions"
RESPONSES_URL = "/v1/responses"
# OpenAI's documented per-file limits for a batch input file.
MAX_LINES_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1024 * 1024
# The two slots of a job's request template (job.json "request_template"); every line is the
# template with a custom_id and one document's text in them.
CUSTOM_ID_SLOT = "{{custom_id}}"
DOCUMENT_SLOT = "{{document}}"
_WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    backend: str
    text: str
    sha256: str


def load_prompt(backend: str, name: str = "extraction") -> Prompt:
    """A versioned prompt template shipped with the package; local models get blunter wording."""
    kind = describe(backend).prompt
    raw = files("extractor").joinpath("prompts", f"{name}.{kind}.txt").read_text(encoding="utf-8")
    header: dict[str, str] = {}
    body: list[str] = []
    for line in raw.splitlines():
        if line.startswith("# ") and ":" in line and not body:
            key, _, value = line[2:].partition(":")
            header[key.strip()] = value.strip()
        else:
            body.append(line)
    text = "\n".join(body).strip()
    return Prompt(
        name=header.get("prompt", name),
        version=header.get("version", "0"),
        backend=kind,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def custom_id_for(doc_sha256: str, spec_sha256: str, prompt_sha256: str, model: str) -> str:
    """Content-addressed: the same document, spec, prompt and model always give the same request id."""
    digest = hashlib.sha256(f"{doc_sha256}\0{spec_sha256}\0{prompt_sha256}\0{model}".encode()).hexdigest()
    return f"doc-{digest[:24]}"


def build_request_line(
    *, custom_id: str, text: str, prompt: Prompt, model: str, response_format: dict, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The instructions in the system message, the one document in the user message, nothing else.

    OpenAI lines take their optional fields from the model's profile (extractor/prepare/models.py): only what the
    model accepts is sent. `settings["endpoint"]` "responses" writes a /v1/responses body instead.
    """
    messages = [{"role": "system", "content": prompt.text}, {"role": "user", "content": text}]
    if not describe(prompt.backend).openai_api:
        # llama.cpp and most compatible servers take max_tokens and any sampling field.
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "response_format": response_format,
            "temperature": settings.get("temperature", 0),
            "seed": settings.get("seed", 0),
            "max_tokens": settings["max_tokens"],
        }
        body.update(settings.get("extra_body", {}))
        return {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}
    from extractor.prepare.models import RESPONSES, body_params

    endpoint = settings.get("endpoint", "chat")
    if endpoint == RESPONSES:
        schema = response_format["json_schema"]
        text_field: dict[str, Any] = {
            "format": {
                "type": "json_schema",
                "name": schema["name"],
                "schema": schema["schema"],
                "strict": schema.get("strict", True),
            }
        }
        if settings.get("verbosity"):
            text_field["verbosity"] = settings["verbosity"]
        body = {"model": model, "input": messages, "text": text_field, **body_params(settings, RESPONSES)}
        url = RESPONSES_URL
    else:
        body = {
            "model": model,
            "messages": messages,
            "response_format": response_format,
            **body_params(settings, "chat"),
        }
        url = CHAT_URL
    body.update(settings.get("extra_body", {}))
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def message_field(body: dict[str, Any]) -> str:
    """Where a body keeps its messages: "input" on /v1/responses, "messages" on /v1/chat/completions."""
    return "input" if "input" in body and "messages" not in body else "messages"


@dataclass(frozen=True)
class RequestTemplate:
    """A job's request line with its two slots, pre-serialised: lines are rendered and read back around the slots.

    Serialising the schema and the prompt once per job instead of once per line is what keeps
    prepare near the cost of writing the documents; reading a line back as "the template with
    two JSON strings in it" is what lets the audit prove that nothing else is in the line.
    """

    line: dict[str, Any]
    head: bytes
    middle: bytes
    tail: bytes

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> RequestTemplate:
        return cls.from_json(orjson.dumps(line).decode())

    @classmethod
    def from_json(cls, text: str) -> RequestTemplate:
        """From the template as one JSON text (how job.json keeps it: a JSON object would lose its key order)."""
        raw = text.encode()
        cid_slot, doc_slot = orjson.dumps(CUSTOM_ID_SLOT), orjson.dumps(DOCUMENT_SLOT)
        if raw.count(cid_slot) != 1 or raw.count(doc_slot) != 1 or raw.index(cid_slot) > raw.index(doc_slot):
            raise BadInput(
                f"the request template must hold {CUSTOM_ID_SLOT} once and then {DOCUMENT_SLOT} once"
                " — a prompt or schema string that is exactly either cannot be used"
            )
        head, rest = raw.split(cid_slot)
        middle, tail = rest.split(doc_slot)
        return cls(orjson.loads(raw), head, middle, tail + b"\n")

    def as_json(self) -> str:
        """The template as one JSON text, slots in place, keys in the order every line has them."""
        return b"".join(
            (self.head, orjson.dumps(CUSTOM_ID_SLOT), self.middle, orjson.dumps(DOCUMENT_SLOT), self.tail[:-1])
        ).decode()

    def render(self, custom_id: str, text: str) -> bytes:
        """One request line, newline included; byte for byte what orjson.dumps makes of the filled-in line."""
        return b"".join((self.head, orjson.dumps(custom_id), self.middle, orjson.dumps(text), self.tail))

    def parse(self, raw: bytes) -> tuple[str, str] | None:
        """(custom_id, document text) when raw is exactly this template filled in; None for anything else."""
        head, middle, tail = self.head, self.middle, self.tail
        if not (raw.startswith(head) and raw.endswith(tail)):
            return None
        # The custom_id is short and (when prepare wrote it) has no escapes: its closing quote is the
        # next one. Anything else falls back to a search, which is slower (middle is long) but general.
        close = raw.find(b'"', len(head) + 1)
        if close > 0 and raw[close - 1] != 0x5C and raw.startswith(middle, close + 1):
            cut = close + 1
        else:
            cut = raw.find(middle, len(head))
            if cut < 0:
                return None
        # middle starts with an unescaped quote, which cannot occur inside a JSON string, so if both
        # pieces parse as strings the cut is the only one and the line is the template filled in.
        try:
            custom_id = orjson.loads(raw[len(head) : cut])
            text = orjson.loads(raw[cut + len(middle) : len(raw) - len(tail)])
        except orjson.JSONDecodeError:
            return None
        if type(custom_id) is str and type(text) is str:
            return custom_id, text
        return None

    def body_with(self, text: str) -> dict[str, Any]:
        """The request body with text in the user message (for token counting)."""
        body = dict(self.line["body"])
        key = message_field(body)
        body[key] = [m if m["content"] != DOCUMENT_SLOT else {**m, "content": text} for m in body[key]]
        return body


def request_template(
    *, prompt: Prompt, model: str, response_format: dict, settings: Mapping[str, Any]
) -> RequestTemplate:
    """The template every line of a job is made from."""
    line = build_request_line(
        custom_id=CUSTOM_ID_SLOT,
        text=DOCUMENT_SLOT,
        prompt=prompt,
        model=model,
        response_format=response_format,
        settings=settings,
    )
    return RequestTemplate.from_line(line)


@dataclass
class ShardWriter:
    """Streams request lines into requests/00000.jsonl, 00001.jsonl … within the per-file line and byte limits."""

    directory: Path
    max_lines: int = MAX_LINES_PER_FILE
    max_bytes: int = MAX_BYTES_PER_FILE
    shards: list[Shard] = field(default_factory=list)
    _fh: IO[bytes] | None = None
    _lines: int = 0
    _bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_lines < 1 or self.max_bytes < 1:
            raise BadInput("the per-file limits must be at least 1 line and 1 byte")

    def write(self, raw: bytes) -> str:
        """Append one rendered line (newline included); returns the shard file it went to."""
        size = len(raw)
        if size > self.max_bytes:
            raise BadInput(
                f"a request line is {size} bytes, over the {self.max_bytes}-byte file limit"
                " — raise --max-bytes-per-file"
            )
        if self._fh is None or self._lines >= self.max_lines or self._bytes + size > self.max_bytes:
            self._roll()
        assert self._fh is not None
        self._fh.write(raw)
        self._lines += 1
        self._bytes += size
        return self.shards[-1]["file"]

    def _roll(self) -> None:
        self._close_current()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{len(self.shards):05d}.jsonl"
        self.shards.append({"file": f"requests/{name}", "lines": 0, "bytes": 0})
        self._fh = (self.directory / name).open("wb", buffering=_WRITE_BUFFER)
        self._lines = self._bytes = 0

    def _close_current(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.shards[-1]["lines"], self.shards[-1]["bytes"] = self._lines, self._bytes
            self._fh = None

    def close(self) -> list[Shard]:
        self._close_current()
        return self.shards


def iter_request_lines(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        yield from iter_jsonl(path)


def request_text(line: dict[str, Any]) -> str:
    """The one document a request line carries (its user message)."""
    body = line["body"]
    return "".join(m["content"] for m in body[message_field(body)] if m["role"] == "user")
