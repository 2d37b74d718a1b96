"""The one place secrets are scrubbed: every secret the process knows becomes `***` before it is shown or stored.

The process knows: the values of SECRET_ENV, the userinfo of the URLs in URL_ENV, and whatever `register`
and `register_url` were given (the `--local-url` and `--graph` of this run). Besides those values, the
userinfo of *any* URL in a text (`scheme://user:pass@host`) is masked, whoever wrote it.

Applied by: the CLI's one-line errors and `--debug` tracebacks, everything the consoles print, `--json`
output, every line `storage` writes (log.jsonl events, answers, errors, results, manifests) and the
ledger's rows. Values shorter than MIN_SECRET_CHARS are not masked as plain substrings (a one-letter
password would mask every word with that letter); inside a URL they are masked all the same.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson

SECRET_ENV = ("OPENAI_API_KEY", "EXTRACTOR_LOCAL_API_KEY", "NEO4J_PASSWORD")
URL_ENV = ("OPENAI_BASE_URL", "EXTRACTOR_GRAPH_URI")
MASK = "***"
MIN_SECRET_CHARS = 4

_registered: set[str] = set()
# scheme://userinfo@ — userinfo stops at the first character a URL authority cannot hold before '@'.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)[^\s/?#@\"'<>\\]+@")
_USERINFO_B = re.compile(rb"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)[^\s/?#@\"'<>\\]+@")
_cache: tuple[tuple[Any, ...], tuple[str, ...], tuple[bytes, ...]] | None = None


def register(secret: str | None) -> None:
    """Mask this value from now on (a password read from an option, a key from a file)."""
    if secret and secret.strip():
        _registered.add(secret.strip())


def register_url(url: str | None) -> None:
    """Mask the userinfo of this URL (the password, and user:password) from now on."""
    for value in _url_secrets(url):
        _registered.add(value)


def forget_registered() -> None:
    """Drop what `register` was given (tests; a long-lived process between runs)."""
    _registered.clear()


def _url_secrets(url: str | None) -> list[str]:
    if not url or "@" not in url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    if not userinfo:
        return []
    found = [userinfo]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    return found


def known_secrets() -> tuple[str, ...]:
    """Every value to mask, longest first (so a key that contains another is masked whole)."""
    global _cache
    env = tuple(os.environ.get(name) for name in (*SECRET_ENV, *URL_ENV))
    key = (env, frozenset(_registered))
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    values: set[str] = set(_registered)
    for name in SECRET_ENV:
        if value := (os.environ.get(name) or "").strip():
            values.add(value)
    for name in URL_ENV:
        values.update(_url_secrets(os.environ.get(name)))
    variants: set[str] = set()
    for value in values:
        if len(value) < MIN_SECRET_CHARS:
            continue
        # as written, URL-quoted, and as JSON escapes it (a key with a quote or backslash in it)
        variants.update({value, quote(value, safe=""), orjson.dumps(value).decode()[1:-1]})
    ordered = tuple(sorted(variants, key=len, reverse=True))
    _cache = (key, ordered, tuple(v.encode("utf-8", "surrogateescape") for v in ordered))
    return ordered


def _known_bytes() -> tuple[bytes, ...]:
    known_secrets()
    assert _cache is not None
    return _cache[2]


def redact_text(text: str) -> str:
    """The text with every known secret and every URL's userinfo replaced by ***."""
    if not isinstance(text, str) or not text:
        return text
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return text


def redact_bytes(data: bytes) -> bytes:
    """redact_text for bytes already serialised (a JSON line about to be written)."""
    for secret in _known_bytes():
        if secret in data:
            data = data.replace(secret, MASK.encode())
    if b"://" in data and b"@" in data:
        data = _USERINFO_B.sub(lambda m: m.group(1) + MASK.encode() + b"@", data)
    return data


def redact(value: Any) -> Any:
    """Any JSON-like value with redact_text applied to every string in it, keys included."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
