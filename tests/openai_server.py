"""A deterministic OpenAI-compatible HTTP server on 127.0.0.1: the test double of the LLM path
(tests, benchmarks, the browser tests' kernel). It lives in tests/, not in the package.

It speaks ``POST /v1/chat/completions`` and ``POST /v1/completions`` (with ``echo`` and
``logprobs``) and records every request. Its "model" is a rule, so answers are predictable:
- explanation prompt: ``the token "<t>"`` where <t> is the token with the highest activation in
  the prompt (first on ties);
- simulation (logprobs or JSON) and detection / fuzzing: a token is predicted active (10, or
  probability 0.9) when it equals the quoted token of the explanation, else 0 (0.1).
Knobs: `api_key` (401 unless the Bearer token matches), `models` (404 for others),
`fail(status, n)` (the next n requests answer `status`, with ``Retry-After: 0``),
`stall(seconds, n)` (the next n requests wait `seconds` before answering: client timeouts),
`latency` (seconds slept per request), `logprobs=False` (404 on /v1/completions),
`garbage=True` (chat answers that are not JSON), `hostile(mode, n)` (the next n requests
answered in one of the `HOSTILE` ways: bad statuses, bodies, encodings, sizes, hangs, resets),
and `plan` ({unit: (mode, k)}: the k-th request whose body names ``unit<u>x`` (a token the
caller puts in that unit's records) is answered in `mode`, once).

    with FakeOpenAIServer() as server:
        client = Client("fake", base_url=server.base_url, api_key="sk-test")
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_PIECES = re.compile(r"\w+|[^\w]", re.UNICODE)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 refuses connections under concurrent clients
    daemon_threads = True


def _target(text: str) -> str | None:
    m = _QUOTED.search(text)
    return json.loads(f'"{m.group(1)}"') if m else None


class FakeOpenAIServer:
    """See the module docstring. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, *, api_key: str | None = None, models: set[str] | None = None,
                 latency: float = 0.0, logprobs: bool = True, garbage: bool = False):
        self.api_key, self.models, self.latency = api_key, models, latency
        self.logprobs, self.garbage = logprobs, garbage
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self._failures: list[int] = []
        self._stalls: list[float] = []
        self._hostile: list[str] = []
        self.plan: dict[int, tuple[str, int]] = {}
        self.served: dict[int, str] = {}  # unit -> the hostile mode it was sent
        self._seen: dict[int, int] = {}
        self.hang = 1.0  # seconds a "hang" answer waits (set it past the client's timeout)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                server._handle(self)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail(self, status: int, n: int = 1) -> None:
        """Answer the next `n` requests with HTTP `status`."""
        with self._lock:
            self._failures += [status] * n

    def stall(self, seconds: float, n: int = 1) -> None:
        """Hold the next `n` requests for `seconds` before answering (past a client's timeout,
        the answer goes nowhere)."""
        with self._lock:
            self._stalls += [seconds] * n

    def hostile(self, mode: str, n: int = 1) -> None:
        """Answer the next `n` requests in the hostile way `mode` (a key of `HOSTILE`)."""
        if mode not in HOSTILE:
            raise ValueError(f"unknown hostile mode {mode!r}; known: {sorted(HOSTILE)}")
        with self._lock:
            self._hostile += [mode] * n

    def paths(self) -> list[str]:
        with self._lock:
            return [r["path"] for r in self.requests]

    # ---- answers ----

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        size = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(size) if size else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self._send(h, 400, {"error": {"message": "body is not JSON"}})
        with self._lock:
            headers = {k.lower(): v for k, v in h.headers.items()}
            self.requests.append({"path": h.path, "headers": headers, "body": body})
            status = self._failures.pop(0) if self._failures else None
            stall = self._stalls.pop(0) if self._stalls else 0.0
            mode = self._hostile.pop(0) if self._hostile else None
            tag = _UNIT.search(raw.decode("utf-8", "replace"))
            if tag is not None and mode is None:
                u = int(tag.group(1))
                k = self._seen[u] = self._seen.get(u, -1) + 1
                if u in self.plan and self.plan[u][1] == k:
                    mode = self.served[u] = self.plan[u][0]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(stall)
            if mode is not None:
                HOSTILE[mode](self, h, body)
            else:
                self._answer(h, body, status)
        except (OSError, ValueError):
            h.close_connection = True  # the client gave up waiting, or we cut the connection
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any], status: int | None
                ) -> None:
        if self.latency:
            time.sleep(self.latency)
        if status is not None:
            return self._send(h, status, {"error": {"message": f"scripted failure {status}",
                                                    "type": "server_error"}},
                              {"Retry-After": "0"})
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer "\
                                                                          f"{self.api_key}":
            return self._send(h, 401, {"error": {"message": "Incorrect API key provided.",
                                                 "type": "invalid_request_error",
                                                 "code": "invalid_api_key"}})
        model = body.get("model", "")
        if self.models is not None and model not in self.models:
            return self._send(h, 404, {"error": {"message": f"The model `{model}` does not "
                                                 "exist.", "code": "model_not_found"}})
        if h.path.endswith("/chat/completions"):
            return self._send(h, 200, self._chat(body))
        if h.path.endswith("/completions") and self.logprobs:
            return self._send(h, 200, self._completion(body))
        return self._send(h, 404, {"error": {"message": f"No route {h.path}"}})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any,
              headers: dict[str, str] | None = None, *, raw: bytes | None = None,
              content_type: str = "application/json", length: int | None = None) -> None:
        data = json.dumps(payload).encode() if raw is None else raw
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data) if length is None else length))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _chat_with(self, h: BaseHTTPRequestHandler, body: dict[str, Any], content: Any) -> None:
        """A well-formed chat completion whose message content is `content` (any JSON)."""
        answer = self._chat(body)
        answer["choices"][0]["message"]["content"] = content
        self._send(h, 200, answer)

    def _clean_json(self, body: dict[str, Any], path: str) -> dict[str, Any]:
        return self._chat(body) if path.endswith("/chat/completions") else \
            self._completion(body)

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or [{}]
        user = str(messages[-1].get("content", ""))
        if self.garbage:
            text = "I am not sure what you mean."
        elif "Explanation of neuron 1 behavior: the main thing this neuron does is find" \
                in user and user.rstrip().endswith("find"):
            text = self._explain(user)
        elif "Tokens (index<tab>token):" in user:
            target = _target(user.split("Tokens (index<tab>token):")[0])
            lines = user.split("Tokens (index<tab>token):\n", 1)[1].split("\n\n")[0]
            toks = [_unescape(line.split("\t", 1)[1]) for line in lines.splitlines()]
            text = json.dumps({"activations": [10 if t == target else 0 for t in toks]})
        elif "Description:" in user:
            target = _target(user.split("Description:", 1)[1].split("\n", 1)[0])
            examples = re.findall(r"^Example \d+: (.*)$", user, flags=re.M)
            fuzz = "marked" in str(messages[0].get("content", ""))
            hit = (lambda e: f"<<{target}>>" in e) if fuzz else (lambda e: target in e)
            text = json.dumps({"probabilities": [0.9 if target and hit(_unescape(e)) else 0.1
                                                 for e in examples]})
        else:
            text = "I do not know this task."
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    @staticmethod
    def _explain(user: str) -> str:
        best, best_v = None, -1
        for line in user.splitlines():
            if "\t" in line:
                tok, v = line.rsplit("\t", 1)
                if v.isdigit() and int(v) > best_v:
                    best, best_v = _unescape(tok), int(v)
        return f" the token {json.dumps(best)}." if best is not None else " nothing."

    @staticmethod
    def _completion(body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body.get("prompt", ""))
        target = _target(prompt.split("Activations:")[0].split("behavior:")[-1])
        pieces = [(m.start(), m.group()) for m in _PIECES.finditer(prompt)]
        tokens, offsets, tops = [], [], []
        line_token = None
        for start, piece in pieces:
            line_start = prompt.rfind("\n", 0, start) + 1
            if piece == "unknown" and prompt[start - 1:start] == "\t":
                line_token = _unescape(prompt[line_start:start - 1])
                hit = line_token == target
                dist = {"10": 0.8, "0": 0.2} if hit else {"0": 0.9, "1": 0.1}
                tops.append({k: math.log(p) for k, p in dist.items()})
            else:
                tops.append({piece: -0.05})
            tokens.append(piece)
            offsets.append(start)
        logprobs = {"tokens": tokens, "text_offset": offsets,
                    "token_logprobs": [next(iter(t.values())) for t in tops], "top_logprobs": tops}
        return {"id": "cmpl-fake", "object": "text_completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "text": prompt if body.get("echo") else "",
                             "finish_reason": "length", "logprobs": logprobs}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0,
                          "total_tokens": len(tokens)}}


