"""The Files and Batches calls of the OpenAI lane: key from the environment, transient errors retried, failures mapped
to exit codes.

Every call goes through `BatchApi.call`: 429, 408, 409, 5xx, timeouts and dropped connections are retried
with exponential backoff and full jitter (a `retry-after` header is honoured); what is left after
API_ATTEMPTS tries is ServiceUnavailable (exit 4). A rejected key is BadInput (exit 2) naming
OPENAI_API_KEY. The key itself is scrubbed from every message this module writes or raises.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai
from openai import OpenAI

from extractor.errors import BadInput, ServiceUnavailable
from extractor.storage import atomic_file

KEY_ENV = "OPENAI_API_KEY"
URL_ENV = "OPENAI_BASE_URL"
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
API_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
REQUEST_TIMEOUT_S = 120.0
LIST_PAGE = 100
CHUNK_BYTES = 1 << 20
TRANSIENT_STATUS = frozenset({408, 409, 429})

T = TypeVar("T")
Log = Callable[..., None]


class NotFound(BadInput):
    """The API does not know an id (a file expired, or a key for another project)."""


class BatchApi:
    """The handful of Files/Batches calls the lane makes, each retried when the failure is transient."""

    def __init__(self, client: OpenAI, secret: str, log: Log | None = None):
        self.client = client
        self._secret = secret
        self._log = log or (lambda *args, **kwargs: None)

    @classmethod
    def from_env(cls, log: Log | None = None, timeout_s: float | None = None) -> BatchApi:
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise BadInput(
                f"No OpenAI API key — set {KEY_ENV} (and {URL_ENV} for another endpoint), or pass --backend local"
            )
        # The SDK's own retries are off: this class retries, logs each retry and decides when to give up.
        client = OpenAI(
            api_key=key, base_url=os.environ.get(URL_ENV) or None, max_retries=0, timeout=timeout_s or REQUEST_TIMEOUT_S
        )
        return cls(client, key, log)

    @property
    def endpoint(self) -> str:
        """The API's base URL without credentials, safe for the manifest."""
        parts = urlsplit(str(self.client.base_url))
        host = parts.netloc.rsplit("@", 1)[-1]
        return f"{parts.scheme}://{host}{parts.path}".rstrip("/") or DEFAULT_ENDPOINT

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # ------------------------------------------------------------ the retry loop

    def call(self, what: str, fn: Callable[[], T], recheck: Callable[[], T | None] | None = None) -> T:
        """fn(), retried on transient failures; `recheck` looks, before each retry, whether the failed try took
        effect.
        """
        last, maybe_done = "", False
        for attempt in range(API_ATTEMPTS):
            if maybe_done and recheck is not None and (found := recheck()) is not None:
                self._log("api_adopted", call=what, attempt=attempt)
                return found
            try:
                return fn()
            except openai.APIStatusError as exc:
                retry_after = self._check_status(what, exc)
                last = f"HTTP {exc.status_code}: {self._message(exc)}"
                maybe_done = exc.status_code != 429  # a 5xx or 408 may come after the server acted
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                retry_after = None
                last = (
                    "timed out"
                    if isinstance(exc, openai.APITimeoutError)
                    else f"connection failed ({exc.__cause__ or exc})"
                )
                # A refused connection never reached the server; a reset or timeout may have lost only the answer.
                maybe_done = type(exc.__cause__).__name__ != "ConnectError"
            if attempt + 1 == API_ATTEMPTS:
                break
            delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            if retry_after is not None:
                delay = max(delay, min(retry_after, BACKOFF_CAP_S))
            self._log("api_retry", call=what, attempt=attempt + 1, wait_s=round(delay, 3), error=self.redact(last))
            time.sleep(delay)
        raise ServiceUnavailable(
            f"OpenAI API at {self.endpoint} failed {what} {API_ATTEMPTS} times (last: {self.redact(last)}) — check the "
            f"network or {URL_ENV}, then run the same command again; everything recorded so far is kept"
        )

    def _check_status(self, what: str, exc: openai.APIStatusError) -> float | None:
        """Raise for a terminal error; for a transient one return the server's retry-after, if any."""
        status, message = exc.status_code, self._message(exc)
        if status == 401:
            raise BadInput(
                f"OpenAI rejected the API key while {what} (HTTP 401: {message}) — set {KEY_ENV} "
                "to a valid key for this project"
            )
        if status == 403:
            raise BadInput(
                f"OpenAI refused {what} (HTTP 403: {message}) — check that the key in {KEY_ENV} "
                "may use the Files and Batch APIs"
            )
        if status == 404:
            raise NotFound(
                f"OpenAI does not know what was asked for while {what} (HTTP 404: {message}) — "
                f"is {KEY_ENV} a key of the project that created it?"
            )
        if status == 429 and _code(exc) == "insufficient_quota":
            raise BadInput(f"OpenAI quota exhausted while {what} ({message}) — check the project's billing and limits")
        if status in TRANSIENT_STATUS or status >= 500:
            return _retry_after(exc.response)
        raise BadInput(f"OpenAI rejected {what} (HTTP {status}: {message})")

    def _message(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return self.redact(body["message"])
        return self.redact(str(exc.message))[:300]

    # ------------------------------------------------------------ files

    def upload(self, path: Path, filename: str, since: float) -> str:
        """Upload a batch input file under the given name; returns its file id."""

        def send() -> str:
            with path.open("rb") as fh:  # reopened on every try: a failed try may have read part of it
                return self.client.files.create(file=(filename, fh, "application/jsonl"), purpose="batch").id

        # A dropped connection may have dropped only the answer: look for the file before sending it again.
        size = path.stat().st_size
        return self.call(f"uploading {filename}", send, recheck=lambda: self.find_file(filename, size, since))

    def find_file(self, filename: str, size: int, since: float) -> str | None:
        """A batch file uploaded under this name and size since `since` (newest first), e.g. by a run that crashed."""
        page = self.call(
            "listing files", lambda: self.client.files.list(purpose="batch", order="desc", limit=LIST_PAGE)
        )
        while True:
            for item in page.data:
                if item.created_at < since:
                    return None
                if item.filename == filename and item.bytes == size:
                    return item.id
            if not page.has_next_page():
                return None
            page = self.call("listing files", page.get_next_page)

    def download(self, file_id: str, path: Path) -> int:
        """Stream a file's content into `path` atomically (temp file, fsync, rename); returns its size."""

        def fetch() -> int:
            size = 0
            with atomic_file(path) as fh, self.client.files.with_streaming_response.content(file_id) as answer:
                for chunk in answer.iter_bytes(CHUNK_BYTES):
                    fh.write(chunk)
                    size += len(chunk)
            return size

        return self.call(f"downloading file {file_id}", fetch)

    # ------------------------------------------------------------ batches

    def create_batch(self, input_file_id: str, endpoint: str, metadata: dict[str, str], since: float) -> dict[str, Any]:
        """Create a batch, never two: before a retry, a batch with the same metadata is looked for first."""
        return self.call(
            "creating a batch",
            lambda: self.client.batches.create(
                # the SDK types endpoint as a Literal; ours comes from the manifest, and the API refuses any other
                input_file_id=input_file_id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata=metadata,
            ).model_dump(),
            recheck=lambda: self.find_batch(metadata, since),
        )

    def find_batch(self, metadata: dict[str, str], since: float) -> dict[str, Any] | None:
        """A batch carrying all of these metadata pairs, created since `since` (the API lists newest first)."""
        page = self.call("listing batches", lambda: self.client.batches.list(limit=LIST_PAGE))
        while True:
            for item in page.data:
                if item.created_at < since:
                    return None
                if item.metadata and all(item.metadata.get(k) == v for k, v in metadata.items()):
                    return item.model_dump()
            if not page.has_next_page():
                return None
            page = self.call("listing batches", page.get_next_page)

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return self.call(f"checking batch {batch_id}", lambda: self.client.batches.retrieve(batch_id)).model_dump()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self.call(f"cancelling batch {batch_id}", lambda: self.client.batches.cancel(batch_id)).model_dump()


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    return body.get("code") if isinstance(body, dict) else None


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return None
