"""The prepare stage: a folder of documents becomes a job folder of isolated, audited, priced request lines."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from extractor import pricing
from extractor.errors import BadInput, ExitCode
from extractor.job_files import DocumentEntry, Estimate, Manifest, Settings, Shard
from extractor.jobs import Job, JobStore, State, new_job_id
from extractor.lanes import LaneInfo, describe, lane_names
from extractor.prepare import tokens
from extractor.prepare.answer_bounds import bounded_response_format
from extractor.prepare.documents import Document, Skipped, iter_documents, split_long
from extractor.prepare.requests import (
    MAX_BYTES_PER_FILE,
    MAX_LINES_PER_FILE,
    Prompt,
    RequestTemplate,
    ShardWriter,
    custom_id_for,
    load_prompt,
    request_template,
)
from extractor.spec.schema import DEFAULT_SPEC_PATH, Spec, load_spec

# Each lane's defaults live with the lane (extractor/lanes/__init__.py); these tables, by backend name, are views.
DEFAULT_LOCAL_MODEL = describe("local").defaults.model
DEFAULT_OPENAI_MODEL = describe("openai").defaults.model
# Context the request must fit in, in tokens, when the model's own is unknown.
DEFAULT_CONTEXT_TOKENS = {n: describe(n).defaults.context_tokens for n in lane_names()}
# Characters per token assumed when turning a context window into a document-size limit: low on purpose,
# so a document that passes the check really fits.
CHARS_PER_TOKEN_FLOOR = 3
# Tokens kept free for the system prompt, the JSON Schema grammar and chat-template overhead.
PROMPT_RESERVE_TOKENS = 400
# Output budget per answer.
DEFAULT_MAX_TOKENS = {n: describe(n).defaults.max_tokens for n in lane_names()}
# Extra sampling fields on every line.
DEFAULT_EXTRA_BODY = {n: dict(describe(n).defaults.extra_body) for n in lane_names()}


@dataclass
class PrepareOptions:
    backend: str = "local"
    model: str | None = None
    spec_path: Path | None = None
    split_long: bool = False
    context_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None  # None: 0 where the model takes it (local: always), else not sent
    seed: int | None = None  # None: 0 where the model takes it
    reasoning_effort: str | None = None  # None: the lowest the model allows (extractor/prepare/models.py)
    verbosity: str | None = None  # None: not sent (the model's default)
    endpoint: str = "chat"  # chat | responses: the OpenAI endpoint the lines are written for
    max_lines_per_file: int = MAX_LINES_PER_FILE
    max_bytes_per_file: int = MAX_BYTES_PER_FILE
    count_tokens: bool = True
    encoding: str | None = None  # read every text file as this encoding instead of detecting it (--encoding)
    extra: dict[str, Any] = field(default_factory=dict)
    prompt: Prompt | None = None  # a prompt already filled in (the gate's, with its question); default: extraction
    admit: Callable[[Document | Skipped], bool] | None = (
        None  # which documents the job takes (a gate's decision); default: all
    )

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return describe(self.backend).defaults.model


@dataclass
class PrepareSummary:
    job: Job
    documents: int
    requests: int
    shards: int
    skipped: list[dict[str, str]]
    duplicates: int
    input_tokens: int | None
    input_cost_usd: float | None
    output_cost_usd_max: float | None
    estimated_cost_usd: float | None
    warnings: list[str]
    resumed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: read_and_write, audit, publish

    @property
    def exit_code(self) -> ExitCode:
        """PARTIAL when some files were skipped (the job holds the rest), else OK."""
        return ExitCode.PARTIAL if self.skipped else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job.id,
            "state": self.job.state.value,
            "backend": self.job.manifest["backend"],
            "model": self.job.manifest["model"],
            "documents": self.documents,
            "requests": self.requests,
            "shards": self.shards,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "input_tokens": self.input_tokens,
            "input_cost_usd": self.input_cost_usd,
            "output_cost_usd_max": self.output_cost_usd_max,
            "estimated_cost_usd": self.estimated_cost_usd,
            "warnings": self.warnings,
            "resumed": self.resumed,
            "seconds": self.seconds,
        }


@dataclass
class _Intake:
    """What reading the folder and writing the lines produced; the texts themselves are not kept."""

    documents: list[DocumentEntry] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: int = 0
    input_tokens: int = 0
    shards: list[Shard] = field(default_factory=list)


def job_key(
    doc_hashes: list[str], spec: Spec, prompt_sha: str, model: str, backend: str, settings: Mapping[str, Any]
) -> str:
    """Same documents, spec, prompt, model and settings → same key, so `run` after a crash finds its job."""
    h = hashlib.sha256()
    for part in sorted(doc_hashes):
        h.update(part.encode())
    h.update(f"|{spec.sha256}|{prompt_sha}|{model}|{backend}|{sorted(settings.items())!r}".encode())
    return h.hexdigest()


def prepare_job(
    store: JobStore,
    docs_dir: Path,
    options: PrepareOptions,
    *,
    on_document: Callable[[], None] | None = None,
    resume: bool = False,
) -> PrepareSummary:
    """Read every document, write one request line each, estimate cost, publish the job.

    Streams: a document's text is dropped once its line is written; what grows with the corpus is
    the manifest (one entry per document).
    """
    plan = plan_requests(options)
    spec, prompt, model, max_tokens = plan.spec, plan.prompt, plan.model, plan.max_tokens
    context = options.context_tokens or plan.lane.defaults.context_tokens
    max_chars = max(1000, (context - max_tokens - PROMPT_RESERVE_TOKENS) * CHARS_PER_TOKEN_FLOOR)
    settings, notes, template = plan.settings, plan.notes, plan.template

    def custom_id(doc_sha256: str) -> str:
        return custom_id_for(doc_sha256, spec.sha256, prompt.sha256, model)

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    staging = store.staging_dir()
    try:
        writer = ShardWriter(staging / "requests", options.max_lines_per_file, options.max_bytes_per_file)
        intake = _write_requests(docs_dir, options, max_chars, plan, custom_id, writer, on_document)
        documents = intake.documents
        seconds["read_and_write"] = _since(started)
        if not documents:
            reasons = "; ".join(s["reason"] for s in intake.skipped[:3])
            more = f" and {len(intake.skipped) - 3} more" if len(intake.skipped) > 3 else ""
            raise BadInput(
                f"No usable documents in {docs_dir}"
                + (f" ({reasons}{more})" if reasons else "")
                + " — add .txt, .md, .html, .pdf or .jsonl files"
            )

        # The isolation audit runs in `submit`, on the files as they are on disk just before anything is
        # sent (a file edited after prepare is caught there), and in `extractor audit`; not twice.

        key = job_key([d["sha256"] for d in documents], spec, prompt.sha256, model, options.backend, settings)
        if resume and (existing := store.find_resumable(key)) is not None:
            store.discard_staging(staging)
            return _summary_from(existing, resumed=True)

        tokens_in = intake.input_tokens if options.count_tokens else None
        estimate = plan.job_estimate(tokens_in, len(documents))
        manifest: Manifest = {
            "job_id": new_job_id(key),
            "key": key,
            "state": State.PREPARED.value,
            "backend": options.backend,
            "model": model,
            "source": str(docs_dir),
            "spec": {"path": str(spec.source), "name": spec.name, "sha256": spec.sha256},
            "prompt": {
                "name": prompt.name,
                "version": prompt.version,
                "backend": prompt.backend,
                "sha256": prompt.sha256,
            },
            "settings": settings,
            "request_template": template.as_json(),
            "shards": intake.shards,
            "documents": documents,
            "skipped": intake.skipped,
            "duplicates": intake.duplicates,
            "audit": None,
            "warnings": notes,
            "estimate": {
                "input_tokens": tokens_in,
                "counted": options.count_tokens,
                "output_tokens_max": len(documents) * max_tokens,
                "batch": plan.lane.is_batch,
                **estimate,
            },
        }
        job = store.create(manifest, staging)
    except BaseException:
        store.discard_staging(staging)
        raise
    seconds["publish"] = _since(started) - seconds["read_and_write"]
    summary = _summary_from(job, resumed=False)
    summary.seconds = {k: round(v, 3) for k, v in seconds.items()}
    return summary


@dataclass(frozen=True)
class RequestPlan:
    """What every request line of a job is built from, and what it costs: one place for prepare and its estimates.

    `prepare_job` writes its lines from it, and the gate prices extraction with it (`document_estimates`),
    so the estimate a gate reports cannot drift from what `prepare` would write and price.
    """

    options: PrepareOptions
    spec: Spec
    prompt: Prompt
    model: str
    lane: LaneInfo
    max_tokens: int
    settings: Settings
    notes: list[str]
    template: RequestTemplate

    @property
    def batch(self) -> bool:
        return self.lane.is_batch

    def base_tokens(self) -> int:
        """The template's own tokens (prompt, schema, chat overhead): the same on every line, counted once."""
        return tokens.count_request_tokens(self.template.body_with(""))

    def input_tokens(self, base_tokens: int, text: str) -> int:
        return base_tokens + tokens.count_tokens(text, self.model)

    def job_estimate(self, input_tokens: int | None, documents: int) -> Estimate:
        """Input cost is exact from counted tokens; output is bounded by max_tokens, so it is an upper bound."""
        if not self.lane.billed:
            return {"input_cost_usd": 0.0, "output_cost_usd_max": 0.0, "estimated_cost_usd": 0.0}
        output_cost = pricing.estimate_cost(self.model, 0, documents * self.max_tokens, batch=self.batch)
        input_cost = (
            None if input_tokens is None else pricing.estimate_cost(self.model, input_tokens, 0, batch=self.batch)
        )
        if input_cost is None or output_cost is None:
            return {
                "input_cost_usd": None if input_cost is None else round(input_cost, 6),
                "output_cost_usd_max": None if output_cost is None else round(output_cost, 6),
                "estimated_cost_usd": None,
            }
        return {
            "input_cost_usd": round(input_cost, 6),
            "output_cost_usd_max": round(output_cost, 6),
            "estimated_cost_usd": round(input_cost + output_cost, 6),
        }

    def document_estimate(self, input_tokens: int) -> float | None:
        """One line's cost, exact input and output at max_tokens (an upper bound); None when the price is unknown."""
        cost = pricing.estimate_cost(
            self.model, input_tokens, self.max_tokens, batch=self.batch, backend=self.options.backend
        )
        return None if cost is None else round(cost, 8)


