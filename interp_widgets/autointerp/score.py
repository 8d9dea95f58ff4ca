"""Scores of an explanation against held-out records.

- correlation: Pearson correlation of true and simulated activations over all tokens of all
  records pooled together (OpenAI's definition; not an average of per-record correlations);
  top_and_random: the same over the "top" and "random" records (OpenAI's headline score), and
  `top` / `random` over each alone.
- Delphi's scorers (`scorers`: detection, fuzzing, intruder, embedding, surprisal), built and
  measured as in EleutherAI's Delphi; see `interp_widgets.autointerp.scorers` for each
  construction. Detection and fuzzing fill `*_balanced_accuracy` (Delphi's "accuracy"),
  `*_auc` and `*_f1`; intruder `intruder_accuracy`; embedding and surprisal `*_auc`. Every
  scorer's full metrics (precision, recall, ...) are in `Scores.delphi`.
With the LLM, detection, fuzzing and intruder ask the judge; offline they read the simulated
activations (see `scorers`).

Uncertainty: every score carries a 95% bootstrap interval over records (`Scores.intervals`
{name: [low, high]}; `Scores.estimate(name)`; the correlation's from resampling whole records,
`analysis.uncertainty.bootstrap_correlation`). With the ~40 held-out records of a unit the
intervals are wide, and two units' scores that overlap should not be ranked.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..analysis.uncertainty import Estimate, bootstrap, pooled_correlation_weights
from .client import Budget, Client, make_client
from .explain import _mode, simulate
from .records import ActivationRecord, _check_records
from .scorers import check_scorers, run_scorers

SCORE_NAMES = ("correlation", "top_and_random", "top", "random", "detection_balanced_accuracy",
               "detection_auc", "fuzzing_balanced_accuracy", "fuzzing_auc", "detection_f1",
               "fuzzing_f1", "intruder_accuracy", "embedding_auc", "surprisal_auc")
#: where each Delphi scorer's metrics land among the scores: {scorer: {metric: score name}}
_DELPHI_FIELDS = {
    "detection": {"accuracy": "detection_balanced_accuracy", "auc": "detection_auc",
                  "f1": "detection_f1"},
    "fuzzing": {"accuracy": "fuzzing_balanced_accuracy", "auc": "fuzzing_auc",
                "f1": "fuzzing_f1"},
    "intruder": {"accuracy": "intruder_accuracy"},
    "embedding": {"auc": "embedding_auc"},
    "surprisal": {"auc": "surprisal_auc"},
}


@dataclass
class Scores:
    """An explanation's scores (NaN where a score cannot be computed; `notes` says why)."""

    correlation: float = math.nan
    top_and_random: float = math.nan
    top: float = math.nan
    random: float = math.nan
    detection_balanced_accuracy: float = math.nan
    detection_auc: float = math.nan
    fuzzing_balanced_accuracy: float = math.nan
    fuzzing_auc: float = math.nan
    detection_f1: float = math.nan
    fuzzing_f1: float = math.nan
    intruder_accuracy: float = math.nan
    embedding_auc: float = math.nan
    surprisal_auc: float = math.nan
    n_records: int = 0
    n_tokens: int = 0
    simulator: str = ""
    notes: list[str] = field(default_factory=list)
    #: {score name: [low, high]}: the 95% bootstrap interval over records (None: undefined)
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    #: {scorer: ScorerResult.to_dict()}: every metric of each Delphi scorer that ran
    delphi: dict[str, dict[str, Any]] = field(default_factory=dict)

    def estimate(self, name: str) -> Estimate:
        """The score `name` with its interval, as an `Estimate` (NaN bounds if it has none)."""
        if name not in SCORE_NAMES:
            raise ValueError(f"Unknown score {name!r}; the scores are {', '.join(SCORE_NAMES)}.")
        lo, hi = self.intervals.get(name) or (None, None)
        nan = math.nan
        return Estimate(getattr(self, name), nan if lo is None else lo, nan if hi is None else hi,
                        self.n_records)

    def row(self) -> dict[str, float]:
        """{name: value, name_low: ..., name_high: ...} for every score (NaN where absent)."""
        out = {}
        for k in SCORE_NAMES:
            e = self.estimate(k)
            out.update({k: e.value, f"{k}_low": e.low, f"{k}_high": e.high})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict (NaN as None)."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scores:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in SCORE_NAMES:
            if known.get(k) is None:
                known[k] = math.nan
        return cls(**known)


