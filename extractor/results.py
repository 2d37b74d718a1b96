"""Output and error lines → exactly one outcome per document, matched by custom_id, never by position."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .jobs import Job, State
from .pricing import BATCH_DISCOUNT, estimate_cost
from .schema import Spec, load_spec
from .storage import atomic_write_jsonl, iter_jsonl

if TYPE_CHECKING:
    from .backends.openai_batch import WaitOptions

OUTCOMES = ("ok", "http_error", "schema_invalid", "truncated", "refusal", "expired", "missing")
FAILED_OUTCOMES = frozenset(OUTCOMES) - {"ok"}
# Error codes the Batch API (or the lane, for requests a batch never ran) puts on a line that got no answer.
UNANSWERED_OUTCOME = {"batch_expired": "expired", "batch_cancelled": "missing"}
# A line cut short or garbled by the provider still names its request, usually.
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class CollectSummary:
    job_id: str
    documents: int
    outcomes: dict[str, int]
    failed: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "documents": self.documents, "outcomes": self.outcomes, "failed": self.failed}


# A failed line is worth resending only when the failure was the provider's, not the request's: 408, 409, 429
# and 5xx, and the lane's own codes for lines a batch never ran. A 400/404/422 (invalid_request_error,
# unsupported_value, unsupported_parameter, invalid_json_schema, model_not_found) fails again the same way.
TRANSIENT_STATUS = frozenset({408, 409, 429})
TRANSIENT_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "output_unavailable", "malformed_line",
                             "server_error", "rate_limit_exceeded", "timeout", "token_limit_exceeded"})


def error_kind(status: int | None, code: str | None) -> str:
    """"transient" (retried) or "deterministic" (the same request fails again: not retried)."""
    if status is None or status == 200:
        return "transient" if not code or code in TRANSIENT_CODES else "deterministic"
    return "transient" if status in TRANSIENT_STATUS or status >= 500 else "deterministic"


def classify_line(line: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """One output or error line → outcome, parsed answer (when ok), finish reason, usage."""
    row: dict[str, Any] = {"outcome": "ok", "answer": None, "errors": [], "finish_reason": None, "usage": None, "model": None}
    response = line.get("response") or {}
    error = line.get("error")
    status = response.get("status_code")
    if error or status != 200:
        code = (error or {}).get("code") or ""
        body_error = _body_error_object(response)
        row["outcome"] = UNANSWERED_OUTCOME.get(code, "http_error")
        row["errors"] = [f"{status or '-'} {code}: {(error or {}).get('message') or _body_error(response)}".strip()]
        code = code or body_error.get("code") or ""
        row["error"] = {"kind": error_kind(status, code or None), "status": status, "code": code or None,
                        "param": (error or {}).get("param") or body_error.get("param"),
                        "type": body_error.get("type")}
        return row
    body = response.get("body") or {}
    if body.get("object") == "response":  # a /v1/responses answer: read as the chat shape it maps onto
        body = responses_as_chat(body)
    row["usage"] = body.get("usage")
    row["model"] = body.get("model")
    choices = body.get("choices") or []
    if not choices:
        row["outcome"] = "http_error"
        row["errors"] = ["answer has no choices"]
        return row
    choice = choices[0]
    message = choice.get("message") or {}
    row["finish_reason"] = choice.get("finish_reason")
    if message.get("refusal"):
        row["outcome"] = "refusal"
        row["errors"] = [str(message["refusal"])[:500]]
        return row
    if row["finish_reason"] == "length":
        row["outcome"] = "truncated"
        row["errors"] = ["answer cut off at max_tokens (finish_reason=length)"]
        return row
    if row["finish_reason"] == "content_filter":
        row["outcome"] = "refusal"
        row["errors"] = ["answer withheld by the provider's content filter"]
        return row
    try:
        answer = orjson.loads(message.get("content") or "")
    except orjson.JSONDecodeError as exc:
        row["outcome"] = "schema_invalid"
        row["errors"] = [f"answer is not JSON: {exc}"]
        return row
    problems = spec.validate_answer(answer)
    if problems:
        row["outcome"] = "schema_invalid"
        row["errors"] = problems[:20]
        return row
    row["answer"] = answer
    return row


def responses_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses API response object in the chat-completion shape classify_line reads.

    The answer is the output_text of the message items (reasoning items carry none); a refusal part is the
    refusal; status "incomplete" for max_output_tokens is finish_reason "length", for content_filter likewise.
    """
    texts: list[str] = []
    refusal = None
    for item in body.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                texts.append(str(part.get("text") or ""))
            elif isinstance(part, dict) and part.get("type") == "refusal":
                refusal = part.get("refusal")
    finish = "stop"
    if body.get("status") == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        finish = "content_filter" if reason == "content_filter" else "length"
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    if usage is not None:
        usage = {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
                 "total_tokens": usage.get("total_tokens"),
                 "completion_tokens_details": usage.get("output_tokens_details")}
    message = {"role": "assistant", "content": "".join(texts) if texts or refusal is None else None, "refusal": refusal}
    return {"model": body.get("model"), "usage": usage, "choices": [{"message": message, "finish_reason": finish}]}


