"""A real-HTTP emulator of the OpenAI Files + Batches API on 127.0.0.1, with misbehaviours tests can plant.

Drive it with the real SDK: ``OpenAI(base_url=emu.base_url, api_key=emu.api_key)``.
Formats follow the documented batch object, file object and batch output/error lines, for
/v1/chat/completions and /v1/responses batches. Every request line is checked against what the real API
refuses for its model (tests/openai_rules.py, each rule with its source): a refused line comes back as the
real API's per-line error. Batches of one model share an enqueued-token limit, as the real Batch API's
"batch queue limit": a batch over it fails whole with token_limit_exceeded (openai-python#2084).
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.openai_rules import REASONING_TOKENS, Refused, check_request, effort_of, input_tokens

# The Re-DocRED material lives in tests/redocred.py; re-exported here, where tests first found it.
from tests.redocred import (  # noqa: F401
    MAX_ITEMS,
    REDOCRED_PATH,
    REDOCRED_TYPES,
    WIKIDATA_RELATIONS,
    GoldAnswerer,
    empty_answer,
    gold_answer,
    load_redocred,
    mention_text,
    redocred_text,
    request_text,
)

Answerer = Callable[[dict], dict]

CHAT_ENDPOINT = "/v1/chat/completions"
RESPONSES_ENDPOINT = "/v1/responses"
BATCH_ENDPOINTS = (CHAT_ENDPOINT, RESPONSES_ENDPOINT)  # of the documented batch endpoints, the two we serve
DAY_S = 24 * 3600

# ---------------------------------------------------------------- behaviour


@dataclass
class Behaviour:
    """Switches for how the emulated provider behaves; change them at any time, they apply when lines are answered."""

    auto_complete: bool = True  # each GET of a batch advances it one step (completed on the 3rd GET)
    lines_per_step: int | None = None  # lines answered per in_progress step; None answers all at once
    shuffle_output: bool = False  # output and error lines in an order other than the input's
    seed: int = 0
    fail_ids: set[str] = field(default_factory=set)  # these custom_ids go to the error file
    fail_fraction: float = 0.0  # plus this share of all lines, picked by seed
    fail_status: int | None = 500  # None: error line with response null and error {code, message}
    expire_at_fraction: float | None = None  # the batch expires once this share of lines is answered
    expired_error_lines: bool = False  # on expiry, unanswered lines get batch_expired error lines (else absent)
    malformed_ids: set[str] = field(default_factory=set)  # output line cut in half: not JSON
    schema_violation_ids: set[str] = field(default_factory=set)  # answer breaks the requested schema
    truncated_ids: set[str] = field(default_factory=set)  # finish_reason "length", content cut in half
    refusal_ids: set[str] = field(default_factory=set)  # message.refusal set, content null
    concatenate: bool = False  # each answer also carries the entities of lines i-1 and i+1
    concatenate_ids: set[str] | None = None  # restrict concatenation to these custom_ids; None = all
    faults: dict[str, list[int]] = field(
        default_factory=dict
    )  # route -> HTTP statuses for its next calls; 0 drops the connection
    delays: dict[str, list[float]] = field(
        default_factory=dict
    )  # route -> seconds its next calls stall before answering
    # route -> called with the answer payload after the call took effect and before the answer is sent
    # (a test kills its client there to crash it between the server's action and the client's record of it)
    hooks: dict[str, Callable[[dict], None]] = field(default_factory=dict)
    echo_key_in_errors: bool = False  # a 401 quotes the presented key in full (worse than the real API's masked echo)
    max_requests_per_batch: int = 50_000
    # Enqueued input tokens per model across its unfinished batches; None: no limit. A batch that would go
    # over fails in validation: "Enqueued token limit reached for {model} ... Limit: N enqueued tokens.
    # Please try again once some in_progress batches have been completed." (openai-python#2084)
    enqueued_token_limit: int | None = None
    enforce_rules: bool = True  # per-model parameter and strict-schema rules (tests/openai_rules.py)


# ---------------------------------------------------------------- state


class DropConnection(Exception):
    """Raised by a hook: the call took effect, but its answer is lost (the connection closes unanswered)."""


class ApiError(Exception):
    """An HTTP error in OpenAI's error JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Batch:
    obj: dict
    lines: list[dict] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    done: list[tuple[bool, str]] = field(default_factory=list)  # (is_error, serialized line) in answer order
    enqueued: int = 0  # input tokens this batch holds against its model's enqueued-token limit while unfinished


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _now() -> int:
    return int(time.time())


