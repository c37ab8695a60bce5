"""A chat LLM endpoint on 127.0.0.1 for tests: OpenAI-compatible ``/v1/chat/completions`` and Ollama ``/api/chat``.

It records every request and answers from a script of replies (the last one repeats). A reply
may be delayed (to make clients time out; the delay ends early when the server stops) or be
any status and raw body. Stdlib only, one daemon thread, stopped on exit.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = "ok"
    status: int = 200
    raw: bytes | None = None  # sent as the body instead of a well-formed reply
    delay: float = 0.0


class FakeLLMServer:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply()]
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``/v1``); Ollama clients take :attr:`root`."""
        return f"{self.root}/v1"

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.startswith("/api/show"):  # Ollama clients ask for the context length first
                    self._send(200, json.dumps({"model_info": {"test.context_length": 4096}}).encode())
                    return
                server.requests.append({"path": self.path, "body": body})
                reply = server._next()
                if reply.delay:
                    server._stop.wait(reply.delay)
                if reply.raw is not None:
                    payload = reply.raw
                elif reply.status != 200:
                    payload = json.dumps({"error": {"message": f"scripted failure {reply.status}"}}).encode()
                elif self.path.startswith("/api/chat"):
                    payload = json.dumps(_ollama(body, reply.text)).encode()
                else:
                    payload = json.dumps(_openai(body, reply.text)).encode()
                self._send(reply.status, payload)

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _openai(request: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "test"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _ollama(request: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "model": request.get("model", "test"),
        "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
    }


def user_parts(request: dict[str, Any]) -> tuple[str, list[str]]:
    """The user message of an OpenAI-style request: its text parts joined, and its image URLs."""
    [user] = [m for m in request["body"]["messages"] if m["role"] == "user"]
    content = user["content"] if isinstance(user["content"], list) else [{"type": "text", "text": user["content"]}]
    text = "".join(part["text"] for part in content if part["type"] == "text")
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    return text, images