def _body_error_object(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body") or {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def _body_error(response: dict[str, Any]) -> str:
    body = response.get("body") or {}
    err = body.get("error") if isinstance(body, dict) else None
    return (err or {}).get("message", "") if isinstance(err, dict) else ""


def read_answer_lines(job: Job) -> dict[str, dict[str, Any]]:
    """Every output/error line by custom_id; a success wins over an error for the same id (e.g. after a retry)."""
    by_id: dict[str, dict[str, Any]] = {}
    for directory, is_output in ((job.errors_dir, False), (job.output_dir, True)):
        for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
            for line in iter_answer_lines(path):
                cid = line.get("custom_id")
                if not cid:
                    continue
                current = by_id.get(cid)
                if current is None or is_output or not _is_success(current):
                    by_id[cid] = line
    return by_id


def _is_success(line: dict[str, Any]) -> bool:
    return not line.get("error") and (line.get("response") or {}).get("status_code") == 200


def iter_answer_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of a provider's file; a malformed one becomes an error line for the request it names, if any."""
    with path.open("rb") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = malformed_line(raw, path)
            if isinstance(obj, dict):
                yield obj


def malformed_line(raw: bytes, path: Path) -> dict[str, Any] | None:
    """An error line standing in for an unparseable one (None when it names no request: that one stays missing)."""
    found = _CUSTOM_ID.search(raw)
    if found is None:
        return None
    try:
        custom_id = orjson.loads(b'"' + found.group(1) + b'"')
    except orjson.JSONDecodeError:
        return None
    message = f"the provider's line in {path.name} is not valid JSON ({len(raw)} bytes)"
    return {"id": None, "custom_id": custom_id, "response": None, "error": {"code": "malformed_line", "message": message}}


def answered_ids(path: Path) -> set[str]:
    """The custom_ids a provider's output or error file has a line for (none when the file does not exist)."""
    return {line["custom_id"] for line in iter_answer_lines(path) if line.get("custom_id")} if path.is_file() else set()


def collect_job(job: Job, *, fetch: bool = True, wait: WaitOptions | None = None,
                progress: Callable[[Any], None] | None = None) -> CollectSummary:
    """Write results.jsonl: one row per document of the manifest, in manifest order.

    For an OpenAI Batch job the finished batches' files are downloaded first (`fetch`); while any batch
    is still running this raises BatchesPending, unless `wait` says to poll until they end.
    """
    job.require(State.SUBMITTED, State.COLLECTED, State.VERIFIED, doing="be collected")
    if fetch and job.manifest.get("remote", {}).get("kind") == "openai":
        from .backends.openai_batch import fetch_batches

        fetch_batches(job, wait, progress)
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    lines = read_answer_lines(job)
    model, backend = job.manifest["model"], job.manifest["backend"]
    cost = JobCost(batch=backend == "openai")
    expired = bool(job.manifest.get("remote", {}).get("expired"))
    counts: Counter[str] = Counter({k: 0 for k in OUTCOMES})
    kinds: Counter[tuple[Any, ...]] = Counter()
    failed: list[str] = []

    def rows():
        for doc in job.documents():
            cid = doc["custom_id"]
            line = lines.get(cid)
            if line is None:
                row = {"outcome": "expired" if expired else "missing", "answer": None,
                       "errors": ["no answer line for this custom_id"], "finish_reason": None, "usage": None, "model": None}
            else:
                row = classify_line(line, spec)
            row["cost_usd"] = cost.add(row.get("model") or model, row.get("usage"), backend)
            counts[row["outcome"]] += 1
            if row["outcome"] != "ok":
                failed.append(cid)
            if row.get("error"):
                e = row["error"]
                kinds[(e["kind"], e.get("status"), e.get("code"), e.get("param"))] += 1
            yield {"custom_id": cid, "doc_id": doc["doc_id"], "path": doc["path"], **row}

    atomic_write_jsonl(job.results_path, rows())
    for path in sorted((job.path / "superseded").rglob("*.jsonl")):
        for line in iter_answer_lines(path):  # answers a retry replaced were paid for all the same
            body = (line.get("response") or {}).get("body") or {}
            cost.add(body.get("model") or model, body.get("usage"), backend, superseded=True)
    summary = CollectSummary(job.id, len(job.documents()), dict(counts), failed)
    errors = [{"kind": k, "status": st, "code": code, "param": param, "lines": n}
              for (k, st, code, param), n in kinds.most_common()]
    job.transition(State.COLLECTED, outcomes=summary.outcomes, cost=cost.as_dict(), errors=errors)
    return summary


@dataclass
class JobCost:
    """Tokens and USD over every answer of a job, the batch discount applied where the Batch API billed them."""

    batch: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    superseded_usd: float = 0.0
    unpriced: int = 0

    def add(self, model: str, usage: dict[str, Any] | None, backend: str, *, superseded: bool = False) -> float | None:
        """Count one answer's usage; returns its cost (None when the model's price is unknown)."""
        if not isinstance(usage, dict):
            return None
        # chat completions: prompt/completion_tokens; responses: input/output_tokens (reasoning included in both)
        prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        usd = estimate_cost(model, prompt, completion, batch=self.batch, backend=backend)
        if usd is None:
            self.unpriced += 1
            return None
        self.usd += usd
        if superseded:
            self.superseded_usd += usd
        return round(usd, 8)

    def as_dict(self) -> dict[str, Any]:
        return {"usd": round(self.usd, 6), "superseded_usd": round(self.superseded_usd, 6),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "batch_discount": BATCH_DISCOUNT if self.batch else None, "unpriced_answers": self.unpriced}


def iter_results(job: Job):
    return iter_jsonl(job.results_path)
