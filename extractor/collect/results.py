"""Output and error lines → exactly one outcome per document, matched by custom_id, never by position."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from extractor.errors import ExitCode
from extractor.jobs import Job, State
from extractor.lanes import describe
from extractor.prepare.answer_bounds import drop_repeats
from extractor.pricing import BATCH_DISCOUNT, estimate_cost
from extractor.spec.schema import Spec, load_spec
from extractor.storage import atomic_write_jsonl, iter_jsonl

if TYPE_CHECKING:
    from extractor.lanes import Lane, WaitOptions

OUTCOMES = ("ok", "http_error", "schema_invalid", "truncated", "refusal", "expired", "missing")
FAILED_OUTCOMES = frozenset(OUTCOMES) - {"ok"}
# Error codes the Batch API (or the lane, for requests a batch never ran) puts on a line that got no answer.
UNANSWERED_OUTCOME = {"batch_expired": "expired", "batch_cancelled": "missing"}
# Error codes collect itself puts on a line it would not read (see MAX_ANSWER_BYTES).
LINE_OUTCOME = {**UNANSWERED_OUTCOME, "answer_too_large": "schema_invalid"}
# A line cut short or garbled by the provider still names its request, usually.
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


# An answer line longer than this is not parsed: it is recorded as schema_invalid with the size as the reason.
# A 32k-token answer is ~130 KB of JSON; 1 MiB leaves room for any real answer and bounds verify's work.
MAX_ANSWER_BYTES = 1 << 20
# A provider's file is checked line by line; what it says about one line is clipped to this many characters.
MAX_REASON_CHARS = 300


@dataclass
class CollectSummary:
    job_id: str
    documents: int
    outcomes: dict[str, int]
    failed: list[str]
    unknown_lines: int = 0
    duplicate_lines: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """PARTIAL when some documents failed (`retry` resends them), else OK."""
        return ExitCode.PARTIAL if self.failed else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "documents": self.documents,
            "outcomes": self.outcomes,
            "failed": self.failed,
            "unknown_lines": self.unknown_lines,
            "duplicate_lines": self.duplicate_lines,
            "warnings": self.warnings,
        }


# A failed line is worth resending only when the failure was the provider's, not the request's: 408, 409, 429
# and 5xx, and the lane's own codes for lines a batch never ran. A 400/404/422 (invalid_request_error,
# unsupported_value, unsupported_parameter, invalid_json_schema, model_not_found) fails again the same way.
TRANSIENT_STATUS = frozenset({408, 409, 429})
TRANSIENT_CODES = frozenset(
    {
        "batch_expired",
        "batch_cancelled",
        "batch_failed",
        "output_unavailable",
        "malformed_line",
        "server_error",
        "rate_limit_exceeded",
        "timeout",
        "token_limit_exceeded",
    }
)


def error_kind(status: int | None, code: str | None) -> str:
    """ "transient" (retried) or "deterministic" (the same request fails again: not retried)."""
    if status is None or status == 200:
        return "transient" if not code or code in TRANSIENT_CODES else "deterministic"
    return "transient" if status in TRANSIENT_STATUS or status >= 500 else "deterministic"


class _Malformed(Exception):
    """A line that is JSON but not the shape of a Batch API output or error line."""


def _field(container: dict[str, Any], key: str, kinds: tuple[type, ...], where: str, *, optional: bool = True) -> Any:
    value = container.get(key)
    if value is None and optional:
        return None
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        wanted = " or ".join(_KIND_NAMES[k] for k in kinds) + (" or null" if optional else "")
        raise _Malformed(f"{where}{key} is {_kind_of(value)}, expected {wanted}")
    return value


_KIND_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true/false",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in _KIND_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return name
    return type(value).__name__


def _usage(body: dict[str, Any]) -> dict[str, Any] | None:
    usage = _field(body, "usage", (dict,), "response.body.")
    if usage is None:
        return None
    clean: dict[str, Any] = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _Malformed(f"response.body.usage.{key} is {_kind_of(value)}, expected a non-negative integer")
        clean[key] = value
    details = usage.get("completion_tokens_details")  # reasoning tokens: billed as output, counted in the budget
    if isinstance(details, dict):
        clean["completion_tokens_details"] = {
            k: v for k, v in details.items() if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        }
    return clean


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def classify_line(line: dict[str, Any], spec: Spec, where: str = "") -> dict[str, Any]:
    """One output or error line of any JSON shape → outcome, parsed answer (when ok), finish reason, usage.

    A line whose shape is not the Batch API's is an http_error whose reason names `where` (file:line).
    """
    row: dict[str, Any] = {
        "outcome": "ok",
        "answer": None,
        "errors": [],
        "finish_reason": None,
        "usage": None,
        "model": None,
    }
    try:
        return _classify(line, spec, row)
    except _Malformed as exc:
        row.update(
            outcome="http_error",
            answer=None,
            finish_reason=None,
            usage=None,
            model=None,
            errors=[_clip(f"malformed_line: {where + ': ' if where else ''}{exc}")],
        )
        return row


def _classify(line: dict[str, Any], spec: Spec, row: dict[str, Any]) -> dict[str, Any]:
    response = _field(line, "response", (dict,), "") or {}
    error = _field(line, "error", (dict,), "")
    status = _field(response, "status_code", (int,), "response.")
    if error or status != 200:
        error = error or {}
        code = _field(error, "code", (str, int), "error.") or ""
        message = _field(error, "message", (str,), "error.") or _body_error(response)
        row["outcome"] = LINE_OUTCOME.get(code, "http_error") if isinstance(code, str) else "http_error"
        row["errors"] = [_clip(f"{status or '-'} {code}: {message}".strip())]
        body_error = _body_error_object(response)
        code = str(code or body_error.get("code") or "")
        param = error.get("param") or body_error.get("param")
        row["error"] = {
            "kind": error_kind(status, code or None),
            "status": status,
            "code": code or None,
            "param": param if isinstance(param, str) else None,
            "type": body_error.get("type") if isinstance(body_error.get("type"), str) else None,
        }
        return row
    body = _field(response, "body", (dict,), "response.") or {}
    if body.get("object") == "response":  # a /v1/responses answer: read as the chat shape it maps onto
        body = responses_as_chat(body)
    row["usage"] = _usage(body)
    row["model"] = _field(body, "model", (str,), "response.body.")
    choices = _field(body, "choices", (list,), "response.body.") or []
    if not choices:
        row["outcome"] = "http_error"
        row["errors"] = ["answer has no choices"]
        return row
    if not isinstance(choices[0], dict):
        raise _Malformed(f"response.body.choices[0] is {_kind_of(choices[0])}, expected an object")
    choice = choices[0]
    message = _field(choice, "message", (dict,), "response.body.choices[0].") or {}
    row["finish_reason"] = _field(choice, "finish_reason", (str,), "response.body.choices[0].")
    refusal = _field(message, "refusal", (str,), "response.body.choices[0].message.")
    content = _field(message, "content", (str,), "response.body.choices[0].message.")
    if refusal:
        row["outcome"] = "refusal"
        row["errors"] = [refusal[:500]]
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
        answer = orjson.loads(content or "")
    except orjson.JSONDecodeError as exc:
        row["outcome"] = "schema_invalid"
        row["errors"] = [_clip(f"answer is not JSON: {exc}")]
        return row
    problems = spec.validate_answer(answer)
    if problems:
        row["outcome"] = "schema_invalid"
        row["errors"] = [_clip(p) for p in problems[:20]]
        return row
    row["answer"], repeats = drop_repeats(answer, spec)  # a looping model lists the same fact again and again
    if repeats:
        row["repeats_dropped"] = repeats
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
        usage = {
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "completion_tokens_details": usage.get("output_tokens_details"),
        }
    message = {"role": "assistant", "content": "".join(texts) if texts or refusal is None else None, "refusal": refusal}
    return {"model": body.get("model"), "usage": usage, "choices": [{"message": message, "finish_reason": finish}]}


def _body_error_object(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body") or {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def _body_error(response: dict[str, Any]) -> str:
    body = response.get("body") or {}
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message", "") if isinstance(err, dict) else ""
    return message if isinstance(message, str) else ""


@dataclass
class AnswerLines:
    """The one line kept per custom_id (with its classification and file:line), and what was set aside."""

    rows: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    unknown: Counter[str] = field(default_factory=Counter)  # file → lines naming no document of the job
    duplicates: list[str] = field(default_factory=list)


def read_answer_lines(job: Job, spec: Spec) -> AnswerLines:
    """Every output/error line classified by custom_id.

    For an id with several lines the first ok answer wins: a later line, valid or not, never replaces it;
    a later line replaces an earlier failed one (an error line, then its answer after a retry). Each extra
    line is reported. Lines for ids that are no document of the job are counted per file.
    """
    known = {doc["custom_id"] for doc in job.documents()}
    found = AnswerLines()
    for directory in (job.errors_dir, job.output_dir):
        for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
            rel = f"{directory.name}/{path.name}"
            for number, line in iter_numbered_lines(path):
                cid = line.get("custom_id")
                if not isinstance(cid, str) or cid not in known:
                    found.unknown[rel] += 1
                    continue
                where = f"{rel}:{number}"
                row = classify_line(line, spec, where)
                current = found.rows.get(cid)
                if current is not None:
                    kept = current if current[0]["outcome"] == "ok" else (row, where)
                    found.duplicates.append(
                        f"custom_id {cid} has more than one line ({current[1]}, {where}); kept {kept[1]}"
                        + (" (the valid answer)" if kept[0]["outcome"] == "ok" else " (the latest)")
                    )
                    if current[0]["outcome"] == "ok":
                        continue
                found.rows[cid] = (row, where)
    return found


def iter_numbered_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, line) for every line of a provider's file that names a request.

    A malformed line, or one over MAX_ANSWER_BYTES, becomes an error line for the request it names;
    a line that names none is passed over (its request stays missing).
    """
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            raw = raw.strip()
            if not raw:
                continue
            if len(raw) > MAX_ANSWER_BYTES:
                obj: Any = oversized_line(raw, path, number)
            else:
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    obj = malformed_line(raw, path)
            yield (number, obj if isinstance(obj, dict) else {})


