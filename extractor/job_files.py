"""The shapes of the files a job folder holds, as TypedDicts, so mypy checks every key we read.

`job.json` is a `Manifest`; each line of `output/*.jsonl` (the provider's answer file, OpenAI batch output format) is an
`OutputLine`; each line of `results.jsonl` is a `ResultLine`. The keys are the job-folder format of record (README,
"The job folder"); a key added here is a format change and moves the version in `FORMATS`.

Every file we persist has a format version, written as `"format": "extractor.<kind>/<n>"` — inside the file for JSON
documents (`job.json`, `commit.json`, `verify.json`), in the manifest's `formats` map for the JSON-lines files of the
folder (`results.jsonl`, `log.jsonl`), whose lines stay plain rows. `storage.read_versioned` checks it on read and
runs the migration hook for an older version; an unknown one is a `DamagedFile` naming the file and the fix.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# kind → the version this code writes and reads
FORMATS: dict[str, int] = {"job": 1, "commit": 1, "verify": 1, "results": 1, "log": 1, "run.gate": 1}


def format_tag(kind: str) -> str:
    return f"extractor.{kind}/{FORMATS[kind]}"


class SpecRef(TypedDict):
    path: str
    name: str
    sha256: str


class PromptRef(TypedDict):
    name: str
    version: str
    backend: str
    sha256: str


class Settings(TypedDict, total=False):
    endpoint: str
    extra_body: dict[str, Any]
    max_tokens: int
    reasoning_effort: str | None
    seed: int | None
    temperature: float | None
    verbosity: str | None


class Shard(TypedDict):
    file: str
    lines: int
    bytes: int
    input_tokens: NotRequired[int | None]


class DocumentEntry(TypedDict):
    custom_id: str
    doc_id: str
    sha256: str
    path: str
    paths: list[str]
    shard: str
    chars: int
    title: NotRequired[str | None]
    encoding: NotRequired[str | None]
    part: NotRequired[int]
    parts: NotRequired[int]


class Estimate(TypedDict, total=False):
    input_tokens: int | None
    counted: bool
    output_tokens_max: int
    batch: bool
    input_cost_usd: float | None
    output_cost_usd_max: float | None
    estimated_cost_usd: float | None


class HistoryEntry(TypedDict):
    at: str
    state: str


class BackendChoice(TypedDict):
    requested: Literal["auto"]
    chosen: str
    reason: str


class Remote(TypedDict, total=False):
    """Where the answers are: OpenAI batches (`kind` "openai"), a local lane's run ("local"), or files taken in."""

    kind: str
    # openai
    endpoint: str
    batches: list[dict[str, Any]]
    waves: int
    max_enqueued_tokens: int
    ingested: dict[str, Any]
    cancel_requested_at: str
    expired: bool
    # local
    url: str
    embedded: bool
    complete: bool
    stats: dict[str, Any]


class Manifest(TypedDict, total=False):
    """`job.json`. The keys every job has from prepare on are Required; the rest arrive with later stages."""

    format: str
    formats: dict[str, str]
    job_id: str
    key: str
    state: str
    backend: str
    model: str
    source: str
    spec: SpecRef
    prompt: PromptRef
    settings: Settings
    request_template: str
    shards: list[Shard]
    documents: list[DocumentEntry]
    skipped: list[dict[str, Any]]
    duplicates: int
    audit: dict[str, Any] | None
    warnings: list[str]
    estimate: Estimate
    created_at: str
    updated_at: str
    history: list[HistoryEntry]
    errors: list[dict[str, Any]]
    backend_choice: BackendChoice
    remote: Remote
    outcomes: dict[str, int]
    cost: dict[str, Any]
    verify: dict[str, Any]
    commit: dict[str, Any]
    rollback: dict[str, Any]
    retries: list[dict[str, Any]]
    attempts: dict[str, int]
    cost_cap_usd: float
    cost_cap_spent_before_usd: float
    gate: dict[str, Any]


class OutputResponse(TypedDict, total=False):
    status_code: int
    request_id: str
    body: dict[str, Any]


class OutputLine(TypedDict, total=False):
    """One line of a provider's output or error file (OpenAI batch output format)."""

    id: str
    custom_id: str
    response: OutputResponse | None
    error: dict[str, Any] | None


class ResultLine(TypedDict, total=False):
    """One line of `results.jsonl`: exactly one outcome per document, matched by custom_id."""

    custom_id: str
    doc_id: str
    path: str
    outcome: str
    answer: dict[str, Any] | None
    error: str | None
    errors: list[str]
    finish_reason: str | None
    usage: dict[str, Any] | None
    model: str | None
    cost_usd: float | None
    repeats_dropped: int
    attempt: int