def plan_requests(options: PrepareOptions) -> RequestPlan:
    """The spec, prompt, model, budget, settings and line template `options` make; BadInput for a refused setting."""
    spec = load_spec(options.spec_path or DEFAULT_SPEC_PATH)
    prompt = options.prompt or load_prompt(options.backend)
    model = options.resolved_model()
    lane = describe(options.backend)
    max_tokens = options.max_tokens or lane.defaults.max_tokens
    settings, notes = request_settings(options, model, max_tokens)
    # local models loop on lists: the arrays are bounded by what max_tokens can hold (answer_bounds)
    response_format = bounded_response_format(spec, max_tokens) if lane.bounded_arrays else spec.response_format()
    template = request_template(prompt=prompt, model=model, response_format=response_format, settings=settings)
    return RequestPlan(options, spec, prompt, model, lane, max_tokens, settings, notes, template)


def document_estimates(docs_dir: Path, options: PrepareOptions) -> dict[str, float | None]:
    """Each document's cost by sha256, as prepare prices it: exact input, output at max_tokens (an upper bound)."""
    estimates: dict[str, float | None] = {}
    if not describe(options.backend).billed:  # nobody bills the lane: skip the token count
        for item in iter_documents(docs_dir, encoding=options.encoding):
            if isinstance(item, Document):
                estimates[item.sha256] = 0.0
        return estimates
    plan = plan_requests(options)
    base = plan.base_tokens()
    for item in iter_documents(docs_dir, encoding=options.encoding):
        if isinstance(item, Document) and item.sha256 not in estimates:
            estimates[item.sha256] = plan.document_estimate(plan.input_tokens(base, item.text))
    return estimates