def _unescape(s: str) -> str:
    """The inverse of `prompts.show_token`."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1),
                                                                             m.group(1)), s)


_UNIT = re.compile(r"unit(\d+)x")


def _cut(h: BaseHTTPRequestHandler, reset: bool = False) -> None:
    """Close the connection now (with `reset`, as a TCP reset)."""
    import socket
    import struct

    h.close_connection = True
    if reset:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()


def _status(code: int, html: bool = False):
    def answer(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
        if html:
            srv._send(h, code, None, raw=b"<html><body><h1>Bad Gateway</h1></body></html>",
                      content_type="text/html", headers={"Retry-After": "0"})
        else:
            srv._send(h, code, {"error": {"message": f"hostile {code}"}}, {"Retry-After": "0"})
    return answer


def _raw(data: bytes, content_type: str = "application/json", length: int | None = None):
    def answer(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
        srv._send(h, 200, None, raw=data, content_type=content_type, length=length)
        if length is not None:
            _cut(h)
    return answer


def _content(value: Any):
    def answer(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
        srv._chat_with(h, body, value)
    return answer


def _encoded(encoding: str, charset: str):
    """The clean answer, with an "é" in its text, encoded as `encoding` but labelled `charset`."""
    def answer(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
        payload = srv._clean_json(body, h.path)
        payload["id"] = "chatcmpl-é"
        srv._send(h, 200, None, raw=json.dumps(payload, ensure_ascii=False).encode(encoding),
                  content_type=f"application/json; charset={charset}")
    return answer


def _after(seconds: float | None):
    """The clean answer after `seconds` (None: the server's `hang`, past the client timeout)."""
    def answer(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
        time.sleep(srv.hang if seconds is None else seconds)
        srv._send(h, 200, srv._clean_json(body, h.path))
    return answer


def _reset(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
    _cut(h, reset=True)


def _chunked_garbage(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    h.wfile.write(b"zz\r\n{\"choices\r\n\r\n-1\r\n")
    _cut(h)


def _deep_body(srv: FakeOpenAIServer, h: BaseHTTPRequestHandler, body: dict) -> None:
    srv._send(h, 200, None, raw=b'{"choices": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")


#: the ways `FakeOpenAIServer.hostile` and `plan` answer: name -> answer(server, handler, body)
HOSTILE: dict[str, Any] = {
    "400": _status(400), "404": _status(404), "429": _status(429), "500": _status(500),
    "502-html": _status(502, html=True), "503": _status(503),
    "html-200": _raw(b"<!doctype html><html><body>Welcome to nginx!</body></html>", "text/html"),
    "invalid-json": _raw(b'{"choices": [{"message": {"content": "hi"'),
    "empty-body": _raw(b""),
    "json-number-body": _raw(b"42"),
    "binary-body": _raw(bytes(range(256)) * 4),
    "wrong-schema": _raw(b'{"object": "chat.completion", "data": [1, 2, 3]}'),
    "no-choices": _raw(b'{"id": "x", "object": "chat.completion", "choices": []}'),
    "content-number": _content(5),
    "content-null": _content(None),
    "content-object": _content({"activations": [1, 2]}),
    "content-list": _content(["a", 1]),
    "content-huge": _content("apple " * 200_000),
    "content-deep": _content("[" * 5000),
    "content-surrogate": _content("\ud800 the token \ud800"),
    "content-bidi": _content("\u202e the token \u2066 apple\x07\x1b[31m"),
    "content-prose": _content("I am sorry, I cannot help with that."),
    "deep-body": _deep_body,
    "latin1-as-utf8": _encoded("latin-1", "utf-8"),
    "utf16": _encoded("utf-16", "utf-16"),
    "truncated": _raw(b'{"choices": [{"index": 0, "mess', length=4000),
    "slow": _after(0.05),
    "hang": _after(None),
    "reset": _reset,
    "chunked-garbage": _chunked_garbage,
}
