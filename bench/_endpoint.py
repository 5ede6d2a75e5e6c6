"""The scripted OpenAI-compatible endpoint, served from its own process for benchmarks.

In the benchmark's own process its HTTP server threads would compete with personaloom for
the GIL and count as personaloom's overhead. Here it runs apart and reports its own CPU time.

    python bench/_endpoint.py [--latency SECONDS] [--omit-words-every K]

prints ``READY <base_url>`` and then answers commands on stdin, one per line, with one JSON
line: ``stats`` (chat and embedding requests, CPU seconds of this process), ``digests`` (a
SHA-256 of every chat request body, in arrival order), ``reset`` (forget logged requests).
It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from personaloom.testing import scripted
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint, lognormal_latency

# The server answers HTTP/1.0, one connection per request: with 64 requests at once, the
# default listen backlog of 5 drops connections, and a dropped SYN costs the client a 1 s
# retransmit that no real endpoint would charge.
scripted._Server.request_queue_size = 1024


def body_digest(body: object) -> str:
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--omit-words-every", type=int, default=None)
    parser.add_argument("--p95", type=float, default=None, help="lognormal latency: its p95")
    args = parser.parse_args()
    responder = PersonaloomResponder(omit_words_every=args.omit_words_every)
    latency = lognormal_latency(args.latency, args.p95) if args.p95 else args.latency
    with ScriptedEndpoint(responder, latency=latency) as server:
        print(f"READY {server.base_url}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                reply: object = {
                    "chat": server.chat_calls,
                    "embeddings": server.embedding_calls,
                    "cpu_seconds": time.process_time(),
                }
            elif command == "digests":
                reply = [
                    body_digest(r["body"])
                    for r in list(server.requests)
                    if r["path"].endswith("/chat/completions")
                ]
            elif command == "reset":
                server.reset_counts()
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown command {command!r}"}
            print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
