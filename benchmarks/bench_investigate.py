"""The offline investigation plan on the demo model's case studies with known answers
(`interp_widgets.investigate.cases`): precision and recall of the verified claims, and time.

Targets (issue: investigator): recall of the known units at least 90% and precision at least 80%
(pooled over the case set); every verified claim's effect above twice its spread; one
investigation under 60 s on this machine. Run: `.venv/bin/python benchmarks/bench_investigate.py`
(writes its section of README.md).
"""

from __future__ import annotations

import argparse

import torch

import interp_widgets as iw
from interp_widgets.investigate.cases import CASES, run_case

from _common import machine, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = iw.load_model("demo")
    rows = []
    for case in CASES:
        inv, row = run_case(model, case)
        row["steps"] = len(inv.steps)
        rows.append(row)
    tp = sum(r["true_positives"] for r in rows)
    verified = sum(r["verified_claims"] for r in rows)
    known = sum(r["known"] for r in rows)
    precision, recall = tp / max(verified, 1), tp / known
    slowest = max(r["seconds"] for r in rows)
    beat = all(r["all_verified_beat_2_spread"] for r in rows)
    lines = [
        "## Investigator: offline plan on known-answer cases (`benchmarks/bench_investigate.py`)",
        "",
        f"Demo model, one CPU thread; {machine()}.",
        "",
        "| case | scored kind | known | verified claims | true positives | precision | recall "
        "| missed | extra | steps | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['kind']} | {r['known']} | {r['verified_claims']} | "
            f"{r['true_positives']} | {r['precision']:.2f} | {r['recall']:.2f} | "
            f"{r['missed'] or '-'} | {r['extra'] or '-'} | {r['steps']} | {r['seconds']:.1f} s |")
    lines += [
        "",
        f"Pooled: precision **{precision:.2f}** (target >= 0.80: "
        f"{'met' if precision >= 0.8 else 'NOT met'}), recall **{recall:.2f}** (target >= 0.90: "
        f"{'met' if recall >= 0.9 else 'NOT met'}); every verified claim's effect above twice "
        f"its spread: **{'yes' if beat else 'NO'}**; slowest investigation {slowest:.1f} s "
        f"(target < 60 s: {'met' if slowest < 60 else 'NOT met'}).",
        "",
        "\"extra\" are verified claims outside the known set: units whose knock-out does move the "
        "metric beyond twice its spread, which the known answers (taken from the repo's other "
        "measurements) do not list. Per-case precision counts them as wrong.",
    ]
    publish("bench_investigate", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
