"""Talking to an OpenAI-compatible chat server before and around a run: where it is, how many
slots it has, whether it is up, and a warm-up request so a cold model loads before the first
document's clock starts.

llama.cpp's server has `/health` (503 while the model loads), `/props` (total_slots) and `/slots`;
vLLM has `/health`; Ollama has neither and counts as up when it answers at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from extractor.errors import BadInput, ServiceUnavailable

NO_KEY = "sk-no-key-required"  # the SDK insists on a key; llama.cpp and vLLM ignore it unless started with one
HEALTH_POLL_S = 0.5
WARMUP_PROMPT = "Say OK."


def api_urls(base_url: str) -> tuple[str, str]:
    """(server root, OpenAI base URL ending in /v1) for a URL given with or without /v1."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"--local-url {base_url!r} is not an http(s) URL; e.g. http://127.0.0.1:8080")
    root = url[: -len("/v1")] if url.endswith("/v1") else url
    return root, f"{root}/v1"


def server_slots(base_url: str, timeout_s: float = 5.0) -> int | None:
    """Parallel slots of a llama.cpp server (`/props` total_slots, else `/slots`); None for servers without them."""
    root, _ = api_urls(base_url)
    try:
        with httpx.Client(timeout=timeout_s) as http:
            props = http.get(f"{root}/props")
            if props.status_code == 200:
                total = props.json().get("total_slots")
                if isinstance(total, int) and total > 0:
                    return total
            slots = http.get(f"{root}/slots")
            if slots.status_code == 200 and isinstance(slots.json(), list) and slots.json():
                return len(slots.json())
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return None


def check_health(base_url: str, timeout_s: float, *, model: str | None = None, api_key: str | None = None) -> None:
    """Wait (up to timeout_s) until the server answers, then warm it up with one tiny chat request."""
    root, v1 = api_urls(base_url)
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {api_key or NO_KEY}"}
    with httpx.Client(headers=headers, timeout=max(1.0, timeout_s)) as http:
        detail = _wait_until_up(http, root, deadline)
        if detail:
            raise ServiceUnavailable(
                f"no chat server answering at {base_url} after {timeout_s:g}s ({detail}); "
                "start it, or check --local-url"
            )
        # A cold model can take tens of seconds to load; pay that here, not in the first documents' latency.
        probe = {
            "model": model or _first_model(http, v1) or "default",
            "messages": [{"role": "user", "content": WARMUP_PROMPT}],
            "max_tokens": 1,
            "temperature": 0,
        }
        while True:
            remaining = deadline - time.monotonic()
            try:
                answer = http.post(f"{v1}/chat/completions", json=probe, timeout=max(5.0, remaining))
            except httpx.HTTPError as exc:
                answer, detail = None, describe_error(exc)
            if answer is not None:
                if answer.status_code == 200:
                    return
                detail = f"HTTP {answer.status_code}: {_error_message(answer)}"
                if 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                    raise BadInput(
                        f"{v1}/chat/completions rejected a test request for model {probe['model']!r} ({detail})"
                    )
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"the chat server at {base_url} did not answer a test request within {timeout_s:g}s ({detail})"
                )
            time.sleep(HEALTH_POLL_S)


def _wait_until_up(http: httpx.Client, root: str, deadline: float) -> str:
    """Poll /health until the server is up; returns '' when up, else what was last seen."""
    while True:
        detail = _health_state(http.get, root)
        if not detail:
            return ""
        if time.monotonic() >= deadline:
            return detail
        time.sleep(HEALTH_POLL_S)


def _health_state(get: Callable[..., httpx.Response], root: str) -> str:
    try:
        answer = get(f"{root}/health", timeout=5.0)
    except httpx.HTTPError as exc:
        return describe_error(exc)
    return health_verdict(answer)


def health_verdict(answer: httpx.Response) -> str:
    """'' when /health says the server can take requests, else why not."""
    # 503 is llama.cpp still loading its model; 404 is a server without /health (Ollama), which is up.
    if answer.status_code == 503:
        return "the server is still loading its model"
    return "" if answer.status_code < 500 else f"/health said HTTP {answer.status_code}"


def _first_model(http: httpx.Client, v1: str) -> str | None:
    try:
        data = http.get(f"{v1}/models", timeout=5.0).json().get("data") or []
        return data[0]["id"] if data else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None


def describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _error_message(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error or answer.text)[:300]
    except ValueError:
        return answer.text[:300]


async def slots_of(http: httpx.AsyncClient, root: str, timeout_s: float = 5.0) -> int | None:
    """server_slots for the lane's event loop: a llama.cpp server's parallel slots, None for servers without them."""
    try:
        props = await http.get(f"{root}/props", timeout=timeout_s)
        if props.status_code == 200 and isinstance(props.json(), dict):
            total = props.json().get("total_slots")
            if isinstance(total, int) and total > 0:
                return total
        slots = await http.get(f"{root}/slots", timeout=timeout_s)
        if slots.status_code == 200 and isinstance(slots.json(), list) and slots.json():
            return len(slots.json())
    except (httpx.HTTPError, ValueError):
        pass
    return None
