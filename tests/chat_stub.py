"""A tiny OpenAI-compatible chat server over real HTTP, for tests of what the local lane does with a
server's answers: /health, /v1/models and /v1/chat/completions as llama.cpp's server shapes them.

It checks the bearer key the way llama.cpp's `--api-key` does (401 otherwise) and, like a careless
proxy, can quote the presented key in its 401 body (`echo_key`), so tests can prove the key never
reaches a message, a log or a job file.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatStub:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        echo_key: bool = False,
        answer: dict[str, Any] | None = None,
        model: str = "stub-model",
    ):
        self.api_key = api_key
        self.echo_key = echo_key
        self.answer = answer if answer is not None else {"entities": [], "relations": []}
        self.model = model
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def __enter__(self) -> ChatStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(stub: ChatStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if stub.api_key is None:
                return True
            presented = self.headers.get("Authorization", "")
            if presented == f"Bearer {stub.api_key}":
                return True
            # llama.cpp answers 401 with
            # {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
            message = f"Invalid API Key: {presented}" if stub.echo_key else "Invalid API Key"
            self._send(401, {"error": {"code": 401, "message": message, "type": "authentication_error"}})
            return False

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                if self._authorised():
                    self._send(200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]})
            else:
                self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
                return
            if not self._authorised():
                return
            stub.requests += 1
            content = json.dumps(stub.answer)
            self._send(
                200,
                {
                    "id": f"chatcmpl-{stub.requests}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": request.get("model") or stub.model,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
            )

    return Handler
