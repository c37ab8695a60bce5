"""A chat LLM endpoint on 127.0.0.1 for tests: OpenAI-compatible ``/v1/chat/completions`` and Ollama ``/api/chat``.

It records every request and answers from a script of replies (the last one repeats), so a
multi-turn exchange is a list of replies. A reply may be delayed (to make clients time out; the
delay ends early when the server stops) or be any status and raw body. A request that asks to
stream (``"stream": true``) is answered in chunks: OpenAI's server-sent events or Ollama's JSON
lines. A streamed reply can hold back after its first chunks until the test releases it (which
shows that the client had those chunks before the rest existed), can break off mid-stream, can end
its body cleanly without the provider's finish signal, and can finish for another reason ("length").
Stdlib only, one daemon thread, stopped on exit.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT = 20.0  # seconds a held stream waits for its release before going on anyway


@dataclass
class Reply:
    text: str = "ok"
    status: int = 200
    raw: bytes | None = None  # sent as the body instead of a well-formed reply
    delay: float = 0.0
    chunks: list[str] | None = None  # streamed pieces; default: the text split after each space
    hold_after: int | None = None  # streamed: send this many chunks, then wait for `release`
    release: threading.Event = field(default_factory=threading.Event)
    released: bool | None = None  # set by the server: True when `release` (not the time limit) ended the hold
    break_after: int | None = None  # streamed: after this many chunks, drop the connection mid-body
    end_after: int | None = None  # streamed: after this many chunks, end the body cleanly without the finish signal
    finish_reason: str = "stop"  # the finish reason the last chunk (or the whole reply) gives
    pace: float = 0.0  # streamed: seconds between two chunks (a slow LLM that keeps writing)

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return self.chunks
        words = self.text.split(" ")
        return [w + " " for w in words[:-1]] + words[-1:]


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

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for reply in self.replies:
            reply.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer

    protocol_version = "HTTP/1.1"  # chunked bodies for streams; every other reply closes its connection

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.startswith("/api/show"):  # Ollama clients ask for the context length first
            self._send(200, json.dumps({"model_info": {"test.context_length": 4096}}).encode())
            return
        self.fake.requests.append({"path": self.path, "body": body})
        reply = self.fake._next()
        if reply.delay:
            self.fake._stop.wait(reply.delay)
        if reply.raw is None and reply.status == 200 and body.get("stream"):
            self._stream(body, reply)
        else:
            self._send(reply.status, self._payload(body, reply))

    def _payload(self, body: dict[str, Any], reply: Reply) -> bytes:
        if reply.raw is not None:
            return reply.raw
        if reply.status != 200:
            return json.dumps({"error": {"message": f"scripted failure {reply.status}"}}).encode()
        if self.path.startswith("/api/chat"):
            return json.dumps(_ollama(body, reply.text, reply.finish_reason)).encode()
        return json.dumps(_openai(body, reply.text, reply.finish_reason)).encode()

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
        self.close_connection = True

    def _stream(self, request: dict[str, Any], reply: Reply) -> None:
        ollama = self.path.startswith("/api/chat")
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson" if ollama else "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = reply.pieces()
            for index, piece in enumerate(pieces):
                if index == reply.break_after:
                    self.wfile.write(b"400\r\n" + b"{" * 10)  # a chunk cut short, then the connection drops
                    self.wfile.flush()
                    return
                if index == reply.end_after:
                    break
                if index == reply.hold_after:
                    reply.released = reply.release.wait(HOLD_LIMIT)
                if index and reply.pace:
                    self.fake._stop.wait(reply.pace)
                self._chunk(_ollama_line(request, piece) if ollama else _openai_event(request, piece))
            else:
                ending = _ollama_line(request, None, reply.finish_reason)
                self._chunk(ending if ollama else _openai_event(request, None, reply.finish_reason))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


def _openai(request: dict[str, Any], text: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "test"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _openai_event(request: dict[str, Any], piece: str | None, finish_reason: str = "stop") -> bytes:
    """One server-sent event of a streamed chat completion; ``None``: the last one, then ``[DONE]``."""
    delta = {"content": piece} if piece is not None else {}
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": request.get("model", "test"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece is not None else finish_reason}],
    }
    event = f"data: {json.dumps(chunk)}\n\n"
    return (event + ("data: [DONE]\n\n" if piece is None else "")).encode()


def _ollama(request: dict[str, Any], text: str, done_reason: str = "stop") -> dict[str, Any]:
    return {
        "model": request.get("model", "test"),
        "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": done_reason,
    }


def _ollama_line(request: dict[str, Any], piece: str | None, done_reason: str = "stop") -> bytes:
    line = _ollama(request, piece or "", done_reason)
    if piece is not None:
        line.update(done=False, done_reason=None)
    return (json.dumps(line) + "\n").encode()


def user_parts(request: dict[str, Any]) -> tuple[str, list[str]]:
    """The user message of an OpenAI-style request: its text parts joined, and its image URLs."""
    [user] = [m for m in request["body"]["messages"] if m["role"] == "user"]
    return message_parts(user)


def message_parts(message: dict[str, Any]) -> tuple[str, list[str]]:
    """One OpenAI-style message: its text parts joined, and its image URLs."""
    content = message["content"]
    if not isinstance(content, list):
        content = [{"type": "text", "text": content}]
    text = "".join(part["text"] for part in content if part["type"] == "text")
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    return text, images
