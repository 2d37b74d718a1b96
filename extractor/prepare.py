"""The prepare stage: a folder of documents becomes a job folder of isolated, audited, priced request lines."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pricing, tokens
from .documents import Document, Skipped, iter_documents, split_long
from .errors import BadInput
from .jobs import Job, JobStore, State, new_job_id
from .requests import (
    MAX_BYTES_PER_FILE,
    MAX_LINES_PER_FILE,
    ShardWriter,
    audit_lines,
    build_request_line,
    custom_id_for,
    iter_request_lines,
    load_prompt,
)
from .schema import DEFAULT_SPEC_PATH, Spec, load_spec

DEFAULT_LOCAL_MODEL = "gemma-3-270m-q4_k_m"
DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"
# Context the request must fit in, in tokens, when the model's own is unknown.
DEFAULT_CONTEXT_TOKENS = {"local": 4096, "openai": 128_000}
# Characters per token assumed when turning a context window into a document-size limit: low on purpose,
# so a document that passes the check really fits.
CHARS_PER_TOKEN_FLOOR = 3
# Tokens kept free for the system prompt, the JSON Schema grammar and chat-template overhead.
PROMPT_RESERVE_TOKENS = 400
# Output budget per answer: a 270M model rambles, so the embedded default is kept short.
DEFAULT_MAX_TOKENS = {"local": 768, "openai": 4096}
# Extra sampling fields for llama.cpp: Gemma 270M loops on entity lists without a repeat penalty
# (measured on examples/docs: 2 of 4 answers hit max_tokens at frequency_penalty 0.6, none at repeat_penalty 1.3).
DEFAULT_EXTRA_BODY = {"local": {"repeat_penalty": 1.3}, "openai": {}}


@dataclass
class PrepareOptions:
    backend: str = "local"
    model: str | None = None
    spec_path: Path | None = None
    split_long: bool = False
    context_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    seed: int = 0
    max_lines_per_file: int = MAX_LINES_PER_FILE
    max_bytes_per_file: int = MAX_BYTES_PER_FILE
    count_tokens: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return DEFAULT_LOCAL_MODEL if self.backend == "local" else DEFAULT_OPENAI_MODEL


@dataclass
class PrepareSummary:
    job: Job
    documents: int
    requests: int
    skipped: list[dict[str, str]]
    duplicates: int
    input_tokens: int
    estimated_cost_usd: float | None
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job.id,
            "state": self.job.state.value,
            "documents": self.documents,
            "requests": self.requests,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "input_tokens": self.input_tokens,
            "estimated_cost_usd": self.estimated_cost_usd,
            "resumed": self.resumed,
        }


def job_key(doc_hashes: list[str], spec: Spec, prompt_sha: str, model: str, backend: str, settings: dict) -> str:
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
    """Read every document, write one request line each, audit isolation, estimate cost, publish the job."""
    spec = load_spec(options.spec_path or DEFAULT_SPEC_PATH)
    prompt = load_prompt(options.backend)
    model = options.resolved_model()
    lane = "local" if options.backend == "local" else "openai"
    max_tokens = options.max_tokens or DEFAULT_MAX_TOKENS[lane]
    context = options.context_tokens or DEFAULT_CONTEXT_TOKENS[lane]
    max_chars = max(1000, (context - max_tokens - PROMPT_RESERVE_TOKENS) * CHARS_PER_TOKEN_FLOOR)
    settings = {"temperature": options.temperature, "seed": options.seed, "max_tokens": max_tokens,
                "extra_body": {**DEFAULT_EXTRA_BODY[lane], **options.extra}}
    response_format = spec.response_format()

    staging = store.staging_dir()
    try:
        writer = ShardWriter(staging / "requests", options.max_lines_per_file, options.max_bytes_per_file)
        entries: dict[str, dict[str, Any]] = {}
        skipped: list[dict[str, str]] = []
        duplicates = 0
        input_tokens = 0
        for item in iter_documents(docs_dir, max_chars=None if options.split_long else max_chars):
            if on_document:
                on_document()
            if isinstance(item, Skipped):
                skipped.append({"path": item.path, "reason": item.reason})
                continue
            parts = split_long(item, max_chars) if options.split_long and item.chars > max_chars else [item]
            for doc in parts:
                if doc.sha256 in entries:
                    entries[doc.sha256]["paths"].append(doc.path)
                    duplicates += 1
                    continue
                cid = custom_id_for(doc.sha256, spec.sha256, prompt.sha256, model)
                line = build_request_line(
                    custom_id=cid, text=doc.text, prompt=prompt, model=model,
                    response_format=response_format, settings=settings,
                )
                shard = writer.write(line)
                if options.count_tokens:
                    input_tokens += tokens.count_request_tokens(line["body"])
                entries[doc.sha256] = _manifest_entry(doc, cid, shard)
        shards = writer.close()
        documents = list(entries.values())
        if not documents:
            reasons = "; ".join(s["reason"] for s in skipped[:3])
            raise BadInput(f"No usable documents in {docs_dir}" + (f" ({reasons})" if reasons else "") +
                           " — add .txt, .md, .html, .pdf or .jsonl files")

        audit = audit_lines(iter_request_lines(sorted((staging / "requests").glob("*.jsonl"))), documents, prompt.text)
        if not audit.ok:
            raise BadInput("Isolation audit failed: " + "; ".join(audit.problems[:5]))

        key = job_key([d["sha256"] for d in documents], spec, prompt.sha256, model, options.backend, settings)
        if resume and (existing := store.find_resumable(key)) is not None:
            store.discard_staging(staging)
            return _summary_from(existing, resumed=True)

        estimate = _estimate_cost(model, options.backend, input_tokens, len(documents), max_tokens)
        manifest = {
            "job_id": new_job_id(key),
            "key": key,
            "state": State.PREPARED.value,
            "backend": options.backend,
            "model": model,
            "source": str(docs_dir),
            "spec": {"path": str(spec.source), "name": spec.name, "sha256": spec.sha256},
            "prompt": {"name": prompt.name, "version": prompt.version, "backend": prompt.backend, "sha256": prompt.sha256},
            "settings": settings,
            "shards": shards,
            "documents": documents,
            "skipped": skipped,
            "duplicates": duplicates,
            "audit": {"lines": audit.lines, "warnings": audit.warnings},
            "estimate": {"input_tokens": input_tokens, "counted": options.count_tokens, **estimate},
        }
        job = store.create(manifest, staging)
    except BaseException:
        store.discard_staging(staging)
        raise
    return _summary_from(job, resumed=False)


def _manifest_entry(doc: Document, custom_id: str, shard: str) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "path": doc.path,
        "paths": [doc.path],
        "title": doc.title,
        "sha256": doc.sha256,
        "chars": doc.chars,
        "custom_id": custom_id,
        "shard": shard,
    }


def _estimate_cost(model: str, backend: str, input_tokens: int, documents: int, max_tokens: int) -> dict[str, Any]:
    """Input cost is exact from counted tokens; output is bounded by max_tokens, so it is an upper bound."""
    if backend == "local":
        return {"input_cost_usd": 0.0, "output_cost_usd_max": 0.0, "estimated_cost_usd": 0.0}
    batch = backend == "openai"
    input_cost = pricing.estimate_cost(model, input_tokens, 0, batch=batch)
    output_cost = pricing.estimate_cost(model, 0, documents * max_tokens, batch=batch)
    if input_cost is None or output_cost is None:
        return {"input_cost_usd": None, "output_cost_usd_max": None, "estimated_cost_usd": None}
    return {
        "input_cost_usd": round(input_cost, 6),
        "output_cost_usd_max": round(output_cost, 6),
        "estimated_cost_usd": round(input_cost + output_cost, 6),
    }


def _summary_from(job: Job, *, resumed: bool) -> PrepareSummary:
    m = job.manifest
    return PrepareSummary(
        job=job,
        documents=len(m["documents"]),
        requests=sum(s["lines"] for s in m["shards"]),
        skipped=m.get("skipped", []),
        duplicates=m.get("duplicates", 0),
        input_tokens=m["estimate"]["input_tokens"],
        estimated_cost_usd=m["estimate"].get("estimated_cost_usd"),
        resumed=resumed,
    )
