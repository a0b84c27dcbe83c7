#!/usr/bin/env python3
"""End-to-end check + rough load figures for a gateway in front of fixed_upstream.py.

    python3 bench/peer/smoke.py --gateway 4000 --upstream 9001 [-n 200] [-c 1]
                                [--model bench]

1. Through the gateway (--model, Bearer $LITELLM_MASTER_KEY or sk-bench):
   one non-stream and one stream request; checks the fixed answer arrives.
2. -n requests (keep-alive, -c client threads) to the gateway and the same
   to the upstream directly; prints req/s and latency p50/p90/p99 for each.
Only 127.0.0.1; every loop bounded by -n and a per-request timeout. Stdlib only.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

ANSWER = "Hello from upstream."
BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


def post(conn, path, body, key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    # bytes, not str: http.client then sends headers+body in one write (a
    # separate small body write would hit Nagle + delayed ACK, ~40 ms)
    conn.request("POST", path, json.dumps(body).encode(), headers)
    r = conn.getresponse()
    return r.status, r.read()


def check(port, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    st, raw = post(c, "/v1/chat/completions", BODY, key)
    text = json.loads(raw)["choices"][0]["message"]["content"] if st == 200 else raw[:300]
    print(f"non-stream: {st} {text!r}")
    ok = st == 200 and text == ANSWER
    st, raw = post(c, "/v1/chat/completions", dict(BODY, stream=True), key)
    parts, done = [], False
    for line in raw.decode().splitlines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            for ch in json.loads(line[6:]).get("choices", []):
                parts.append(ch.get("delta", {}).get("content") or "")
    print(f"stream:     {st} {''.join(parts)!r} [DONE]={done}")
    return ok and st == 200 and "".join(parts) == ANSWER and done


def load(port, key, n, conc):
    lat, errors, lock = [], [0], threading.Lock()
    per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]

    def worker(count):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(count):
            t = time.perf_counter()
            try:
                st, _ = post(c, "/v1/chat/completions", BODY, key)
            except (OSError, http.client.HTTPException):
                st = 0
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            d = time.perf_counter() - t
            with lock:
                lat.append(d)
                if st != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return n / wall, q(0.5), q(0.9), q(0.99), errors[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("-c", type=int, default=1, help="concurrent client connections")
    ap.add_argument("--model", default="bench", help="bench-fallback: fault scenario")
    ap.add_argument("--key", default=os.environ.get("LITELLM_MASTER_KEY", "sk-bench"))
    a = ap.parse_args()
    a.n = max(1, min(a.n, 100_000))  # bounded
    a.c = max(1, min(a.c, 256, a.n))
    BODY["model"] = a.model
    ok = check(a.gateway, a.key)
    print("e2e:", "OK" if ok else "FAILED")
    load(a.gateway, a.key, min(100, a.n), a.c)  # warm-up (LiteLLM imports lazily)
    for name, port, key in (("gateway", a.gateway, a.key), ("direct", a.upstream, None)):
        rps, p50, p90, p99, err = load(port, key, a.n, a.c)
        print(f"{name:8s} n={a.n} c={a.c}: {rps:7.1f} req/s  p50 {p50:6.2f} ms  "
              f"p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  errors {err}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