def request_settings(options: PrepareOptions, model: str, max_tokens: int) -> tuple[Settings, list[str]]:
    """The settings every line of the job carries, and warnings; BadInput for a setting the model refuses.

    The local lane sends what it always did. An OpenAI line takes its fields from the model's profile
    (extractor/prepare/models.py): a retired model, or a setting the model refuses, is refused here, before
    anything is written or sent.
    """
    lane = describe(options.backend)
    extra = {**lane.defaults.extra_body, **options.extra}
    if not lane.openai_api:
        if options.reasoning_effort or options.verbosity or options.endpoint != "chat":
            raise BadInput(
                "--reasoning-effort, --verbosity and --endpoint are OpenAI settings — drop them for --backend local"
            )
        return {
            "temperature": 0.0 if options.temperature is None else options.temperature,
            "seed": 0 if options.seed is None else options.seed,
            "max_tokens": max_tokens,
            "extra_body": extra,
        }, []
    from extractor.prepare import models

    warning = models.check_available(model)
    resolved = models.resolve(
        model,
        options.endpoint,
        models.RequestSettings(
            max_tokens=max_tokens,
            reasoning_effort=options.reasoning_effort,
            verbosity=options.verbosity,
            temperature=options.temperature,
            seed=options.seed,
        ),
    )
    return cast(Settings, {**resolved, "extra_body": extra}), [warning] if warning else []


def _since(started: float) -> float:
    return time.perf_counter() - started


