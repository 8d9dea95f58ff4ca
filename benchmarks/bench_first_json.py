"""`first_json` (the JSON extraction from LLM answers) on hostile nesting: time against input size,
next to the previous implementation (a `raw_decode` of ``text[i:]`` at every "{" or "[", which
copies the rest of the text per try and lets the decoder recurse, so it is quadratic).

Inputs: a run of "[" (what a hostile simulation answer sent), `{"a":` repeated, "[1," repeated,
and a valid flat list, each about `--size` characters; the median of `--repeats` runs.
Run: `.venv/bin/python benchmarks/bench_first_json.py` (writes its section of README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from interp_widgets.autointerp.client import MAX_JSON_DEPTH, first_json

from _common import machine, publish


def previous(text: str):
    """The implementation before (main at d6f65a8), for comparison."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return dec.raw_decode(text[i:])[0]
            except (json.JSONDecodeError, RecursionError):
                continue
    raise ValueError("no JSON object or array in the answer")


def median_ms(fn, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            fn(text)
        except ValueError:
            pass
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    n = args.size
    inputs = {'"[" x n': "[" * n, '`{"a":` x n/5': '{"a":' * (n // 5),
              '"[1," x n/3': "[1," * (n // 3), "valid flat list": "[" + "1," * (n // 2) + "1]"}
    rows = []
    for name, text in inputs.items():
        big = text * 4 if name != "valid flat list" else "[" + "1," * (2 * n) + "1]"
        ms, ms_big = median_ms(first_json, text, args.repeats), \
            median_ms(first_json, big, args.repeats)
        old = f"{median_ms(previous, text[: n // 100], 1):.0f}" if name != "valid flat list" \
            else "-"
        rows.append(f"| {name} | {len(text):,} | {ms:.1f} | {ms_big:.1f} | "
                    f"{ms_big / ms:.1f}x | {old} |")
    body = "\n".join([
        "## JSON in LLM answers: `first_json` (`benchmarks/bench_first_json.py`)",
        "",
        f"Median of {args.repeats} runs; starts nested deeper than {MAX_JSON_DEPTH} are skipped "
        "(found with numpy in one pass). Then the same input 4 times as long (past the CPU "
        "caches at both sizes, so the ratio shows the algorithm: 4x is linear). The last column "
        "is the previous implementation on a hundredth of the input (it is quadratic: on the "
        "whole input it would take hours). The valid list's time is the decoder's own.",
        machine() + ", shared with other work: expect noise.",
        "",
        "| input | characters n | ms at n | ms at 4n | ratio | previous, n/100 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Command: `.venv/bin/python benchmarks/bench_first_json.py`",
    ])
    publish("bench_first_json", body, write=not args.no_write)


if __name__ == "__main__":
    main()
