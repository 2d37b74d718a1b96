"""Request lines: one document per line in OpenAI batch input format, prompt templates, sharding, isolation audit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import ahocorasick
import orjson

from .errors import BadInput
from .storage import iter_jsonl

CHAT_URL = "/v1/chat/completions"
# OpenAI's documented per-file limits for a batch input file.
MAX_LINES_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1024 * 1024
# Audit fingerprint: a document is looked for inside other lines by its first characters,
# then confirmed by a full substring test, so the audit stays linear in the corpus.
FINGERPRINT_CHARS = 64


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    backend: str
    text: str
    sha256: str


def load_prompt(backend: str, name: str = "extraction") -> Prompt:
    """A versioned prompt template shipped with the package; local models get blunter wording."""
    kind = "local" if backend == "local" else "openai"
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
    *, custom_id: str, text: str, prompt: Prompt, model: str, response_format: dict, settings: dict[str, Any]
) -> dict[str, Any]:
    """The instructions in the system message, the one document in the user message, nothing else."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": prompt.text},
            {"role": "user", "content": text},
        ],
        "response_format": response_format,
        "temperature": settings.get("temperature", 0),
        "seed": settings.get("seed", 0),
    }
    # OpenAI's newer models take max_completion_tokens; llama.cpp and most compatible servers take max_tokens.
    token_field = "max_tokens" if prompt.backend == "local" else "max_completion_tokens"
    body[token_field] = settings["max_tokens"]
    body.update(settings.get("extra_body", {}))
    return {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}


@dataclass
class ShardWriter:
    """Streams request lines into requests/00000.jsonl, 00001.jsonl … within the per-file line and byte limits."""

    directory: Path
    max_lines: int = MAX_LINES_PER_FILE
    max_bytes: int = MAX_BYTES_PER_FILE
    shards: list[dict[str, Any]] = field(default_factory=list)
    _fh: Any = None
    _lines: int = 0
    _bytes: int = 0

    def write(self, line: dict[str, Any]) -> str:
        raw = orjson.dumps(line) + b"\n"
        if len(raw) > self.max_bytes:
            raise BadInput(f"request line {line['custom_id']} is {len(raw)} bytes, over the {self.max_bytes}-byte file limit")
        if self._fh is None or self._lines >= self.max_lines or self._bytes + len(raw) > self.max_bytes:
            self._roll()
        self._fh.write(raw)
        self._lines += 1
        self._bytes += len(raw)
        return self.shards[-1]["file"]

    def _roll(self) -> None:
        self._close_current()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{len(self.shards):05d}.jsonl"
        self.shards.append({"file": f"requests/{name}", "lines": 0, "bytes": 0})
        self._fh = (self.directory / name).open("wb")
        self._lines = self._bytes = 0

    def _close_current(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self.shards[-1].update(lines=self._lines, bytes=self._bytes)
            self._fh = None

    def close(self) -> list[dict[str, Any]]:
        self._close_current()
        return self.shards


def iter_request_lines(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        yield from iter_jsonl(path)


def request_text(line: dict[str, Any]) -> str:
    """The one document a request line carries (its user message)."""
    return "".join(m["content"] for m in line["body"]["messages"] if m["role"] == "user")


@dataclass
class AuditReport:
    lines: int
    problems: list[str]  # isolation violations: submission must stop
    warnings: list[str]  # an input file that itself holds another whole document: reported, not blocking

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_lines(lines: Iterable[dict[str, Any]], documents: list[dict[str, Any]], prompt_text: str) -> AuditReport:
    """Check isolation before anything is sent: one document per line, no other document inside it."""
    expected = {d["custom_id"]: d for d in documents}
    seen: set[str] = set()
    problems: list[str] = []
    texts: dict[str, str] = {}
    count = 0
    for line in lines:
        count += 1
        cid = line.get("custom_id")
        if cid in seen:
            problems.append(f"{cid}: custom_id used by more than one line")
            continue
        seen.add(cid)
        doc = expected.get(cid)
        if doc is None:
            problems.append(f"{cid}: line has no document in the manifest")
            continue
        messages = line.get("body", {}).get("messages", [])
        roles = [m.get("role") for m in messages]
        if roles != ["system", "user"]:
            problems.append(f"{cid}: expected one system and one user message, found {roles}")
            continue
        if messages[0].get("content") != prompt_text:
            problems.append(f"{cid}: system message differs from the job's prompt template")
        text = messages[1].get("content") or ""
        if hashlib.sha256(text.encode()).hexdigest() != doc["sha256"]:
            problems.append(f"{cid}: user message is not exactly document {doc['doc_id']} ({doc['path']})")
        texts[cid] = text
    missing = [cid for cid in expected if cid not in seen]
    problems.extend(f"{cid}: document {expected[cid]['path']} has no request line" for cid in missing)
    warnings = _find_nested_documents(texts, expected)
    return AuditReport(lines=count, problems=problems, warnings=warnings)


def _find_nested_documents(texts: dict[str, str], documents: dict[str, dict[str, Any]]) -> list[str]:
    """A line whose text contains another document whole (concatenation) is reported; one automaton, one pass."""
    automaton = ahocorasick.Automaton()
    for cid, text in texts.items():
        fingerprint = text[:FINGERPRINT_CHARS]
        if len(fingerprint) >= 16:
            automaton.add_word(fingerprint, automaton.get(fingerprint, ()) + (cid,))
    if len(automaton) == 0:
        return []
    automaton.make_automaton()
    problems = []
    for cid, text in texts.items():
        found: set[str] = set()
        for _, owners in automaton.iter(text):
            for other in owners:
                if other != cid and other not in found and texts[other] in text:
                    found.add(other)
        for other in sorted(found):
            problems.append(
                f"{cid}: document {documents[cid]['path']} contains the whole of {documents[other]['path']}"
            )
    return problems
