"""Explain-and-score throughput against an OpenAI-compatible server: N concurrent requests vs
sequential calls.

The server is `FakeOpenAIServer` (tests/openai_server.py, a test double, not in the package)
on 127.0.0.1 with a fixed latency per request (default 250 ms, a fast hosted model's time to
answer a short prompt), so the figures measure our client's pipelining, not a model. Each unit
is explained from half of its top records and scored on the rest (simulation with logprobs, one
call per record; detection and fuzzing, 5 texts per call); the offline explainer's throughput
is shown for reference.
Run: `.venv/bin/python benchmarks/bench_autointerp.py` (writes its section of README.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

from interp_widgets import autointerp as ai

from _common import machine, publish

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_server import FakeOpenAIServer  # noqa: E402  (a test double in tests/)

HEADER = ("| concurrency | most in flight at the server | API calls | seconds | requests/s | "
          "units/s | vs sequential |\n|---|---:|---:|---:|---:|---:|---:|")
WORDS = [" the", " chef", " baked", " an", " apple", " pie", " in", " the", " kitchen", ".",
         " rocket", " stadium", " rain", " song"]


def units(n_units: int, n_top: int, n_random: int, seed: int = 0
          ) -> dict[int, list[ai.ActivationRecord]]:
    """Synthetic units: unit u fires on WORDS[u % len(WORDS)]."""
    rng = random.Random(seed)
    out = {}
    for u in range(n_units):
        target = WORDS[u % len(WORDS)]
        recs = []
        for i in range(n_top + n_random):
            toks = [rng.choice(WORDS) for _ in range(16)]
            if i < n_top:
                toks[rng.randrange(16)] = target
            else:
                toks = [t if t != target else " of" for t in toks]
            acts = [3.0 + rng.random() if t == target else 0.0 for t in toks]
            recs.append(ai.ActivationRecord(toks, acts, source="top" if i < n_top else "random"))
        out[u] = recs
    return out


def run(server: FakeOpenAIServer, todo, concurrency: int) -> tuple[float, int, int]:
    """(seconds, API calls, units done) of one batch."""
    client = ai.Client("fake-llm", base_url=server.base_url, api_key="sk-bench",
                       max_concurrency=concurrency)
    t0 = time.perf_counter()
    out = ai.explain_units(todo, model_id="bench", source="synthetic", client=client,
                           progress=False)
    return time.perf_counter() - t0, out.calls, len(out.done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    todo = units(args.units, n_top=8, n_random=6)

    rows = []
    with FakeOpenAIServer(latency=args.latency) as server:
        run(server, {0: todo[0]}, 1)  # warm up (imports, connection)
        for n in args.concurrency:
            seconds, calls, done = run(server, todo, n)
            rows.append((n, seconds, calls, done, server.max_in_flight))
            server.max_in_flight = 0
            print(f"concurrency {n:>2}: {calls} calls in {seconds:.2f} s = "
                  f"{calls / seconds:.1f} req/s, {done / seconds:.2f} units/s")
    t0 = time.perf_counter()
    off = ai.explain_units(todo, model_id="bench", source="synthetic", explainer="offline",
                           progress=False)
    offline_s = time.perf_counter() - t0
    print(f"offline: {len(off.done) / offline_s:.1f} units/s")

    base = rows[0][2] / rows[0][1]
    table = "\n".join(
        f"| {'sequential (1)' if n == 1 else n} | {peak} | {calls} | {s:.2f} | "
        f"{calls / s:.1f} | {done / s:.2f} | {calls / s / base:.1f}x |"
        for n, s, calls, done, peak in rows)
    body = f"""## Auto-interp: explain-and-score throughput (`benchmarks/bench_autointerp.py`)

{args.units} units, each explained (1 chat call) from 4 of its 8 top records and scored on the
other 4 and 6 random ones: simulation with logprobs (1 `/v1/completions` call per record),
detection and fuzzing (5 texts per chat call). Loopback OpenAI-compatible server
(`FakeOpenAIServer`) answering every request after a fixed {args.latency * 1000:.0f} ms.
{machine()}.

{HEADER}
{table}

Offline explainer and simulator (statistics, no API) on the same units:
{len(off.done) / offline_s:.0f} units/s.
Requests in flight are bounded by `max_concurrency` (the server's peak column); every attempt,
retries included, counts against a batch's `max_calls`.
Command: `.venv/bin/python benchmarks/bench_autointerp.py` (shared machine: expect noise).
"""
    publish("bench_autointerp", body, write=not args.no_write)


if __name__ == "__main__":
    main()