TERMINAL = {"completed", "failed", "expired", "cancelled"}


class BatchEmulator:
    """OpenAI Files + Batches on a real HTTP port; `behaviour` plants misbehaviours, `calls` counts requests."""

    def __init__(
        self, answerer: Answerer | None = None, behaviour: Behaviour | None = None, api_key: str | None = None
    ):
        self.answerer: Answerer = answerer or GoldAnswerer.from_path()
        self.behaviour = behaviour or Behaviour()
        self.api_key = api_key or "sk-emulator-" + secrets.token_hex(8)
        self.calls: Counter[str] = Counter()
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> BatchEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> BatchEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- test controls

    def advance(self, batch_id: str, steps: int = 1) -> str:
        """Move a batch `steps` steps along its lifecycle; returns its status."""
        with self._lock:
            batch = self._get_batch(batch_id)
            for _ in range(steps):
                self._step(batch)
            return batch.obj["status"]

    def complete_all(self) -> None:
        """Run every unfinished batch to its end (completed, expired, cancelled or failed)."""
        with self._lock:
            for batch in self.batches.values():
                while batch.obj["status"] not in TERMINAL:
                    self._step(batch)

    def expire(self, batch_id: str) -> None:
        """End a batch now as expired, keeping the lines answered so far."""
        with self._lock:
            batch = self._get_batch(batch_id)
            if batch.obj["status"] not in TERMINAL:
                self._finish(batch, "expired")

    def batch(self, batch_id: str) -> dict:
        """A copy of the batch object as the API returns it."""
        with self._lock:
            return json.loads(json.dumps(self._get_batch(batch_id).obj))

    def file_bytes(self, file_id: str) -> bytes:
        with self._lock:
            return self._get_file(file_id).data

    # -- endpoints (called by the handler under the lock)

    def upload_file(self, filename: str, purpose: str, data: bytes) -> dict:
        if purpose != "batch":
            raise ApiError(400, f"Invalid purpose {purpose!r}: this emulator takes 'batch' files.", param="purpose")
        file = _File(_new_id("file-"), filename, purpose, data, _now())
        self.files[file.id] = file
        return file.to_api()

    def retrieve_file(self, file_id: str) -> dict:
        return self._get_file(file_id).to_api()

    def delete_file(self, file_id: str) -> dict:
        self._get_file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def create_batch(self, params: dict) -> dict:
        input_file_id = params.get("input_file_id")
        if not isinstance(input_file_id, str):
            raise ApiError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
        if self._get_file(input_file_id).purpose != "batch":
            raise ApiError(400, f"File {input_file_id} was not uploaded with purpose 'batch'.", param="input_file_id")
        if params.get("endpoint") not in BATCH_ENDPOINTS:
            message = f"Unsupported endpoint {params.get('endpoint')!r}: use {' or '.join(BATCH_ENDPOINTS)}."
            raise ApiError(400, message, param="endpoint")
        if params.get("completion_window") != "24h":
            raise ApiError(400, "completion_window must be '24h'.", param="completion_window")
        metadata = params.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items())
        ):
            message = "metadata: at most 16 string pairs, keys <= 64 and values <= 512 chars."
            raise ApiError(400, message, param="metadata")
        created = _now()
        obj = {
            "id": _new_id("batch_"),
            "object": "batch",
            "endpoint": params["endpoint"],
            "model": None,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": created,
            "in_progress_at": None,
            "expires_at": created + DAY_S,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
        }
        self.batches[obj["id"]] = _Batch(obj)
        return obj

    def retrieve_batch(self, batch_id: str) -> dict:
        batch = self._get_batch(batch_id)
        if self.behaviour.auto_complete:
            self._step(batch)
        return batch.obj

    def cancel_batch(self, batch_id: str) -> dict:
        batch = self._get_batch(batch_id)
        status = batch.obj["status"]
        if status in TERMINAL:
            raise ApiError(400, f"Cannot cancel a batch with status '{status}'.")
        if status != "cancelling":
            batch.obj.update(status="cancelling", cancelling_at=_now())
        return batch.obj

    def list_files(self, purpose: str | None, after: str | None, limit: int, order: str) -> dict:
        ordered = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if order == "desc":
            ordered.reverse()
        ids = [f.id for f in ordered]
        start = ids.index(after) + 1 if after in ids else 0
        page = ordered[start : start + max(1, min(limit, 10_000))]
        return {
            "object": "list",
            "data": [f.to_api() for f in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": start + len(page) < len(ordered),
        }

    def list_batches(self, after: str | None, limit: int) -> dict:
        newest_first = list(reversed(self.batches))
        start = newest_first.index(after) + 1 if after in self.batches else 0
        page = newest_first[start : start + max(1, min(limit, 100))]
        data = [self.batches[batch_id].obj for batch_id in page]
        return {
            "object": "list",
            "data": data,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
            "has_more": start + len(page) < len(newest_first),
        }

    # -- lifecycle steps

    def _step(self, batch: _Batch) -> None:
        obj = batch.obj
        status = obj["status"]
        if status == "validating":
            errors = self._validate(batch)
            if errors:
                obj.update(status="failed", failed_at=_now(), errors={"object": "list", "data": errors})
            else:
                obj.update(status="in_progress", in_progress_at=_now())
        elif status == "in_progress":
            self._answer_some(batch)
        elif status == "finalizing":
            self._finish(batch, "completed")
        elif status == "cancelling":
            self._finish(batch, "cancelled")

    def _validate(self, batch: _Batch) -> list[dict]:
        raw = self.files[batch.obj["input_file_id"]].data.decode("utf-8", errors="replace").splitlines()
        errors: list[dict] = []
        seen: set[str] = set()
        models: set[str] = set()

        def error(code: str, message: str, line: int, param: str | None = None) -> None:
            errors.append({"code": code, "message": message, "param": param, "line": line})

        for number, text in enumerate((t for t in raw if t.strip()), start=1):
            try:
                line = json.loads(text)
            except ValueError:
                error("invalid_json_line", "This line is not parseable as valid JSON.", number)
                continue
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                error("missing_required_parameter", "Each line needs a string custom_id.", number, "custom_id")
                continue
            if line["custom_id"] in seen:
                error("duplicate_custom_id", f"custom_id {line['custom_id']!r} is not unique.", number, "custom_id")
            if line.get("method") != "POST":
                error("invalid_method", "method must be POST.", number, "method")
            if line.get("url") != batch.obj["endpoint"]:
                error("mismatched_endpoint", f"url must be the batch endpoint {batch.obj['endpoint']}.", number, "url")
            body = line.get("body")
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                error("missing_required_parameter", "body.model is required.", number, "body.model")
            else:
                models.add(body["model"])
            seen.add(line["custom_id"])
            batch.lines.append(line)
        if not batch.lines and not errors:
            error("empty_file", "The input file has no request lines.", 0)
        if len(models) > 1:
            error("mismatched_model", f"A batch may use one model only; found {sorted(models)}.", 0, "body.model")
        if len(batch.lines) > self.behaviour.max_requests_per_batch:
            error("too_many_requests", f"A batch holds at most {self.behaviour.max_requests_per_batch} requests.", 0)
        if errors:
            batch.lines.clear()
            return errors
        model = next(iter(models))
        tokens = sum(input_tokens(batch.obj["endpoint"], line["body"]) for line in batch.lines)
        limit = self.behaviour.enqueued_token_limit
        if limit is not None:
            held = sum(
                b.enqueued
                for b in self.batches.values()
                if b is not batch and b.obj.get("model") == model and b.obj["status"] not in TERMINAL
            )
            if held + tokens > limit:
                batch.lines.clear()
                return [
                    {
                        "code": "token_limit_exceeded",
                        "param": None,
                        "line": None,
                        "message": f"Enqueued token limit reached for {model} in organization org-emulator."
                        f" Limit: {limit:,}"
                        " enqueued tokens. Please try again once some in_progress batches have been completed.",
                    }
                ]
        batch.enqueued = tokens
        ids = [line["custom_id"] for line in batch.lines]
        share = round(len(ids) * self.behaviour.fail_fraction)
        batch.failing = set(self.behaviour.fail_ids) | set(random.Random(self.behaviour.seed).sample(ids, share))
        batch.obj["model"] = model
        batch.obj["request_counts"]["total"] = len(ids)
        return []

    def _answer_some(self, batch: _Batch) -> None:
        total = len(batch.lines)
        fraction = self.behaviour.expire_at_fraction
        target = total if fraction is None else min(total, int(total * fraction))
        step = self.behaviour.lines_per_step or total
        for index in range(len(batch.done), min(target, len(batch.done) + step)):
            batch.done.append(self._answer_line(batch, index))
            counts = batch.obj["request_counts"]
            counts["failed" if batch.done[-1][0] else "completed"] += 1
        if len(batch.done) >= target:
            if target < total:
                self._finish(batch, "expired")
            else:
                batch.obj.update(status="finalizing", finalizing_at=_now())

    def _finish(self, batch: _Batch, status: str) -> None:
        done = list(batch.done)
        if status == "expired" and self.behaviour.expired_error_lines:
            error = {"code": "batch_expired", "message": "The request was not run before the completion window ended."}
            for line in batch.lines[len(batch.done) :]:
                done.append((True, json.dumps(_output_line(line["custom_id"], None, error))))
        if self.behaviour.shuffle_output and len(done) > 1:
            shuffled = done[:]
            random.Random(self.behaviour.seed).shuffle(shuffled)
            done = shuffled if shuffled != done else done[::-1]
        batch_id = batch.obj["id"]
        for is_error, attr, suffix in ((False, "output_file_id", "output"), (True, "error_file_id", "error")):
            lines = [text for err, text in done if err == is_error]
            if lines:
                data = ("\n".join(lines) + "\n").encode("utf-8")
                file = _File(_new_id("file-"), f"{batch_id}_{suffix}.jsonl", "batch_output", data, _now())
                self.files[file.id] = file
                batch.obj[attr] = file.id
        batch.obj.update({"status": status, f"{status}_at": _now()})

    # -- one answered line

    def _answer_line(self, batch: _Batch, index: int) -> tuple[bool, str]:
        """(is_error, serialized output line) for one input line."""
        line = batch.lines[index]
        custom_id, body = line["custom_id"], line["body"]
        if custom_id in batch.failing:
            return True, json.dumps(self._failure(custom_id))
        url = batch.obj["endpoint"]
        if self.behaviour.enforce_rules:
            try:
                check_request(url, body)
            except Refused as refused:  # the real API's per-line error: response with the status, error null
                response = {
                    "status_code": refused.status,
                    "request_id": _new_id("req_"),
                    "body": {"error": refused.error},
                }
                return True, json.dumps(_output_line(custom_id, response, None))
        try:
            answer = self.answerer(body)
        except Exception as exc:  # a broken answerer is the provider's 500, not the test's crash
            return True, json.dumps(_output_line(custom_id, _http_error(500, f"answerer raised {exc!r}"), None))
        chosen = self.behaviour.concatenate_ids
        if self.behaviour.concatenate and (chosen is None or custom_id in chosen):
            answer = self._with_neighbours(batch, index, answer)
        completion = self._completion(custom_id, body, answer, url)
        response = {"status_code": 200, "request_id": _new_id("req_"), "body": completion}
        text = json.dumps(_output_line(custom_id, response, None))
        if custom_id in self.behaviour.malformed_ids:
            text = text[: len(text) // 2]
        return False, text

    def _failure(self, custom_id: str) -> dict:
        status = self.behaviour.fail_status
        if status is None:
            error = {"code": "server_error", "message": "The request failed while being processed."}
            return _output_line(custom_id, None, error)
        return _output_line(custom_id, _http_error(status, f"Emulated failure with HTTP {status}."), None)

    def _with_neighbours(self, batch: _Batch, index: int, answer: dict) -> dict:
        entities = list(answer.get("entities", []))
        for neighbour in (index - 1, index + 1):
            if 0 <= neighbour < len(batch.lines):
                for entity in self.answerer(batch.lines[neighbour]["body"]).get("entities", []):
                    if entity not in entities:
                        entities.append(entity)
        # Still within the schema's maxItems: a strict-mode provider cannot send more, so the answer stays valid.
        return {**answer, "entities": entities[:MAX_ITEMS]}

    def _completion(self, custom_id: str, body: dict, answer: dict, url: str = CHAT_ENDPOINT) -> dict:
        content: str | None = json.dumps(answer, ensure_ascii=False)
        finish_reason, refusal = "stop", None
        if custom_id in self.behaviour.schema_violation_ids:
            broken = dict(answer)
            if broken:
                broken.pop(next(iter(broken)))  # a required key goes missing
            broken["unexpected_field"] = True
            content = json.dumps(broken, ensure_ascii=False)
        if custom_id in self.behaviour.truncated_ids:
            content, finish_reason = content[: len(content) // 2], "length"
        if custom_id in self.behaviour.refusal_ids:
            content, refusal = None, "I'm sorry, but I can't help with that request."
        prompt_tokens = input_tokens(url, body)
        answer_tokens = len(content or refusal or "") // 4 + 1
        # Reasoning tokens are spent first, from the same budget, and billed as output (reasoning guide).
        effort = effort_of(body, url)
        reasoning = REASONING_TOKENS.get(effort or "none", 0)
        budget = body.get("max_output_tokens") or body.get("max_completion_tokens") or body.get("max_tokens")
        # (Only where reasoning takes part: the gold answers are written by hand, not sized to a budget.)
        if (
            reasoning
            and budget is not None
            and reasoning + answer_tokens > budget
            and finish_reason == "stop"
            and content
        ):
            keep = max(0, (budget - reasoning) * 4)
            content, finish_reason = content[:keep], "length"
            reasoning = min(reasoning, budget)
        completion_tokens = reasoning + answer_tokens
        if finish_reason == "length":
            completion_tokens = budget or completion_tokens
        if url == RESPONSES_ENDPOINT:
            return self._response_object(
                body, content, refusal, finish_reason, prompt_tokens, completion_tokens, reasoning
            )
        message = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": _now(),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_emulator",
        }

    @staticmethod
    def _response_object(
        body: dict,
        content: str | None,
        refusal: str | None,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        reasoning: int,
    ) -> dict:
        """A Responses API response object (openai-python types/responses/response.py)."""
        part = (
            {"type": "refusal", "refusal": refusal}
            if refusal is not None
            else {"type": "output_text", "text": content or "", "annotations": [], "logprobs": []}
        )
        output = [
            {
                "id": _new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "status": "completed" if finish_reason == "stop" else "incomplete",
                "content": [part],
            }
        ]
        if reasoning:
            output.insert(0, {"id": _new_id("rs_"), "type": "reasoning", "summary": []})
        incomplete = finish_reason == "length"
        return {
            "id": _new_id("resp_"),
            "object": "response",
            "created_at": _now(),
            "model": body.get("model"),
            "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "error": None,
            "output": output,
            "text": body.get("text"),
            "reasoning": body.get("reasoning"),
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # -- lookups

    def _get_file(self, file_id: str) -> _File:
        if file_id not in self.files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    def _get_batch(self, batch_id: str) -> _Batch:
        if batch_id not in self.batches:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return self.batches[batch_id]


def _output_line(custom_id: str, response: dict | None, error: dict | None) -> dict:
    return {"id": _new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": error}


def _http_error(status: int, message: str) -> dict:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {
        "status_code": status,
        "request_id": _new_id("req_"),
        "body": {"error": {"message": message, "type": kind, "param": None, "code": None}},
    }


# ---------------------------------------------------------------- HTTP

ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/files"), "POST /v1/files"),
    ("GET", re.compile(r"/v1/files"), "GET /v1/files"),
    ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)"), "GET /v1/files/{id}"),
    ("DELETE", re.compile(r"/v1/files/(?P<id>[^/]+)"), "DELETE /v1/files/{id}"),
    ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)/content"), "GET /v1/files/{id}/content"),
    ("POST", re.compile(r"/v1/batches"), "POST /v1/batches"),
    ("GET", re.compile(r"/v1/batches"), "GET /v1/batches"),
    ("GET", re.compile(r"/v1/batches/(?P<id>[^/]+)"), "GET /v1/batches/{id}"),
    ("POST", re.compile(r"/v1/batches/(?P<id>[^/]+)/cancel"), "POST /v1/batches/{id}/cancel"),
]
FAULT_MESSAGES = {
    429: ("Rate limit reached for requests. Please try again shortly.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
}


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the emulator; keep-alive HTTP/1.1 so the SDK's connection pool works."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle would add 40 ms to each call
    emulator: BatchEmulator

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        path = url.path.rstrip("/")
        route, match = _route(method, path)
        behaviour = self.emulator.behaviour
        stall = behaviour.delays.get(route or "")
        if stall:
            time.sleep(stall.pop(0))  # outside the lock: other calls go on while this one hangs
        # Serialise under the lock too: a concurrent poll must not step a batch while it is being written out.
        with self.emulator._lock:
            try:
                status, payload, headers = self._dispatch(method, path, route, match, parse_qs(url.query), body)
            except ApiError as exc:
                status, payload, headers = exc.status, exc.body, {}
            except Exception as exc:  # an emulator bug must reach the test as a 500, not a dropped connection
                error = {"message": f"emulator error: {exc!r}", "type": "server_error", "param": None, "code": None}
                status, payload, headers = 500, {"error": error}, {"x-should-retry": "false"}
            if status == 0:  # a planned connection reset: no answer at all
                self.close_connection = True
                return
            if isinstance(payload, bytes):
                data, content_type = payload, "application/octet-stream"
            else:
                data, content_type = json.dumps(payload).encode("utf-8"), "application/json"
        hook = behaviour.hooks.get(route or "")
        if hook is not None and status == 200 and isinstance(payload, dict):
            try:
                hook(json.loads(data))
            except DropConnection:
                self.close_connection = True
                return
        self._send(status, data, content_type, headers)

    def _dispatch(
        self,
        method: str,
        path: str,
        route: str | None,
        match: re.Match[str] | None,
        query: dict[str, list[str]],
        body: bytes,
    ) -> tuple[int, Any, dict]:
        """(status, payload, extra headers) of one request; the caller holds the emulator lock."""
        emu = self.emulator
        if route is None or match is None:
            raise ApiError(404, f"Invalid URL ({method} {path})")
        emu.calls[route] += 1
        presented = self.headers.get("Authorization", "")
        if presented != f"Bearer {emu.api_key}":
            echo = f": {presented.removeprefix('Bearer ')}" if emu.behaviour.echo_key_in_errors else ""
            raise ApiError(401, f"Incorrect API key provided{echo}.", code="invalid_api_key")
        planned = emu.behaviour.faults.get(route)
        if planned:
            status = planned.pop(0)
            if status == 0:
                return 0, b"", {}
            message, kind, code = FAULT_MESSAGES.get(status, (f"Emulated HTTP {status}.", "server_error", None))
            error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
            return status, error, {"retry-after-ms": "10"}  # keeps the SDK's own retries fast in tests
        file_or_batch_id = match.groupdict().get("id", "")
        if route == "POST /v1/files":
            filename, purpose, data = _parse_upload(self.headers.get("Content-Type", ""), body)
            return 200, emu.upload_file(filename, purpose, data), {}
        if route == "GET /v1/files":
            limit = query.get("limit", ["10000"])[0]
            if not limit.isdigit():
                raise ApiError(400, f"limit must be an integer, got {limit!r}.", param="limit")
            purpose, after = query.get("purpose", [None])[0], query.get("after", [None])[0]
            return 200, emu.list_files(purpose, after, int(limit), query.get("order", ["desc"])[0]), {}
        if route == "GET /v1/files/{id}":
            return 200, emu.retrieve_file(file_or_batch_id), {}
        if route == "DELETE /v1/files/{id}":
            return 200, emu.delete_file(file_or_batch_id), {}
        if route == "GET /v1/files/{id}/content":
            return 200, emu.file_bytes(file_or_batch_id), {}
        if route == "POST /v1/batches":
            return 200, emu.create_batch(_parse_json(body)), {}
        if route == "GET /v1/batches":
            limit = query.get("limit", ["20"])[0]
            if not limit.isdigit():
                raise ApiError(400, f"limit must be an integer, got {limit!r}.", param="limit")
            return 200, emu.list_batches(query.get("after", [None])[0], int(limit)), {}
        if route == "GET /v1/batches/{id}":
            return 200, emu.retrieve_batch(file_or_batch_id), {}
        return 200, emu.cancel_batch(file_or_batch_id), {}

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", _new_id("req_"))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client died (a test killed it): nothing to answer
            self.close_connection = True


def _route(method: str, path: str) -> tuple[str | None, re.Match[str] | None]:
    for route_method, pattern, route in ROUTES:
        match = pattern.fullmatch(path)
        if route_method == method and match:
            return route, match
    return None, None


def _parse_json(body: bytes) -> dict:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(params, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return params


def _parse_upload(content_type: str, body: bytes) -> tuple[str, str, bytes]:
    """(filename, purpose, bytes) of a multipart/form-data file upload."""
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, "File uploads must be multipart/form-data.")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    if "file" not in fields or "purpose" not in fields:
        raise ApiError(400, "Missing required parameter: 'file' and 'purpose' are both required.")
    filename, data = fields["file"]
    return filename or "upload.jsonl", fields["purpose"][1].decode("utf-8"), data