#: DataFrame columns of the scores with their intervals (`Scores.row`)
SCORE_COLUMNS = tuple(c for k in SCORE_NAMES for c in (k, f"{k}_low", f"{k}_high"))


def pooled_correlation(true: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]) -> float:
    """Pearson correlation over all tokens of all records pooled; NaN when either side is
    constant or empty."""
    t = np.concatenate([np.asarray(x, dtype=np.float64) for x in true]) if true else np.zeros(0)
    p = np.concatenate([np.asarray(x, dtype=np.float64) for x in pred]) if pred else np.zeros(0)
    if t.shape != p.shape:
        raise ValueError(f"true and predicted activations differ in size: {t.size} vs {p.size}.")
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return math.nan
    return float(np.corrcoef(t, p)[0, 1])


def score(explanation: str, records: Sequence[ActivationRecord], *, simulator: str | None = None,
          method: str = "auto", detection: bool = True, fuzzing: bool = True,
          scorers: Sequence[str] | None = None, lm: Any = None, embedder: Any = None,
          active_min: int = 1, examples_per_call: int = 5, seed: int = 0, n_boot: int = 1000,
          model: str = "gpt-4o-mini", client: Client | Any = None, base_url: str | None = None,
          api_key: str | None = None, budget: Budget | None = None,
          cancel: threading.Event | None = None,
          on_step: Callable[[str], Any] | None = None) -> Scores:
    """Score `explanation` on `records` (held out from the ones it was written from); see the
    module docstring. `simulator`, `method` and the client arguments are as in `simulate`.
    scorers: the Delphi scorers to run (default: "detection" and "fuzzing", as the two flags
    say); `lm` is the language model surprisal needs, `embedder` the embedding model (see
    `scorers.run_scorers`). n_boot: bootstrap resamples of the intervals (0: none).
    on_step(name) is called as "simulate" and each scorer start."""
    step = on_step or (lambda name: None)
    records = _check_records(records)
    names = check_scorers(scorers if scorers is not None else
                          [n for n, on in (("detection", detection), ("fuzzing", fuzzing)) if on])
    kind = _mode("simulator", simulator, client, base_url, api_key)
    llm = make_client(client, model=model, base_url=base_url, api_key=api_key) \
        if kind == "llm" else None
    sim_kw = dict(simulator=kind, method=method, client=llm, budget=budget, cancel=cancel)
    step("simulate")
    pred = simulate(explanation, records, **sim_kw)
    out = Scores(n_records=len(records), n_tokens=sum(len(r.tokens) for r in records),
                 simulator=f"llm:{llm.model}" if llm else "offline-statistical")
    true = [r.activations for r in records]
    out.correlation = pooled_correlation(true, pred)
    if math.isnan(out.correlation):
        out.notes.append("correlation: undefined, the simulated (or true) activations are "
                         "constant: the explanation predicts nothing on these records")

    for name, keep in (("correlation", lambda s: True),
                       ("top_and_random", lambda s: s in ("top", "random")),
                       ("top", lambda s: s == "top"), ("random", lambda s: s == "random")):
        idx = [i for i, r in enumerate(records) if keep(r.source)]
        if name != "correlation":
            setattr(out, name, pooled_correlation([true[i] for i in idx], [pred[i] for i in idx])
                    if idx else math.nan)
        if n_boot and len(idx) >= 2 and not math.isnan(getattr(out, name)):
            e = bootstrap(pooled_correlation_weights([true[i] for i in idx],
                                                     [pred[i] for i in idx]),
                          len(idx), n_boot=n_boot, seed=seed)[0]
            out.intervals[name] = _pair(e)

    results = run_scorers(explanation, records, names, llm=llm, pred=pred, lm=lm,
                          embedder=embedder, active_min=active_min,
                          examples_per_call=examples_per_call, seed=seed, n_boot=n_boot,
                          budget=budget, cancel=cancel, on_step=step)
    for name, res in results.items():
        out.delphi[name] = res.to_dict()
        out.notes += res.notes + ([f"{name}: {res.error}"] if res.error else [])
        for metric, field_name in _DELPHI_FIELDS[name].items():
            if metric in res.metrics:
                setattr(out, field_name, res.metrics[metric])
            if metric in res.intervals:
                out.intervals[field_name] = _pair(res.intervals[metric])
    return out


def _pair(e: Estimate) -> list[float | None]:
    return [None if math.isnan(e.low) else e.low, None if math.isnan(e.high) else e.high]
