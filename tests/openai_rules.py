"""What the real OpenAI API refuses in a request body, per model, written out for the emulator.

Deliberately independent of extractor/prepare/models.py and extractor/spec/strict_mode.py: a counterpart that imported
the code under test would agree with every mistake in it. Each rule cites its source; the error shapes
(status, type, code, param, message) are the ones users report from the real API.
"""

from __future__ import annotations

import re
from typing import Any

# Shut down 2026-10-23 (developers.openai.com/api/docs/deprecations; dev.to "Every OpenAI model shutdown
# date until January 2027"): a request for one answers 404 model_not_found.
SHUT_DOWN = (
    "gpt-3.5-turbo",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-4.1-nano",
    "o1",
    "o1-pro",
    "o3-mini",
    "o4-mini",
    "gpt-4o-2024-05-13",
)
# Reasoning effort values per family (openai-python ReasoningEffort docstring: "gpt-5.1 ... none, low,
# medium, and high"; "All models before gpt-5.1 default to medium ... and do not support none";
# "gpt-5-pro ... only supports high"; "xhigh is supported for all models after gpt-5.1-codex-max").
EFFORTS: dict[str, tuple[tuple[str, ...], str]] = {
    "gpt-5": (("minimal", "low", "medium", "high"), "medium"),
    "gpt-5-mini": (("minimal", "low", "medium", "high"), "medium"),
    "gpt-5-nano": (("minimal", "low", "medium", "high"), "medium"),
    "gpt-5-pro": (("high",), "high"),
    "gpt-5.1": (("none", "low", "medium", "high"), "none"),
    "gpt-5.2": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.4": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.4-mini": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.4-nano": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.4-pro": (("medium", "high", "xhigh"), "high"),
    "gpt-5.5": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.5-pro": (("high", "xhigh"), "high"),
    "gpt-5.6-sol": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.6-terra": (("none", "low", "medium", "high", "xhigh"), "none"),
    "gpt-5.6-luna": (("none", "low", "medium", "high", "xhigh"), "none"),
    "o3": (("low", "medium", "high"), "medium"),
}
# Families that take temperature only at the default 1, whatever the effort: 400 unsupported_value
# "'temperature' does not support 0 with this model. Only the default (1) value is supported."
# (gpt-5-mini: QwenLM/qwen-code#921; gpt-5: tmc/langchaingo#1355; o-series: OpenHands#4131).
DEFAULT_TEMPERATURE_ONLY = ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-pro", "gpt-5.4-pro", "gpt-5.5-pro", "o3")
# -pro models: "This model is only supported in v1/responses and not in v1/chat/completions."
RESPONSES_ONLY = ("gpt-5-pro", "gpt-5.4-pro", "gpt-5.5-pro")
# Reasoning tokens the emulated model spends per effort (billed as output, counted in the answer budget).
REASONING_TOKENS = {"none": 0, "minimal": 8, "low": 48, "medium": 160, "high": 640, "xhigh": 1280}
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_LOOKAROUND = re.compile(r"\(\?(?:=|!|<=|<!)")
_BACKREFERENCE = re.compile(r"\\[1-9]|\\k<")


class Refused(Exception):
    """A request the real API answers with an HTTP error: (status, error object)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": kind, "param": param, "code": code}


def family(model: str) -> str | None:
    name = _SNAPSHOT.sub("", model.lower())
    if name in EFFORTS or name in SHUT_DOWN:
        return name
    best = max((f for f in EFFORTS if name.startswith(f + "-")), key=len, default=None)
    return best


def effort_of(body: dict[str, Any], url: str) -> str | None:
    """The reasoning effort a request runs at: as sent, else the family's default (None: not a reasoning model)."""
    fam = family(str(body.get("model", "")))
    if fam not in EFFORTS:
        return None
    sent = (body.get("reasoning") or {}).get("effort") if url.endswith("/responses") else body.get("reasoning_effort")
    return sent or EFFORTS[fam][1]


