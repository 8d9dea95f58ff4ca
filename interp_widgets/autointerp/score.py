"""Scores of an explanation against held-out records.

- correlation: Pearson correlation of true and simulated activations over all tokens of all
  records pooled together (OpenAI's definition; not an average of per-record correlations);
  top_and_random: the same over the "top" and "random" records (OpenAI's headline score), and
  `top` / `random` over each alone.
Detection and fuzzing read activations as 0-10 levels above the unit's resting level
(`records.levels`).
- detection (after EleutherAI's Delphi): can the explanation tell records where the unit fires
  from records where it does not? Positives are the "top" (and "quantile") records; negatives the
  "random" records that do not fire (0-10 activation below `active_min` everywhere; random
  records that fire are left out). Records without a source are labelled by that threshold
  alone. Balanced accuracy and ROC AUC; NaN, with a note, when a class is missing (a unit that
  fires nearly everywhere has no non-firing random records).
- fuzzing (Delphi): in each record that fires, its strongest tokens (0-10 activation at least
  `active_min` and at least half the record's peak) are marked, and a copy marks as many other
  tokens at random instead; can the explanation tell the right marks from the wrong? Balanced
  accuracy and ROC AUC.
With the LLM, detection and fuzzing ask for a probability per text (threshold 0.5 for balanced
accuracy). Offline, a text's score is the simulated activation (max over the text for detection,
mean over the marked tokens for fuzzing) divided by 10, with threshold `active_min / 10`.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import prompts
from .client import Budget, Client, as_floats, first_json, make_client
from .errors import ResponseParseError
from .explain import _mode, simulate
from .records import ActivationRecord, _check_records
from .records import levels as records_levels

SCORE_NAMES = ("correlation", "top_and_random", "top", "random", "detection_balanced_accuracy",
               "detection_auc", "fuzzing_balanced_accuracy", "fuzzing_auc")


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
    n_records: int = 0
    n_tokens: int = 0
    simulator: str = ""
    notes: list[str] = field(default_factory=list)

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


def _classification(labels: Sequence[int], probs: Sequence[float], threshold: float
                    ) -> tuple[float, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if len(set(labels)) < 2:
        return math.nan, math.nan
    pred = [int(p >= threshold) for p in probs]
    return float(balanced_accuracy_score(labels, pred)), float(roc_auc_score(labels, probs))


def score(explanation: str, records: Sequence[ActivationRecord], *, simulator: str | None = None,
          method: str = "auto", detection: bool = True, fuzzing: bool = True,
          active_min: int = 1, examples_per_call: int = 5, seed: int = 0,
          model: str = "gpt-4o-mini", client: Client | Any = None, base_url: str | None = None,
          api_key: str | None = None, budget: Budget | None = None,
          cancel: threading.Event | None = None,
          on_step: Callable[[str], Any] | None = None) -> Scores:
    """Score `explanation` on `records` (held out from the ones it was written from); see the
    module docstring. `simulator`, `method` and the client arguments are as in `simulate`.
    on_step(name) is called as "simulate", "detection" and "fuzzing" start."""
    step = on_step or (lambda name: None)
    records = _check_records(records)
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

    def subset(keep) -> float:
        idx = [i for i, r in enumerate(records) if keep(r.source)]
        return pooled_correlation([true[i] for i in idx], [pred[i] for i in idx]) if idx \
            else math.nan

    out.top_and_random = subset(lambda s: s in ("top", "random"))
    out.top = subset(lambda s: s == "top")
    out.random = subset(lambda s: s == "random")

    levels = records_levels(records)
    if detection:
        step("detection")
        chosen = [(i, lab) for i, lab in enumerate(_detection_labels(records, levels,
                                                                     active_min))
                  if lab is not None]
        labels = [lab for _, lab in chosen]
        if len(set(labels)) < 2:
            out.notes.append("detection: needs firing (top) records and random records that do "
                             "not fire")
        elif llm is None:
            probs = [max(pred[i], default=0.0) / 10 for i, _ in chosen]
        else:
            texts = ["".join(records[i].tokens) for i, _ in chosen]
            probs = _judge(llm, str(explanation), texts, prompts.DETECTION_TASK,
                           examples_per_call, seed, budget, cancel)
        if len(set(labels)) == 2:
            thr = active_min / 10 if llm is None else 0.5
            out.detection_balanced_accuracy, out.detection_auc = _classification(labels, probs,
                                                                                 thr)
    if fuzzing:
        step("fuzzing")
        _fuzz(out, explanation, records, levels, pred, llm, active_min, examples_per_call, seed,
              budget, cancel)
    return out


def _detection_labels(records: Sequence[ActivationRecord], levels: list[list[int]],
                      active_min: int) -> list[int | None]:
    """1 (fires), 0 (does not) or None (left out) per record; see the module docstring."""
    out: list[int | None] = []
    for r, v in zip(records, levels):
        fires = max(v, default=0) >= active_min
        if r.source in ("top", "quantile"):
            out.append(1)
        elif r.source == "random":
            out.append(None if fires else 0)
        else:
            out.append(int(fires))
    return out


def _fuzz(out: Scores, explanation: str, records: Sequence[ActivationRecord],
          levels: list[list[int]], pred: list[list[float]], llm: Client | None, active_min: int,
          examples_per_call: int, seed: int, budget: Budget | None,
          cancel: threading.Event | None) -> None:
    rng = random.Random(seed)
    items: list[tuple[int, list[bool], int]] = []  # (record, marks, label)
    for i, v in enumerate(levels):
        peak = max(v, default=0)
        right = [x >= max(active_min, math.ceil(peak / 2)) for x in v]
        idle = [j for j, m in enumerate(right) if not m]
        n = sum(right)
        if n == 0 or len(idle) < n:
            continue
        wrong = [False] * len(v)
        for j in rng.sample(idle, n):
            wrong[j] = True
        items += [(i, right, 1), (i, wrong, 0)]
    if not items:
        out.notes.append("fuzzing: no record has active tokens and enough inactive ones")
        return
    labels = [lab for _, _, lab in items]
    if llm is None:
        probs = [float(np.mean([p for p, m in zip(pred[i], marks) if m])) / 10
                 for i, marks, _ in items]
        thr = active_min / 10
    else:
        texts = [prompts.marked_text(records[i].tokens, marks) for i, marks, _ in items]
        probs = _judge(llm, str(explanation), texts, prompts.FUZZING_TASK, examples_per_call,
                       seed, budget, cancel)
        thr = 0.5
    out.fuzzing_balanced_accuracy, out.fuzzing_auc = _classification(labels, probs, thr)


def _judge(llm: Client, explanation: str, texts: list[str], task: str, per_call: int, seed: int,
           budget: Budget | None, cancel: threading.Event | None) -> list[float]:
    """A probability per text, asked `per_call` texts at a time in a shuffled order."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    chunks = [order[i:i + per_call] for i in range(0, len(order), per_call)]

    def ask(chunk: list[int]) -> list[float]:
        answer = llm.chat(prompts.judge_messages(explanation, [texts[i] for i in chunk], task),
                          max_tokens=16 + 8 * len(chunk), budget=budget, cancel=cancel)
        try:
            data = first_json(answer)
            values = data.get("probabilities") if isinstance(data, dict) else data
            return as_floats(values, len(chunk), 0.0, 1.0)
        except (ValueError, AttributeError) as err:
            raise ResponseParseError(
                f"Could not read probabilities from model {llm.model!r} at {llm.base_url}: "
                f"{err}. Expected {{\"probabilities\": [{len(chunk)} numbers 0-1]}}; got "
                f"{answer[:200]!r}.") from None

    probs = [0.0] * len(texts)
    for chunk, values in zip(chunks, llm.map(ask, chunks, cancel)):
        for i, p in zip(chunk, values):
            probs[i] = p
    return probs
