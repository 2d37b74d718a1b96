"""What each OpenAI model family accepts: one table, each rule next to its source, and the request settings built from
it.

`prepare` builds every request line from `request_params`, so a setting a model refuses is refused here,
with one line naming the model, the setting and the fix, and is never sent. The emulator in
tests/openai_emulator.py enforces the same rules on its side, from the same sources, written out again
(a counterpart that imported this table would agree with every mistake in it).

Sources, cited by key in the table:
  [effort-doc]   openai-python `ReasoningEffort` / OpenAPI spec: "gpt-5.1 defaults to none ... supported values
                 for gpt-5.1 are none, low, medium, and high"; "All models before gpt-5.1 default to medium
                 reasoning effort, and do not support none"; "The gpt-5-pro model defaults to (and only
                 supports) high"; "xhigh is supported for all models after gpt-5.1-codex-max".
  [temp-400]     400 unsupported_value "'temperature' does not support 0 with this model. Only the default (1)
                 value is supported" — gpt-5/gpt-5-mini (QwenLM/qwen-code#921, tmc/langchaingo#1355), o1/o3
                 (OpenHands#4131, BeehiveInnovations/pal-mcp-server#78), gpt-5.4 with reasoning on
                 (johny-b/llmcomp#69). gpt-5.1+ take temperature only while reasoning effort is none
                 (OpenAI GPT-5.1 guide: sampling parameters only with reasoning none).
  [max-tokens]   o-series and gpt-5 refuse `max_tokens` ("Unsupported parameter: 'max_tokens' ... Use
                 'max_completion_tokens' instead"); chat completions documents max_tokens as deprecated in
                 favour of max_completion_tokens, which "includes visible output tokens and reasoning tokens".
  [verbosity]    Chat Completions `verbosity` (low/medium/high), introduced with gpt-5; Responses `text.verbosity`.
  [responses]    gpt-5-pro, gpt-5.4-pro, gpt-5.5-pro answer only on /v1/responses (model pages: "Available in
                 the Responses API only"); the Batch API takes /v1/responses as an endpoint.
  [deprecations] developers.openai.com/api/docs/deprecations: gpt-3.5-turbo, gpt-4, gpt-4-turbo, gpt-4.1-nano,
                 o1, o1-pro, o3-mini, o4-mini shut down 2026-10-23; gpt-5, gpt-5-mini, gpt-5-nano, o3 on
                 2026-12-11; gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.1-mini on 2027-01-14.
  [queue]        Batch queue limit (enqueued input tokens per model): 2,000,000 for gpt-4o-mini at tier 1
                 (openai-python#2084: "Limit: 2,000,000 enqueued tokens"), 90,000 for gpt-4o at tier 1
                 (OpenAI community rate-limit table). Higher tiers have more; set --max-enqueued-tokens or
                 EXTRACTOR_MAX_ENQUEUED_TOKENS to your organisation's figure (Settings → Limits).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extractor.errors import BadInput

CHAT = "chat"
RESPONSES = "responses"
ENDPOINTS = (CHAT, RESPONSES)
ENDPOINT_URLS = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses"}
ENQUEUED_ENV = "EXTRACTOR_MAX_ENQUEUED_TOKENS"
TIER1_QUEUE = 2_000_000  # [queue]
VERBOSITY = ("low", "medium", "high")  # [verbosity]

# How a family treats temperature (and top_p): "any" — sampling parameters accepted; "no_reasoning" — only
# while reasoning effort is none; "default_only" — only the default 1 (so we never send it). [temp-400]
ANY, NO_REASONING, DEFAULT_ONLY = "any", "no_reasoning", "default_only"


@dataclass(frozen=True)
class ModelProfile:
    family: str
    efforts: tuple[str, ...] = ()  # empty: not a reasoning model, reasoning_effort is refused
    default_effort: str | None = None
    temperature: str = ANY
    seed: bool = False  # seed is sent only where documented for the family (non-reasoning chat models)
    verbosity: bool = False
    endpoints: tuple[str, ...] = ENDPOINTS
    enqueued_tokens: int = TIER1_QUEUE
    shutdown: str | None = None  # YYYY-MM-DD [deprecations]
    successor: str | None = None

    @property
    def reasoning(self) -> bool:
        return bool(self.efforts)

    @property
    def lowest_effort(self) -> str | None:
        return self.efforts[0] if self.efforts else None


_GPT5 = ("minimal", "low", "medium", "high")  # [effort-doc] gpt-5 family: no "none", default medium
_GPT51 = ("none", "low", "medium", "high")  # [effort-doc] gpt-5.1
_GPT52 = ("none", "low", "medium", "high", "xhigh")  # [effort-doc] xhigh after gpt-5.1-codex-max
_O_SERIES = ("low", "medium", "high")  # [effort-doc] o1/o3/o4-mini


def _gpt5(family: str, **kw: Any) -> ModelProfile:
    return ModelProfile(family, efforts=_GPT5, default_effort="medium", temperature=DEFAULT_ONLY, verbosity=True, **kw)


def _gpt5x(family: str, efforts: tuple[str, ...] = _GPT52, **kw: Any) -> ModelProfile:
    return ModelProfile(family, efforts=efforts, default_effort="none", temperature=NO_REASONING, verbosity=True, **kw)


def _o(family: str, **kw: Any) -> ModelProfile:
    return ModelProfile(family, efforts=_O_SERIES, default_effort="medium", temperature=DEFAULT_ONLY, **kw)


def _legacy(family: str, **kw: Any) -> ModelProfile:
    return ModelProfile(family, temperature=ANY, seed=True, **kw)


# Longest family prefix wins ("gpt-5.4-mini" before "gpt-5.4" before "gpt-5").
PROFILES: dict[str, ModelProfile] = {
    p.family: p
    for p in (
        # GPT-5.6 tiers and GPT-5.5: none..xhigh, default none [effort-doc]
        _gpt5x("gpt-5.6-sol"),
        _gpt5x("gpt-5.6-terra"),
        _gpt5x("gpt-5.6-luna"),
        _gpt5x("gpt-5.5"),
        ModelProfile(
            "gpt-5.5-pro",
            efforts=("high", "xhigh"),
            default_effort="high",
            temperature=DEFAULT_ONLY,
            endpoints=(RESPONSES,),
        ),  # [responses]
        _gpt5x("gpt-5.4"),
        _gpt5x("gpt-5.4-mini"),
        _gpt5x("gpt-5.4-nano"),
        # gpt-5.4-pro model page: "available in the Responses API only", "supports reasoning.effort: medium,
        # high, xhigh", batch queue limit 90,000 at tier 1.
        ModelProfile(
            "gpt-5.4-pro",
            efforts=("medium", "high", "xhigh"),
            default_effort="high",
            temperature=DEFAULT_ONLY,
            endpoints=(RESPONSES,),
            enqueued_tokens=90_000,
        ),
        _gpt5x("gpt-5.2"),
        _gpt5x("gpt-5.1", efforts=_GPT51),
        # GPT-5 (August 2025): minimal..high, default medium, temperature only 1 [effort-doc] [temp-400]
        _gpt5("gpt-5", shutdown="2026-12-11", successor="gpt-6.1-sol"),
        _gpt5("gpt-5-mini", shutdown="2026-12-11", successor="gpt-6.1-terra"),
        _gpt5("gpt-5-nano", shutdown="2026-12-11", successor="gpt-6.1-terra"),
        ModelProfile(
            "gpt-5-pro",
            efforts=("high",),
            default_effort="high",
            temperature=DEFAULT_ONLY,
            endpoints=(RESPONSES,),
            shutdown="2026-12-11",
            successor="gpt-5.5-pro",
        ),
        _o("o3", shutdown="2026-12-11", successor="gpt-5.6-sol"),
        _o("o4-mini", shutdown="2026-10-23", successor="gpt-5.6-terra"),
        _o("o3-mini", shutdown="2026-10-23", successor="gpt-5.6-sol"),
        _o("o1", shutdown="2026-10-23", successor="gpt-5.6-sol"),
        _o("o1-pro", shutdown="2026-10-23", successor="gpt-5.6-sol"),
        _legacy("gpt-4.1", shutdown="2027-01-14", successor="gpt-6-luna"),
        _legacy("gpt-4.1-mini", shutdown="2027-01-14", successor="gpt-6-luna"),
        _legacy("gpt-4.1-nano", shutdown="2026-10-23", successor="gpt-5.6-luna"),
        _legacy("gpt-4o", enqueued_tokens=90_000, shutdown="2027-01-14", successor="gpt-6-luna"),  # [queue]
        _legacy("gpt-4o-mini", shutdown="2027-01-14", successor="gpt-6-luna"),
        _legacy("gpt-4-turbo", shutdown="2026-10-23", successor="gpt-5.6-sol"),
        _legacy("gpt-4", shutdown="2026-10-23", successor="gpt-5.6-sol"),
        _legacy("gpt-3.5-turbo", shutdown="2026-10-23", successor="gpt-5.6-terra"),
    )
}
# Snapshots that shut down before their family: gpt-4o-2024-05-13 on 2026-10-23 [deprecations].
SNAPSHOT_SHUTDOWN = {"gpt-4o-2024-05-13": ("2026-10-23", "gpt-5.6-sol")}
# An unknown model (a new release, a fine-tune) is treated as a current reasoning model that may refuse
# sampling parameters: nothing optional is sent, so nothing can be refused.
UNKNOWN = ModelProfile("unknown", temperature=DEFAULT_ONLY)
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def base_name(model: str) -> str:
    name = model.strip().lower()
    if name.startswith("openai/"):
        name = name[len("openai/") :]
    if name.startswith("ft:"):  # ft:gpt-4.1-mini-2025-04-14:org::id → its base model
        name = name[3:].split(":", 1)[0]
    return name


def profile_for(model: str) -> ModelProfile:
    """The family profile of a model name, dated snapshots included; UNKNOWN when no family matches."""
    name = _SNAPSHOT.sub("", base_name(model))
    if name in PROFILES:
        return PROFILES[name]
    best = max((f for f in PROFILES if name.startswith(f + "-")), key=len, default=None)
    return PROFILES[best] if best else UNKNOWN


def retirement(model: str) -> tuple[str, str | None] | None:
    """(shutdown date, successor) when the model has a shutdown date announced, else None."""
    name = base_name(model)
    if name in SNAPSHOT_SHUTDOWN:
        return SNAPSHOT_SHUTDOWN[name]
    profile = profile_for(model)
    return (profile.shutdown, profile.successor) if profile.shutdown else None


def check_available(model: str, today: dt.date | None = None) -> str | None:
    """Raise BadInput for a model already shut down; a warning line for one with a shutdown date ahead."""
    found = retirement(model)
    if found is None:
        return None
    date, successor = found
    today = today or dt.datetime.now(dt.UTC).date()
    instead = f" — use {successor} (--model {successor})" if successor else ""
    if dt.date.fromisoformat(date) <= today:
        raise BadInput(f"model {model} was shut down on {date} (OpenAI deprecations page){instead}")
    return f"model {model} shuts down on {date} (OpenAI deprecations page){instead.replace(' — ', '; ')}"


def enqueued_limit(model: str, override: int | None = None) -> int:
    """The enqueued-token budget of a model: the flag, else EXTRACTOR_MAX_ENQUEUED_TOKENS, else the profile's
    default.
    """
    if override is not None:
        if override < 1:
            raise BadInput(f"--max-enqueued-tokens must be at least 1, not {override}")
        return override
    raw = os.environ.get(ENQUEUED_ENV, "").strip()
    if raw:
        try:
            value = int(raw.replace("_", "").replace(",", ""))
        except ValueError:
            raise BadInput(f"{ENQUEUED_ENV}={raw!r} is not a whole number of tokens — set it like 2000000") from None
        if value < 1:
            raise BadInput(f"{ENQUEUED_ENV} must be at least 1")
        return value
    return profile_for(model).enqueued_tokens


@dataclass(frozen=True)
class RequestSettings:
    """What the user asked for; None leaves the choice to the profile."""

    max_tokens: int
    reasoning_effort: str | None = None
    verbosity: str | None = None
    temperature: float | None = None
    seed: int | None = None


def resolve(model: str, endpoint: str, asked: RequestSettings) -> dict[str, Any]:
    """The settings a request line of this model carries, each checked against its profile.

    The default reasoning effort is the lowest the model allows (extraction needs no deliberation, and
    reasoning tokens are billed as output and spent from the same max_completion_tokens budget). Temperature
    0 and seed 0 are sent where the model takes them, for repeatable answers; nowhere else.
    """
    profile = profile_for(model)
    if endpoint not in ENDPOINTS:
        raise BadInput(f"unknown endpoint {endpoint!r} — use chat or responses")
    if endpoint not in profile.endpoints:
        raise BadInput(f"model {model} answers only on /v1/responses — pass --endpoint responses")
    effort = asked.reasoning_effort
    if effort is not None and not profile.reasoning:
        if profile is UNKNOWN:
            pass  # a model we do not know: send what was asked for, the user knows it
        else:
            raise BadInput(
                f"model {model} is not a reasoning model and refuses reasoning_effort — drop --reasoning-effort"
            )
    elif effort is not None and effort not in profile.efforts:
        raise BadInput(
            f"model {model} does not take reasoning_effort {effort!r} — use one of {', '.join(profile.efforts)}"
        )
    if effort is None:
        effort = profile.lowest_effort
    verbosity = asked.verbosity
    if verbosity is not None:
        if verbosity not in VERBOSITY:
            raise BadInput(f"--verbosity must be one of {', '.join(VERBOSITY)}, not {verbosity!r}")
        if not profile.verbosity and profile is not UNKNOWN:
            raise BadInput(f"model {model} does not take verbosity (gpt-5 and later do) — drop --verbosity")
    sampling_ok = profile.temperature == ANY or (profile.temperature == NO_REASONING and effort == "none")
    temperature = asked.temperature
    if temperature is not None and not sampling_ok and temperature != 1:
        why = (
            "only while reasoning effort is none — pass --reasoning-effort none or drop the temperature"
            if profile.temperature == NO_REASONING
            else "only the default 1 — drop the temperature setting"
        )
        raise BadInput(f"model {model} at reasoning effort {effort} refuses temperature {temperature}: it takes {why}")
    if temperature is None and sampling_ok:
        temperature = 0.0
    if not sampling_ok:
        temperature = None  # the default 1 is never sent: some models refuse the parameter itself
    seed = asked.seed if asked.seed is not None else 0
    if asked.seed is not None and not profile.seed and profile is not UNKNOWN:
        raise BadInput(f"model {model} does not document seed — drop the seed setting")
    return {
        "endpoint": endpoint,
        "max_tokens": asked.max_tokens,
        "reasoning_effort": effort,
        "verbosity": verbosity,
        "temperature": temperature,
        "seed": seed if profile.seed else None,
    }


def body_params(settings: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    """The request-body fields of resolved settings, in the shape of the endpoint."""
    out: dict[str, Any] = {}
    if endpoint == RESPONSES:
        if settings.get("temperature") is not None:
            out["temperature"] = settings["temperature"]
        out["max_output_tokens"] = settings["max_tokens"]
        if settings.get("reasoning_effort"):
            out["reasoning"] = {"effort": settings["reasoning_effort"]}
        return out
    if settings.get("temperature") is not None:
        out["temperature"] = settings["temperature"]
    if settings.get("seed") is not None:
        out["seed"] = settings["seed"]
    if settings.get("reasoning_effort"):
        out["reasoning_effort"] = settings["reasoning_effort"]
    if settings.get("verbosity"):
        out["verbosity"] = settings["verbosity"]
    out["max_completion_tokens"] = settings["max_tokens"]
    return out
