"""Helpers for the local-lane tests: request lines from Re-DocRED, a llama.cpp server in a child process, a scripted
stub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from extractor.lanes.chat_server import WARMUP_PROMPT
from extractor.spec.schema import DEFAULT_SPEC_PATH
from tests.redocred import REDOCRED_PATH

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads(DEFAULT_SPEC_PATH.read_text())["schema"]


def redocred_texts(count: int, *, shortest: bool = True) -> list[str]:
    """Document texts (tokens joined by spaces); the shortest ones keep llama.cpp tests quick."""
    docs = json.loads(REDOCRED_PATH.read_text())
    texts = [" ".join(" ".join(sent) for sent in doc["sents"]) for doc in docs]
    return sorted(texts, key=len)[:count] if shortest else texts[:count]


def request_line(custom_id: str, text: str, *, max_tokens: int = 32, seed: int = 7) -> dict[str, Any]:
    """One OpenAI batch input line asking for the default spec's JSON on one document."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gemma-3-270m",
            "messages": [
                {"role": "system", "content": "List the named entities of the document as JSON."},
                {"role": "user", "content": text},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "entities_relations", "strict": True, "schema": SCHEMA},
            },
            "temperature": 0,
            "seed": seed,
            "max_tokens": max_tokens,
            "repeat_penalty": 1.3,
        },
    }


def request_lines(count: int, *, max_tokens: int = 32, chars: int = 300) -> list[dict[str, Any]]:
    """`count` lines over the shortest documents, cut to `chars` characters: prompt time is most of a test's time."""
    texts = redocred_texts(count)
    return [request_line(f"doc-{i:03d}", text[:chars], max_tokens=max_tokens) for i, text in enumerate(texts)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(root: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{root} not healthy after {timeout_s}s")


_SERVE = """
import sys, time
from pathlib import Path
from extractor.lanes.embedded_llm import EmbeddedLlamaServer
# one thread: on a 2-core box shared with other test runs, two llama.cpp threads wait on each other (5x slower)
server = EmbeddedLlamaServer(Path(sys.argv[1]), slots=int(sys.argv[3]), threads=1, port=int(sys.argv[2]))
print(server.start(), flush=True)
while True:
    time.sleep(3600)
"""


def spawn_llama(model: Path, port: int, *, slots: int = 2) -> subprocess.Popen:
    """A real llama.cpp server in a child process we can SIGKILL; returns once /health says ok."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(model), str(port), str(slots)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


LANE_SCRIPT = """
import sys
from pathlib import Path
from extractor.lanes.local import run_local_lane
from extractor.storage import iter_jsonl
folder = Path(sys.argv[2])
run_local_lane(iter_jsonl(folder / "requests.jsonl"), output_path=folder / "output.jsonl",
               error_path=folder / "errors.jsonl", base_url=sys.argv[1].split(","))
"""


def chat_completion(
    content: str = '{"entities": [], "relations": []}',
    *,
    finish_reason: str = "stop",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# (delay in seconds, HTTP status, JSON body[, headers]) for the n-th chat request (0-based) with this body;
# None hangs up.
Script = Callable[[int, dict], tuple[float, int, dict] | tuple[float, int, dict, dict[str, str]] | None]


class StubChatServer:
    """A real HTTP server on 127.0.0.1 that answers chat requests from a script: for the client's retry paths only."""

    def __init__(self, script: Script | None = None, *, slots: int | None = None, port: int = 0):
        self.script = script or (lambda n, body: (0.0, 200, chat_completion()))
        self.slots = slots  # published on /props as llama.cpp does; None: no /props, like vLLM
        self.bodies: list[dict] = []
        self.down = False  # once stopped, open keep-alive connections are dropped too, like a dead process
        self.stalled = False  # every POST (the warm-up probe too) waits while set; /health still answers
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if stub.down:
                    self.close_connection = True  # hang up without an answer, like a dead process
                elif self.path == "/health":
                    self._send(200, {"status": "ok"})
                elif self.path == "/props" and stub.slots:
                    self._send(200, {"total_slots": stub.slots})
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                else:
                    self._send(404, {"error": {"code": 404, "message": "not found", "type": "not_found_error"}})

            def do_POST(self) -> None:
                if stub.down:
                    self.close_connection = True
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                while stub.stalled and not stub.down:
                    time.sleep(0.02)
                if stub.down:
                    self.close_connection = True
                    return
                if body.get("max_tokens") == 1 and body["messages"][0]["content"] == WARMUP_PROMPT:
                    self._send(200, chat_completion("OK"))  # the lane's warm-up probe is not part of the script
                    return
                with stub._lock:
                    n = len(stub.bodies)
                    stub.bodies.append(body)
                step = stub.script(n, body)
                if step is None:  # hang up without an answer, like a process that died mid-request
                    self.close_connection = True
                    return
                delay, status, answer, *headers = step
                time.sleep(delay)
                self._send(status, answer, headers[0] if headers else {})

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to answer

        # HTTPServer sets SO_REUSEADDR: a stub can be started again on the port of one stopped a moment ago.
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StubChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.down = True
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