def iter_answer_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of a provider's file; a malformed one becomes an error line for the request it names, if any."""
    for _, line in iter_numbered_lines(path):
        if line:
            yield line


def malformed_line(raw: bytes, path: Path) -> dict[str, Any] | None:
    """An error line standing in for an unparseable one (None when it names no request: that one stays missing)."""
    custom_id = _named_id(raw)
    if custom_id is None:
        return None
    message = f"the provider's line in {path.name} is not valid JSON ({len(raw)} bytes)"
    return {
        "id": None,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "malformed_line", "message": message},
    }


def oversized_line(raw: bytes, path: Path, number: int) -> dict[str, Any] | None:
    """A stand-in for a line over MAX_ANSWER_BYTES: its answer is judged schema_invalid without being parsed."""
    custom_id = _named_id(raw[:4096])
    if custom_id is None:
        return None
    reason = (
        f"answer too large: line {number} of {path.name} is {len(raw):,} bytes, over the limit of "
        f"{MAX_ANSWER_BYTES:,} bytes per answer"
    )
    return {
        "id": None,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "answer_too_large", "message": reason},
    }


def _named_id(raw: bytes) -> str | None:
    found = _CUSTOM_ID.search(raw)
    if found is None:
        return None
    try:
        custom_id = orjson.loads(b'"' + found.group(1) + b'"')
    except orjson.JSONDecodeError:
        return None
    return custom_id if isinstance(custom_id, str) else None


