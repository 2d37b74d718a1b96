"""Pipeline files (`pipelines/*.toml`): a cheap yes/no gate, then extraction of the documents that pass."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractor.errors import BadInput
from extractor.lanes import lane_names
from extractor.spec.schema import DEFAULT_SPEC_PATH

BACKENDS = tuple(lane_names())
FAILURE_POLICIES = ("extract", "reject")
_TOP_KEYS = ("name", "description", "gate", "extract")


@dataclass(frozen=True)
class GateStage:
    """One yes/no question per document; `pass_answer` is the answer that sends a document on to extraction."""

    question: str
    backend: str = "local"
    model: str | None = None
    pass_answer: bool = True
    max_tokens: int | None = None
    # A document whose gate answer failed (HTTP error, invalid, truncated, refused) or that the gate could
    # not read: "extract" sends it on, so nothing is dropped silently; "reject" keeps it out.
    on_failure: str = "extract"
    reasoning_effort: str | None = None  # OpenAI only; None: the lowest the model allows
    verbosity: str | None = None
    endpoint: str | None = None  # chat (default) | responses


@dataclass(frozen=True)
class ExtractStage:
    spec: Path = DEFAULT_SPEC_PATH
    backend: str = "local"
    model: str | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: Path
    gate: GateStage
    extract: ExtractStage
    description: str = ""


# key → (accepted types, what to write in the message)
_GATE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "question": ((str,), "a non-empty string"),
    "backend": ((str,), "local or openai"),
    "model": ((str,), "a model name"),
    "pass_answer": ((bool,), "true or false"),
    "max_tokens": ((int,), "a positive integer"),
    "on_failure": ((str,), "extract or reject"),
    "reasoning_effort": ((str,), "a reasoning effort the model takes (none, minimal, low, medium, high, xhigh)"),
    "verbosity": ((str,), "low, medium or high"),
    "endpoint": ((str,), "chat or responses"),
}
_EXTRACT_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "spec": ((str,), "a spec file path, relative to the pipeline file"),
    "backend": ((str,), "local or openai"),
    "model": ((str,), "a model name"),
    "max_tokens": ((int,), "a positive integer"),
    "reasoning_effort": ((str,), "a reasoning effort the model takes (none, minimal, low, medium, high, xhigh)"),
    "verbosity": ((str,), "low, medium or high"),
    "endpoint": ((str,), "chat or responses"),
}


def load_pipeline(path: Path) -> Pipeline:
    """Read and check a pipeline file; BadInput names the file and the key to fix (as table.key: no brackets, which rich
    would eat).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(
            f"No such pipeline file: {path} ({exc.strerror}) — pass one like pipelines/filings.toml"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML ({exc}) — fix the syntax") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise BadInput(f"{path}: unknown key {key!r} — a pipeline file has only {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{path}: name must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise BadInput(f"{path}: description must be a string")
    if "gate" not in data:
        raise BadInput(f'{path}: the gate table is missing — add one with at least question = "…"')
    gate = _table(path, "gate", data["gate"], _GATE_KEYS)
    extract = _table(path, "extract", data.get("extract", {}), _EXTRACT_KEYS)
    return Pipeline(
        name=name.strip(), source=path, gate=_gate(path, gate), extract=_extract(path, extract), description=description
    )


def _table(path: Path, section: str, value: object, keys: dict[str, tuple[tuple[type, ...], str]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"{path}: {section} must be a table")
    for key, item in value.items():
        if key not in keys:
            raise BadInput(f"{path}: {section}.{key}: unknown key — the {section} table has only {', '.join(keys)}")
        types, wanted = keys[key]
        # bool is an int in Python: max_tokens = true must not pass as 1
        if not isinstance(item, types) or (bool not in types and isinstance(item, bool)):
            raise BadInput(f"{path}: {section}.{key}: must be {wanted}, not {item!r}")
    if "backend" in value and value["backend"] not in BACKENDS:
        raise BadInput(f"{path}: {section}.backend: must be {' or '.join(BACKENDS)}, not {value['backend']!r}")
    if "max_tokens" in value and value["max_tokens"] < 1:
        raise BadInput(f"{path}: {section}.max_tokens: must be a positive integer, not {value['max_tokens']!r}")
    if "endpoint" in value and value["endpoint"] not in ("chat", "responses"):
        raise BadInput(f"{path}: {section}.endpoint: must be chat or responses, not {value['endpoint']!r}")
    if "verbosity" in value and value["verbosity"] not in ("low", "medium", "high"):
        raise BadInput(f"{path}: {section}.verbosity: must be low, medium or high, not {value['verbosity']!r}")
    if "model" in value and not value["model"].strip():
        raise BadInput(f"{path}: {section}.model: must be a model name — remove the key for the backend's default")
    return value


def _gate(path: Path, table: dict[str, Any]) -> GateStage:
    question = " ".join(str(table.get("question", "")).split())  # one line: it goes into the system prompt
    if not question:
        raise BadInput(f'{path}: gate.question: missing — add question = "Is this document about …?"')
    on_failure = table.get("on_failure", "extract")
    if on_failure not in FAILURE_POLICIES:
        raise BadInput(f"{path}: gate.on_failure: must be extract or reject, not {on_failure!r}")
    return GateStage(
        question=question,
        backend=table.get("backend", "local"),
        model=table.get("model"),
        pass_answer=table.get("pass_answer", True),
        max_tokens=table.get("max_tokens"),
        on_failure=on_failure,
        **_openai_keys(table),
    )


def _extract(path: Path, table: dict[str, Any]) -> ExtractStage:
    spec = DEFAULT_SPEC_PATH
    if "spec" in table:
        # relative to the pipeline file, so the pipeline runs from any working directory
        spec = (path.parent / table["spec"]).resolve()
        if not spec.is_file():
            raise BadInput(f"{path}: extract.spec: no such file {spec} — the path is relative to the pipeline file")
    return ExtractStage(
        spec=spec,
        backend=table.get("backend", "local"),
        model=table.get("model"),
        max_tokens=table.get("max_tokens"),
        **_openai_keys(table),
    )


def _openai_keys(table: dict[str, Any]) -> dict[str, Any]:
    return {key: table.get(key) for key in ("reasoning_effort", "verbosity", "endpoint")}