def check_request(url: str, body: dict[str, Any]) -> None:
    """Raise Refused for what the real API refuses in this body; return for what it accepts."""
    model = str(body.get("model", ""))
    name = _SNAPSHOT.sub("", model.lower()) if model.lower() not in SHUT_DOWN else model.lower()
    if model.lower() in SHUT_DOWN or name in SHUT_DOWN:
        raise Refused(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    fam = family(model)
    responses = url.endswith("/responses")
    if fam in RESPONSES_ONLY and not responses:
        raise Refused(
            404,
            "This model is only supported in v1/responses and not in v1/chat/completions.",
            code=None,
            param="model",
        )
    effort_sent = (body.get("reasoning") or {}).get("effort") if responses else body.get("reasoning_effort")
    effort_param = "reasoning.effort" if responses else "reasoning_effort"
    if fam in EFFORTS:
        allowed, default = EFFORTS[fam]
        # max_tokens: "Unsupported parameter: 'max_tokens' is not supported with this model. Use
        # 'max_completion_tokens' instead." (o1 onwards; reported for gpt-5 e.g. in langchain issues)
        if not responses and "max_tokens" in body:
            raise Refused(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                "'max_completion_tokens' instead.",
                code="unsupported_parameter",
                param="max_tokens",
            )
        if effort_sent is not None and effort_sent not in allowed:
            quoted = ", ".join(f"'{v}'" for v in allowed)
            raise Refused(
                400,
                f"Unsupported value: '{effort_param}' does not support '{effort_sent}' with this model."
                f" Supported values are: {quoted}.",
                code="unsupported_value",
                param=effort_param,
            )
        effort = effort_sent or default
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1 and (fam in DEFAULT_TEMPERATURE_ONLY or effort != "none"):
            # gpt-5.1+ take sampling parameters only at reasoning effort none (johny-b/llmcomp#69: gpt-5.4)
            shown = int(temperature) if float(temperature).is_integer() else temperature
            raise Refused(
                400,
                f"Unsupported value: 'temperature' does not support {shown} with this model. Only the"
                " default (1) value is supported.",
                code="unsupported_value",
                param="temperature",
            )
        if "top_p" in body and (fam in DEFAULT_TEMPERATURE_ONLY or effort != "none"):
            raise Refused(
                400,
                "Unsupported parameter: 'top_p' is not supported with this model.",
                code="unsupported_parameter",
                param="top_p",
            )
    elif fam is None:  # a non-reasoning model (gpt-4.1, gpt-4o …)
        if effort_sent is not None:
            raise Refused(
                400,
                f"Unsupported parameter: '{effort_param}' is not supported with this model.",
                code="unsupported_parameter",
                param=effort_param,
            )
        verbosity = (body.get("text") or {}).get("verbosity") if responses else body.get("verbosity")
        if verbosity is not None:  # verbosity came with gpt-5
            raise Refused(
                400,
                "Unsupported parameter: 'verbosity' is not supported with this model.",
                code="unsupported_parameter",
                param="text.verbosity" if responses else "verbosity",
            )
    if responses:
        for key in ("messages", "response_format", "max_completion_tokens", "seed"):
            if key in body:  # the Responses API has input, text.format and max_output_tokens instead
                raise Refused(400, f"Unsupported parameter: '{key}'.", code="unknown_parameter", param=key)
        fmt = (body.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            _check_strict(fmt.get("schema"), fmt.get("name", ""), "text.format.schema", fmt.get("strict"))
    else:
        if "input" in body or "max_output_tokens" in body:
            key = "input" if "input" in body else "max_output_tokens"
            raise Refused(400, f"Unrecognized request argument supplied: {key}", param=key)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            _check_strict(spec.get("schema"), spec.get("name", ""), "response_format", spec.get("strict"))


def _check_strict(schema: Any, name: str, param: str, strict: Any) -> None:
    """Structured Outputs strict mode, the rules this project's specs can meet (Structured Outputs guide,
    "Supported schemas"; messages as the API words them)."""
    if strict is not True:
        return

    def refuse(context: str, why: str) -> None:
        raise Refused(
            400,
            f"Invalid schema for response_format '{name}': In context=({context}), {why}.",
            code="invalid_json_schema",
            param=param,
        )

    def walk(node: Any, context: str, depth: int) -> None:
        if not isinstance(node, dict) or depth > 60:
            return
        if "$ref" in node and len(node) > 1:
            # "$ref cannot have keywords {'description'}" (reported against strict mode)
            others = sorted(set(node) - {"$ref"})
            refuse(context, f"$ref cannot have keywords {{{', '.join(repr(k) for k in others)}}}")
        for word in ("allOf", "oneOf", "not", "if", "patternProperties"):
            if word in node:
                refuse(context, f"'{word}' is not permitted")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            if _LOOKAROUND.search(pattern):
                refuse(context, "regex lookaround is not supported")
            if _BACKREFERENCE.search(pattern):
                refuse(context, "regex backreferences are not supported")
        types = node.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        if is_object:
            if node.get("additionalProperties") is not False:
                refuse(context, "'additionalProperties' is required to be supplied and to be false")
            props = node.get("properties") or {}
            missing = [k for k in props if k not in (node.get("required") or [])]
            if missing:
                refuse(
                    context,
                    "'required' is required to be supplied and to be an array including every key in"
                    f" properties. Missing '{missing[0]}'",
                )
            for key, sub in props.items():
                walk(sub, f"{context}, 'properties', '{key}'", depth + 1)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{context}, 'items'", depth + 1)
        for i, sub in enumerate(node.get("anyOf") or []):
            walk(sub, f"{context}, 'anyOf', '{i}'", depth + 1)
        for key in ("$defs", "definitions"):
            for sub_name, sub in (node.get(key) or {}).items():
                walk(sub, f"{context}, '{key}', '{sub_name}'", depth + 1)

    walk(schema, "", 0)


def input_tokens(url: str, body: dict[str, Any]) -> int:
    """The emulator's count of a request's input tokens (4 characters a token, 4 per message)."""
    messages = body.get("input") if url.endswith("/responses") else body.get("messages")
    return sum(len(str(m.get("content", ""))) // 4 + 4 for m in messages or [] if isinstance(m, dict))
