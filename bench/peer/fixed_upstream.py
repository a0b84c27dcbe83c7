#!/usr/bin/env python3
"""Tiny fixed-response OpenAI-compatible upstream for the peer benchmark.

    python3 bench/peer/fixed_upstream.py PORT [--error-rate 0.2] [--seed 1]

POST /v1/chat/completions -> a fixed chat.completion JSON, or, when the body
has "stream": true, a fixed SSE stream (3 content chunks, a finish chunk,
[DONE]). With --error-rate R a fraction R of chat requests (seeded, so
reproducible) gets HTTP 500 instead: the "primary fails 20 %" fault scenario.
GET /health -> 200 "ok". GET /stats -> {"requests": N, "errors": M} (chat
requests served / failed on purpose since start). Anything else -> 404.

Stdlib only, listens on 127.0.0.1 only, HTTP/1.1 keep-alive (gateways pool
connections; a close-per-request upstream would measure TCP setup instead).
"""
import argparse
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fixed-model"
WORDS = ["Hello", " from", " upstream."]

COMPLETION = json.dumps({
    "id": "chatcmpl-fixed",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "".join(WORDS)},
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}).encode()


def _chunk(delta, finish=None):
    return {
        "id": "chatcmpl-fixed", "object": "chat.completion.chunk",
        "created": 1700000000, "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


_events = [_chunk({"role": "assistant", "content": ""})]
_events += [_chunk({"content": w}) for w in WORDS]
_events += [_chunk({}, "stop")]
STREAM = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in _events)
STREAM += b"data: [DONE]\n\n"

ERROR = json.dumps({"error": {"message": "injected upstream failure",
                              "type": "server_error", "code": "injected"}}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in two writes; without TCP_NODELAY the second
    # waits for the client's delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True

    def log_message(self, *args):  # no per-request logging: it costs time
        pass

    def _send(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/health", "/v1/health"):
            self._send(200, b"ok", "text/plain")
        elif self.path == "/stats":
            with self.server.lock:
                stats = {"requests": self.server.requests, "errors": self.server.errors}
            self._send(200, json.dumps(stats).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, b"not found", "text/plain")
            return
        if self.server.fail():
            self._send(500, ERROR, "application/json")
            return
        try:
            stream = bool(json.loads(body or b"{}").get("stream"))
        except ValueError:
            self._send(400, b'{"error":{"message":"bad json"}}', "application/json")
            return
        if stream:
            self._send(200, STREAM, "text/event-stream")
        else:
            self._send(200, COMPLETION, "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, addr, error_rate, seed):
        super().__init__(addr, Handler)
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = self.errors = 0

    def fail(self):
        with self.lock:
            self.requests += 1
            failed = self.error_rate > 0 and self.rng.random() < self.error_rate
            self.errors += failed
            return failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), a.error_rate, a.seed)
    print(f"fixed upstream on 127.0.0.1:{a.port} error_rate={a.error_rate}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