def answered_ids(path: Path) -> set[str]:
    """The custom_ids a provider's output or error file has a line for (none when the file does not exist)."""
    if not path.is_file():
        return set()
    return {cid for line in iter_answer_lines(path) if isinstance(cid := line.get("custom_id"), str) and cid}


def collect_job(
    job: Job,
    lane: Lane | None = None,
    *,
    fetch: bool = True,
    wait: WaitOptions | None = None,
    progress: Callable[[Any], None] | None = None,
) -> CollectSummary:
    """Write results.jsonl: one row per document of the manifest, in manifest order, from the job's files alone.

    With a `lane` (`extractor.lanes.lane_for(job)`), it first brings the answers it still holds remotely into
    the job folder (`lane.fetch`; `fetch=False` skips that): for a batch lane, while any batch is still running
    this raises BatchesPending, unless `wait` says to poll until they end.
    """
    job.require(State.SUBMITTED, State.COLLECTED, State.VERIFIED, doing="be collected")
    if fetch and lane is not None:
        lane.fetch(job, wait, progress)
    spec = load_spec(Path(job.manifest["spec"]["path"]))
    lines = read_answer_lines(job, spec)
    model, backend = job.manifest["model"], job.manifest["backend"]
    cost = JobCost(batch=describe(backend).is_batch)
    expired = bool(job.manifest.get("remote", {}).get("expired"))
    counts: Counter[str] = Counter({k: 0 for k in OUTCOMES})
    kinds: Counter[tuple[Any, ...]] = Counter()
    failed: list[str] = []

    def rows():
        for doc in job.documents():
            cid = doc["custom_id"]
            kept = lines.rows.get(cid)
            row: dict[str, Any]
            if kept is None:
                row = {
                    "outcome": "expired" if expired else "missing",
                    "answer": None,
                    "errors": ["no answer line for this custom_id"],
                    "finish_reason": None,
                    "usage": None,
                    "model": None,
                }
            else:
                row = dict(kept[0])
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
            answer_model, usage = _billing(line)
            cost.add(answer_model or model, usage, backend, superseded=True)
    warnings = list(lines.duplicates)
    for rel, count in sorted(lines.unknown.items()):
        warnings.append(f"{rel}: {count} line(s) name no document of job {job.id} (another job's file?) — not used")
    summary = CollectSummary(
        job.id,
        len(job.documents()),
        dict(counts),
        failed,
        unknown_lines=sum(lines.unknown.values()),
        duplicate_lines=len(lines.duplicates),
        warnings=warnings,
    )
    errors = [
        {"kind": k, "status": st, "code": code, "param": param, "lines": n}
        for (k, st, code, param), n in kinds.most_common()
    ]
    job.transition(State.COLLECTED, outcomes=summary.outcomes, cost=cost.as_dict(), errors=errors)
    if warnings:
        job.log(
            "collect_warnings",
            unknown_lines=summary.unknown_lines,
            duplicate_lines=summary.duplicate_lines,
            warnings=warnings[:100],
        )
    return summary


def _billing(line: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The model and usage a line reports, (None, None) when its shape is not the Batch API's."""
    try:
        response = _field(line, "response", (dict,), "") or {}
        body = _field(response, "body", (dict,), "response.") or {}
        if body.get("object") == "response":
            body = responses_as_chat(body)
        return _field(body, "model", (str,), "response.body."), _usage(body)
    except _Malformed:
        return None, None


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
        return {
            "usd": round(self.usd, 6),
            "superseded_usd": round(self.superseded_usd, 6),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "batch_discount": BATCH_DISCOUNT if self.batch else None,
            "unpriced_answers": self.unpriced,
        }


def iter_results(job: Job):
    return iter_jsonl(job.results_path)
