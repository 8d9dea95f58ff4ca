"""A loopback OpenAI-compatible chat server that answers from a script, for testing tool-calling
loops end to end over real HTTP.

Each request to ``POST /v1/chat/completions`` takes the next item of the script:
- ``{"tool_calls": [(name, arguments_json_text), ...]}``: an assistant message calling tools;
- ``{"content": "text"}``: a plain answer (the loop should stop);
- ``{"status": 500}``: that HTTP status with a JSON error body.
When the script runs out it answers ``{"content": "done"}``. Every request body is recorded in
`requests` (and its Authorization header in `auth`).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedToolServer:
    def __init__(self, script: list[dict[str, Any]], *, usage_tokens: int = 100):
        self.script = list(script)
        self.usage_tokens = usage_tokens
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedToolServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    item = server.script.pop(0) if server.script else {"content": "done"}
                if "status" in item:
                    self._send(item["status"], {"error": {"message": "scripted failure",
                                                          "type": "server_error"}})
                    return
                n = len(server.requests)
                if "tool_calls" in item:
                    msg = {"role": "assistant", "content": None, "tool_calls": [
                        {"id": f"call_{n}_{i}", "type": "function",
                         "function": {"name": name, "arguments": args}}
                        for i, (name, args) in enumerate(item["tool_calls"])]}
                    finish = "tool_calls"
                else:
                    msg, finish = {"role": "assistant", "content": item["content"]}, "stop"
                self._send(200, {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                    "usage": {"prompt_tokens": server.usage_tokens, "completion_tokens": 0,
                              "total_tokens": server.usage_tokens}})

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