def _write_requests(
    docs_dir: Path,
    options: PrepareOptions,
    max_chars: int,
    plan: RequestPlan,
    custom_id_of: Callable[[str], str],
    writer: ShardWriter,
    on_document: Callable[[], None] | None,
) -> _Intake:
    """One line per distinct document (or part), streamed into shards; duplicates only add their path."""
    intake = _Intake()
    documents = intake.documents
    by_sha: dict[str, DocumentEntry] = {}
    template = plan.template
    base_tokens = plan.base_tokens() if options.count_tokens else 0
    shard_tokens: dict[str, int] = {}  # what the Batch API's enqueued-token limit counts, per request file
    try:
        for item in iter_documents(
            docs_dir, max_chars=None if options.split_long else max_chars, encoding=options.encoding
        ):
            if on_document:
                on_document()
            if options.admit is not None and not options.admit(item):
                continue
            if type(item) is Skipped:
                intake.skipped.append({"path": item.path, "reason": item.reason})
                continue
            assert isinstance(item, Document)
            for doc in split_long(item, max_chars) if options.split_long and item.chars > max_chars else (item,):
                known = by_sha.get(doc.sha256)
                if known is not None:
                    known["paths"].append(doc.path)
                    intake.duplicates += 1
                    continue
                custom_id = custom_id_of(doc.sha256)
                shard = writer.write(template.render(custom_id, doc.text))
                if options.count_tokens:
                    counted = plan.input_tokens(base_tokens, doc.text)
                    intake.input_tokens += counted
                    shard_tokens[shard] = shard_tokens.get(shard, 0) + counted
                entry = _manifest_entry(doc, custom_id, shard)
                by_sha[doc.sha256] = entry
                documents.append(entry)
    finally:
        intake.shards = writer.close()
        for written in intake.shards:
            if written["file"] in shard_tokens:
                written["input_tokens"] = shard_tokens[written["file"]]
    return intake


def _manifest_entry(doc: Document, custom_id: str, shard: str) -> DocumentEntry:
    return {
        "doc_id": doc.doc_id,
        "path": doc.path,
        "paths": [doc.path],
        "title": doc.title,
        "sha256": doc.sha256,
        "chars": doc.chars,
        "encoding": doc.encoding,
        "custom_id": custom_id,
        "shard": shard,
    }


def _summary_from(job: Job, *, resumed: bool) -> PrepareSummary:
    m = job.manifest
    estimate = m["estimate"]
    return PrepareSummary(
        job=job,
        documents=len(m["documents"]),
        requests=sum(s["lines"] for s in m["shards"]),
        shards=len(m["shards"]),
        skipped=m.get("skipped", []),
        duplicates=m.get("duplicates", 0),
        input_tokens=estimate.get("input_tokens"),
        input_cost_usd=estimate.get("input_cost_usd"),
        output_cost_usd_max=estimate.get("output_cost_usd_max"),
        estimated_cost_usd=estimate.get("estimated_cost_usd"),
        warnings=[*m.get("warnings", []), *(m.get("audit") or {}).get("warnings", [])],
        resumed=resumed,
    )


def prepare_options(
    backend: str,
    model: str | None,
    schema: Path | None,
    split_long: bool,
    max_tokens: int | None,
    ctx_tokens: int | None,
    *,
    max_lines_per_file: int | None = None,
    max_bytes_per_file: int | None = None,
    encoding: str | None = None,
    reasoning_effort: str | None = None,
    verbosity: str | None = None,
    endpoint: str = "chat",
) -> PrepareOptions:
    """PrepareOptions from the flags of `prepare`, `submit DOCS_DIR` and `run`, each checked (BadInput names the flag).

    `auto` is resolved before this (the lanes' prompts differ); here it stands for local, as `run` then replaces it.
    """
    import codecs

    from extractor.prepare.requests import MAX_BYTES_PER_FILE, MAX_LINES_PER_FILE

    if backend not in (*lane_names(), "auto"):
        raise BadInput(f"unknown backend {backend!r} — use {', '.join(lane_names())} or auto")
    lines = MAX_LINES_PER_FILE if max_lines_per_file is None else max_lines_per_file
    size = MAX_BYTES_PER_FILE if max_bytes_per_file is None else max_bytes_per_file
    if not 1 <= lines <= MAX_LINES_PER_FILE:
        raise BadInput(f"--max-lines-per-file must be between 1 and {MAX_LINES_PER_FILE} (OpenAI's limit)")
    if not 1 <= size <= MAX_BYTES_PER_FILE:
        raise BadInput(f"--max-bytes-per-file must be between 1 and {MAX_BYTES_PER_FILE} (OpenAI's limit)")
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise BadInput(
                f"--encoding {encoding!r}: unknown encoding — use a Python codec name such as "
                "cp1252, latin-1, utf-16 or shift_jis"
            ) from None
    return PrepareOptions(
        encoding=encoding,
        backend="local" if backend == "auto" else backend,
        model=model,
        spec_path=schema,
        split_long=split_long,
        max_tokens=max_tokens,
        context_tokens=ctx_tokens,
        max_lines_per_file=lines,
        max_bytes_per_file=size,
        reasoning_effort=reasoning_effort,
        verbosity=verbosity,
        endpoint=endpoint,
    )
