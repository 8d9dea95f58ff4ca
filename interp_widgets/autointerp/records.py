"""Activation records: a unit's activation on each token of a short text, the input of explain,
simulate and score.

Records come from a scan (`records_from_scan`: its top examples and random ones, from the
scan's uniform sample of corpus positions), from any object
with `tokens` and `acts` (`records_from_examples`), or from an activation matrix over a tokenized
corpus (`records_from_activations`, for SAE latents and PCA/ICA directions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

SOURCES = ("top", "random", "quantile", "")


@dataclass
class ActivationRecord:
    """One text and a unit's activation on each of its tokens.

    tokens: the token strings [pos]; activations: floats [pos];
    source: "top" (a top-activating context), "random" (a random context), "quantile" or "".
    """

    tokens: list[str]
    activations: list[float]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.tokens, str):
            raise TypeError("tokens must be a list of token strings, not one string.")
        self.tokens = [str(t) for t in self.tokens]
        acts = self.activations
        if isinstance(acts, torch.Tensor):
            acts = acts.detach().float().cpu().tolist()
        self.activations = [float(a) for a in np.asarray(acts, dtype=np.float64).reshape(-1)]
        if len(self.tokens) != len(self.activations):
            raise ValueError(f"An ActivationRecord needs one activation per token: got "
                             f"{len(self.tokens)} tokens and {len(self.activations)} activations.")
        if any(math.isnan(a) for a in self.activations):
            raise ValueError("Activations contain NaN: drop the padding positions first.")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}; got {self.source!r}.")

    @property
    def max_activation(self) -> float:
        return max(self.activations, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "activations": self.activations, "source": self.source}


def max_activation(records: Sequence[ActivationRecord]) -> float:
    """The largest activation over all records (0 when none is positive)."""
    return max([0.0] + [r.max_activation for r in records])


def normalize(activations: Sequence[float], max_act: float) -> list[int]:
    """OpenAI's discretisation: ``min(10, floor(10 * relu(a) / max_act))`` per token; all 0 when
    `max_act` <= 0."""
    if max_act <= 0:
        return [0] * len(activations)
    return [min(10, math.floor(10 * max(a, 0.0) / max_act)) for a in activations]


def normalized(records: Sequence[ActivationRecord], max_act: float | None = None
               ) -> list[list[int]]:
    """Each record's activations as integers 0-10, scaled by the maximum over `records` (or
    `max_act`)."""
    m = max_activation(records) if max_act is None else max_act
    return [normalize(r.activations, m) for r in records]


def activation_floor(records: Sequence[ActivationRecord]) -> float:
    """The activation that counts as silent: max(0, median over the "random" records' tokens, or
    over all tokens when there are none). 0 for sparse units; the typical level for units that
    are never near 0 (some GELU neurons, PCA directions)."""
    pool = [a for r in records if r.source == "random" for a in r.activations] or \
        [a for r in records for a in r.activations]
    return max(0.0, float(np.median(pool))) if pool else 0.0


def levels(records: Sequence[ActivationRecord]) -> list[list[int]]:
    """Each record's activations as integers 0-10 above `activation_floor`:
    ``min(10, floor(10 * (a - floor) / (max - floor)))``, 0 below the floor. The same as
    `normalized` when the floor is 0; used by the offline explainer and by detection / fuzzing,
    so that a unit with a high resting level is read by what rises above it."""
    low = activation_floor(records)
    top = max_activation(records)
    return [[0 if top <= low else min(10, math.floor(10 * max(a - low, 0.0) / (top - low)))
             for a in r.activations] for r in records]


def _check_records(records: Any) -> list[ActivationRecord]:
    if isinstance(records, ActivationRecord):
        return [records]
    records = list(records)
    if not records:
        raise ValueError("No activation records: give at least one (e.g. from records_from_scan).")
    bad = [type(r).__name__ for r in records if not isinstance(r, ActivationRecord)]
    if bad:
        raise TypeError(f"Expected ActivationRecord items, got {bad[0]}: build them with "
                        "ActivationRecord(tokens, activations) or records_from_scan(...).")
    return records


def records_from_examples(examples: Iterable[Any], source: str = "") -> list[ActivationRecord]:
    """Records from objects with `tokens` and `acts` (or `activations`), e.g. a NeuronScan's
    `Example`s."""
    out = []
    for ex in examples:
        acts = getattr(ex, "acts", None)
        acts = getattr(ex, "activations", None) if acts is None else acts
        out.append(ActivationRecord(list(ex.tokens), acts, source=source,
                                    meta={k: getattr(ex, k) for k in ("doc", "pos")
                                          if hasattr(ex, k)}))
    return out


def records_from_scan(scan: Any, unit: int, *, n_top: int = 20, n_random: int = 20,
                      seed: int = 0) -> list[ActivationRecord]:
    """A unit's top `n_top` examples and `n_random` random ones from a `UnitScan`.

    The random records are the scan's uniform sample of corpus positions
    (`UnitScan.random_examples`, the same positions for every unit), so a unit fires on them
    at its corpus rate: a 3%-density unit on about 3% of them. (`seed` is kept for callers;
    the sample is fixed by the scan's own seed.)"""
    top = records_from_examples(scan.top_examples(unit)[:n_top], "top")
    return top + records_from_examples(scan.random_examples(unit, n_random), "random")


def records_from_activations(tokens: Sequence[Sequence[str]], acts: Sequence[Any], unit: int, *,
                             n_top: int = 20, n_random: int = 20,
                             context: tuple[int, int] = (10, 4), seed: int = 0
                             ) -> list[ActivationRecord]:
    """Top and random context windows of one unit from activations over a tokenized corpus.

    tokens: [doc][pos] token strings; acts: per document a Tensor/array [pos, units] (rows of
    different lengths are fine). Windows are `context` = (before, after) tokens around the
    position; top windows come from distinct positions, ranked by activation."""
    cols = [np.asarray(a.detach().float().cpu() if isinstance(a, torch.Tensor) else a,
                       dtype=np.float64)[:, unit] for a in acts]
    if len(cols) != len(tokens) or any(len(c) != len(t) for c, t in zip(cols, tokens)):
        raise ValueError("tokens and acts must have one row per document and one value per token.")
    flat = np.concatenate(cols) if cols else np.zeros(0)
    doc_of = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
    start = np.concatenate([[0], np.cumsum([len(c) for c in cols])])

    def window(i: int, source: str) -> ActivationRecord:
        d = int(doc_of[i])
        p = i - int(start[d])
        lo, hi = max(0, p - context[0]), min(len(cols[d]), p + context[1] + 1)
        return ActivationRecord(list(tokens[d][lo:hi]), cols[d][lo:hi], source=source,
                                meta={"doc": d, "pos": p})

    order = np.argsort(-flat, kind="stable")[:n_top]
    rng = np.random.default_rng(seed * 1_000_003 + unit)
    rest = np.setdiff1d(np.arange(len(flat)), order)
    rand = rng.choice(rest, size=min(n_random, len(rest)), replace=False) if len(rest) else []
    return [window(int(i), "top") for i in order] + [window(int(i), "random") for i in rand]


def split_records(records: Sequence[ActivationRecord], explain_fraction: float = 0.5
                  ) -> tuple[list[ActivationRecord], list[ActivationRecord]]:
    """(records to explain from, held-out records to score on): top records alternate between
    the two (every other rank, so both see the strongest examples); random records all go to
    scoring; with no "top" records, the first `explain_fraction` of the records explain."""
    records = _check_records(records)
    top = [r for r in records if r.source == "top"]
    if not top:
        n = max(1, round(len(records) * explain_fraction))
        return records[:n], records[n:]
    step = max(2, round(1 / explain_fraction))
    explain = top[::step]
    shown = {id(r) for r in explain}
    return explain, [r for r in records if id(r) not in shown]
