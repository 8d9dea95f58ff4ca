"""Delphi's scorers: detection, fuzzing, intruder, embedding and surprisal, built as EleutherAI's
Delphi builds them (`delphi/scorers/`, read in eai-delphi 0.1.3) and measured with its metrics.

Samples. A record is *activating* when it is a "top" or "quantile" record (Delphi's test
examples), *non-activating* when it is a "random" record where the unit does not fire (0-10
level above the resting floor below `active_min`, `records.levels`; random records that fire
are left out); a record without a source is labelled by that threshold. Each record gives one
sample, so records are the units an interval resamples.

- detection: every sample's text, unmarked; the judge says whether it holds what the
  explanation describes.
- fuzzing (Delphi's default): activating samples mark their activating tokens, those at or
  above 0.3 x the sample's own peak (`FUZZ_THRESHOLD`, above the resting floor); non-activating
  samples mark as many random tokens as an activating sample has active ones on average
  (ceil of the mean count of tokens above the floor over the activating samples). The judge
  says whether the marked tokens are what the explanation describes. Consecutive marked tokens
  share one ``<<...>>``, as in Delphi. (Marking random tokens inside firing records, which an
  earlier version did, is Delphi's "active" variant, not its default.)
- intruder: for each non-activating sample (the intruder), up to `n_examples_shown` - 1
  activating samples of one quantile (cycling through the quantiles in `meta["quantile"]`, or
  all activating samples as one), marked as in fuzzing; the intruder marks as many random tokens
  as those have active ones on average (floor of the mean), and goes in at a random place. The
  judge names the intruder; it is not shown the explanation (Delphi's intruder scores the unit,
  not the explanation). Metric: accuracy, the fraction of trials answered right.
- embedding: cosine similarity between the explanation, as a retrieval query (Delphi's
  instruction, `EMBED_QUERY`), and each sample's text; metric: ROC AUC of the similarity,
  activating against non-activating. Needs a sentence-embedding model: `embedder` (anything
  with ``encode(list[str]) -> [n, d]``) or a local folder in ``IW_EMBEDDING_MODEL`` loaded with
  sentence-transformers; without one the scorer reports that none is available offline and the
  other scorers go on.
- surprisal: a language model's loss on each sample's text after a prompt holding the
  explanation, against the same prompt holding "Various unrelated sentences." (Delphi's
  baseline); as in Delphi, a sample's first token is not scored (the loss starts at its second
  token). Delphi's scorer returns the per-token losses; we summarise them as each sample's mean
  loss reduction (baseline minus explained) and report the ROC AUC of that reduction,
  activating against non-activating, and the mean reduction of each class. `lm`: an
  `interp_widgets.Model` (the demo model works).

Metrics of detection and fuzzing follow Delphi's `log/result_analysis.py`: a prediction is
``probability >= 0.5``; accuracy is the *balanced* accuracy (mean of the true positive and true
negative rates); precision TP / (TP + FP), recall TP / P, F1 their harmonic mean (0 when
undefined); AUC from the probabilities. Delphi asks the judge for 0/1 and reads probabilities
from logprobs; we ask for a probability per example, which gives both. Offline (no judge), a
sample's probability is the explanation's simulated activation (max over the text for
detection, mean over the marked tokens for fuzzing and intruder) / 10, threshold
``active_min / 10``.

Every metric carries a 95% bootstrap interval over samples (records), from weighted forms of
the metrics (`uncertainty.bootstrap`). The classifier metrics, embedding and surprisal resample
within each class (the design fixes how many activating and non-activating records there are)
with percentile intervals: on 1,000 simulated scorers of 20 + 20 samples with known AUC
(0.76) and balanced accuracy, they covered the truth 96.3% and 95.4% of the time (BCa, or
resampling across classes, covered 98%: too wide). Intruder accuracy, a mean over trials,
has a BCa interval.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.uncertainty import Estimate, bootstrap
from . import prompts
from .client import Budget, Client, as_floats, first_json
from .errors import AutoInterpError, ResponseParseError
from .records import ActivationRecord, activation_floor

SCORERS = ("detection", "fuzzing", "intruder", "embedding", "surprisal")
CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "auc")
FUZZ_THRESHOLD = 0.3
EMBED_QUERY = "Instruct: Retrieve sentences that could be related to the explanation.\nQuery:"
SURPRISAL_BASELINE = "Various unrelated sentences."
SURPRISAL_INTRO = (
    "The following is a description of a feature of text and a list of sentences that contain "
    "it.\n")
INTRUDER_SYSTEM = (
    "You are a meticulous interpretability researcher. You will see {n} numbered text examples. "
    "In all but one of them, the tokens marked as <<token>> share one feature of text; in one "
    "example, the intruder, the marked tokens do not share it. Find the intruder. Reply with "
    'JSON only: {{"intruder": <the number of the intruder example>}}.')


class EmbeddingUnavailableError(AutoInterpError):
    """No sentence-embedding model is available (none given, none found offline)."""


def check_scorers(names: str | Sequence[str]) -> list[str]:
    """`names` as a list of known scorer names; ValueError listing the scorers otherwise."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in SCORERS]
    if bad:
        raise ValueError(f"Unknown scorer {bad[0]!r}: the scorers are {', '.join(SCORERS)}.")
    return names


@dataclass
class ScorerResult:
    """One scorer's metrics on one explanation.

    metrics {name: float} (NaN where undefined), intervals {name: Estimate}, n (samples or
    trials), samples: one dict per sample (record index, activating, prediction, probability,
    text shown), notes, error ("" unless the scorer could not run, e.g. no embedding model)."""

    scorer: str
    metrics: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Estimate] = field(default_factory=dict)
    n: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    def __str__(self) -> str:
        if self.error:
            return f"{self.scorer}: {self.error}"
        parts = [f"{k} {self.intervals[k]}" if k in self.intervals else f"{k} {v:.2f}"
                 for k, v in self.metrics.items()]
        return f"{self.scorer} (n={self.n}): " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: metrics (NaN as None), intervals as [low, high], n, notes, error."""
        def num(v: float) -> float | None:
            return None if v is None or math.isnan(v) else float(v)

        return {"metrics": {k: num(v) for k, v in self.metrics.items()},
                "intervals": {k: [num(e.low), num(e.high)] for k, e in self.intervals.items()},
                "n": self.n, "notes": list(self.notes), "error": self.error}


# ---- samples ---------------------------------------------------------------------------------

def record_labels(records: Sequence[ActivationRecord], levels: list[list[int]],
                  active_min: int) -> list[int | None]:
    """1 (activating), 0 (non-activating) or None (left out) per record; see the module
    docstring."""
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


def highlight(tokens: Sequence[str], marks: Sequence[bool]) -> str:
    """The text with each run of marked tokens inside one ``<<...>>`` (Delphi's marking)."""
    out, inside = [], False
    for t, m in zip(tokens, marks):
        if m and not inside:
            out.append("<<")
        elif not m and inside:
            out.append(">>")
        inside = bool(m)
        out.append(t)
    if inside:
        out.append(">>")
    return "".join(out)


def _above_floor(records: Sequence[ActivationRecord]) -> list[np.ndarray]:
    floor = activation_floor(records)
    return [np.asarray(r.activations, dtype=np.float64) - floor for r in records]


def active_marks(acts: np.ndarray, threshold: float = FUZZ_THRESHOLD) -> list[bool]:
    """Tokens at or above `threshold` x the sample's peak (activations above the floor)."""
    peak = float(acts.max(initial=0.0))
    if peak <= 0:
        return [False] * len(acts)
    return [bool(a >= threshold * peak) for a in acts]


def random_marks(acts: np.ndarray, n: int, rng: random.Random,
                 threshold: float = FUZZ_THRESHOLD) -> list[bool]:
    """`n` random tokens among those at or below `threshold` x the peak (all of them when the
    sample does not fire), fewer when there are not enough."""
    peak = float(acts.max(initial=0.0))
    pool = [i for i, a in enumerate(acts) if peak <= 0 or a <= threshold * peak]
    chosen = set(rng.sample(pool, min(n, len(pool))))
    return [i in chosen for i in range(len(acts))]


# ---- metrics ---------------------------------------------------------------------------------

def classification_metrics(labels: Sequence[int], probs: Sequence[float],
                           threshold: float = 0.5) -> dict[str, float]:
    """Delphi's metrics of binary judgements (see the module docstring): accuracy (balanced),
    precision, recall, f1 and auc."""
    stat = _classification_statistic(labels, probs, threshold)
    values = stat(np.ones((1, len(labels))))[0]
    return dict(zip(CLASSIFIER_METRICS, map(float, values)))


def _classification_statistic(labels: Sequence[int], probs: Sequence[float], threshold: float
                              ) -> Callable[[np.ndarray], np.ndarray]:
    """The metrics as a statistic of sample weights [m, n] -> [m, 5]."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(probs, dtype=np.float64)
    pred = p >= threshold
    tp, tn = (y & pred).astype(float), (~y & ~pred).astype(float)
    fp, pos, neg = (~y & pred).astype(float), y.astype(float), (~y).astype(float)
    sp, sn = p[y], p[~y]
    wins = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])  # [pos, neg]

    def stat(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            TP, TN, FP, P, N = (w @ tp), (w @ tn), (w @ fp), (w @ pos), (w @ neg)
            tpr = np.where(P > 0, TP / np.where(P > 0, P, 1), 0.0)
            tnr = np.where(N > 0, TN / np.where(N > 0, N, 1), 0.0)
            acc = np.where((P > 0) & (N > 0), (tpr + tnr) / 2, np.nan)
            prec = np.where(TP + FP > 0, TP / np.where(TP + FP > 0, TP + FP, 1), 0.0)
            f1 = np.where(prec + tpr > 0, 2 * prec * tpr / np.where(prec + tpr > 0,
                                                                   prec + tpr, 1), 0.0)
            wp, wn = w[:, y], w[:, ~y]
            auc = ((wp @ wins) * wn).sum(1) / (wp.sum(1) * wn.sum(1))
        return np.stack([acc, prec, tpr, f1, auc], 1)

    return stat


def auc_statistic(labels: Sequence[int], scores: Sequence[float]
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """ROC AUC (ties count one half) as a statistic of sample weights [m, n] -> [m, 1]."""
    return lambda w: _classification_statistic(labels, scores, math.inf)(w)[:, 4:5]


def _finish(out: ScorerResult, stat: Callable[[np.ndarray], np.ndarray], names: Sequence[str],
            n: int, seed: int, n_boot: int, labels: Sequence[int] | None = None
            ) -> ScorerResult:
    """Metrics and intervals; with `labels`, a percentile bootstrap stratified by class (the
    design fixes how many activating and non-activating samples there are)."""
    values = stat(np.ones((1, n)))[0]
    out.metrics = {k: float(v) for k, v in zip(names, values)}
    out.n = n
    if n_boot:
        kw = {} if labels is None else {"strata": np.asarray(labels), "method": "percentile"}
        est = bootstrap(stat, n, n_boot=n_boot, seed=seed, **kw)
        out.intervals = {k: e for k, e in zip(names, est)}
    return out


# ---- the judge ------------------------------------------------------------------------------

def judge(llm: Client, explanation: str, texts: list[str], task: str, per_call: int, seed: int,
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
        except (ValueError, AttributeError, RecursionError) as err:
            raise ResponseParseError(
                f"Could not read probabilities from model {llm.model!r} at {llm.base_url}: "
                f"{err}. Expected {{\"probabilities\": [{len(chunk)} numbers 0-1]}}; got "
                f"{str(answer)[:200]!r}.") from None

    probs = [0.0] * len(texts)
    for chunk, values in zip(chunks, llm.map(ask, chunks, cancel)):
        for i, p in zip(chunk, values):
            probs[i] = p
    return probs


# ---- the scorers ----------------------------------------------------------------------------

@dataclass
class _Context:
    explanation: str
    records: list[ActivationRecord]
    levels: list[list[int]]
    pred: list[list[float]] | None  # offline simulation, 0-10 [record][pos]
    llm: Client | None
    active_min: int
    per_call: int
    seed: int
    budget: Budget | None
    cancel: threading.Event | None
    n_boot: int

    @property
    def labelled(self) -> list[tuple[int, int]]:
        return [(i, lab) for i, lab in enumerate(record_labels(self.records, self.levels,
                                                               self.active_min))
                if lab is not None]


def _needs_both(out: ScorerResult, chosen: list[tuple[int, int]]) -> bool:
    if len({lab for _, lab in chosen}) < 2:
        out.notes.append(f"{out.scorer}: needs activating (top) records and non-activating "
                         "random records (random records where the unit does not fire)")
        return False
    return True


def _detection(c: _Context) -> ScorerResult:
    out = ScorerResult("detection")
    chosen = c.labelled
    if not _needs_both(out, chosen):
        return out
    texts = ["".join(c.records[i].tokens) for i, _ in chosen]
    if c.llm is None:
        probs = [max(c.pred[i], default=0.0) / 10 for i, _ in chosen]
        thr = c.active_min / 10
    else:
        probs = judge(c.llm, c.explanation, texts, prompts.DETECTION_TASK, c.per_call, c.seed,
                      c.budget, c.cancel)
        thr = 0.5
    labels = [lab for _, lab in chosen]
    out.samples = [{"record": i, "activating": bool(lab), "probability": p,
                    "prediction": p >= thr, "text": t}
                   for (i, lab), p, t in zip(chosen, probs, texts)]
    return _finish(out, _classification_statistic(labels, probs, thr), CLASSIFIER_METRICS,
                   len(labels), c.seed, c.n_boot, labels)


def fuzz_samples(records: Sequence[ActivationRecord], chosen: list[tuple[int, int]],
                 seed: int = 0) -> list[list[bool]]:
    """The marks of each chosen (record, label) sample, built as Delphi's default fuzzing (see
    the module docstring)."""
    acts = _above_floor(records)
    active = [i for i, lab in chosen if lab == 1]
    n_wrong = math.ceil(np.mean([(acts[i] > 0).sum() for i in active])) if active else 0
    rng = random.Random(seed)
    return [active_marks(acts[i]) if lab == 1 else random_marks(acts[i], n_wrong, rng)
            for i, lab in chosen]


def _fuzzing(c: _Context) -> ScorerResult:
    out = ScorerResult("fuzzing")
    chosen = c.labelled
    if not _needs_both(out, chosen):
        return out
    marks = fuzz_samples(c.records, chosen, c.seed)
    keep = [j for j, m in enumerate(marks) if any(m)]
    if len(keep) < len(marks):
        out.notes.append(f"fuzzing: {len(marks) - len(keep)} samples had no token to mark")
    chosen, marks = [chosen[j] for j in keep], [marks[j] for j in keep]
    if not _needs_both(out, chosen):
        return out
    texts = [highlight(c.records[i].tokens, m) for (i, _), m in zip(chosen, marks)]
    if c.llm is None:
        probs = [float(np.mean([p for p, k in zip(c.pred[i], m) if k])) / 10
                 for (i, _), m in zip(chosen, marks)]
        thr = c.active_min / 10
    else:
        probs = judge(c.llm, c.explanation, texts, prompts.FUZZING_TASK, c.per_call, c.seed,
                      c.budget, c.cancel)
        thr = 0.5
    labels = [lab for _, lab in chosen]
    out.samples = [{"record": i, "activating": bool(lab), "probability": p,
                    "prediction": p >= thr, "text": t}
                   for (i, lab), p, t in zip(chosen, probs, texts)]
    return _finish(out, _classification_statistic(labels, probs, thr), CLASSIFIER_METRICS,
                   len(labels), c.seed, c.n_boot, labels)


@dataclass
class IntruderTrial:
    """One intruder question: the texts shown (marked), which one is the intruder, and the
    records they came from."""

    texts: list[str]
    intruder: int
    records: list[int]
    marks: list[list[bool]]


def intruder_trials(records: Sequence[ActivationRecord], chosen: list[tuple[int, int]],
                    n_shown: int, seed: int = 0) -> list[IntruderTrial]:
    """Delphi's default intruder construction (see the module docstring): one trial per
    non-activating sample."""
    if n_shown < 2:
        raise ValueError(f"The intruder scorer shows at least 2 examples; got {n_shown}.")
    acts = _above_floor(records)
    rng = random.Random(seed)
    groups: dict[Any, list[int]] = {}
    for i, lab in chosen:
        if lab == 1:
            groups.setdefault(records[i].meta.get("quantile", 0), []).append(i)
    keys = sorted(groups, key=str)
    trials = []
    for t, (j, _) in enumerate((i, lab) for i, lab in chosen if lab == 0):
        pool = groups[keys[t % len(keys)]]
        shown = rng.sample(pool, min(n_shown - 1, len(pool)))
        marks = [active_marks(acts[i]) for i in shown]
        n_wrong = sum(int((acts[i] > 0).sum()) for i in shown) // len(shown)
        at = rng.randint(0, len(shown))
        rows = shown[:at] + [j] + shown[at:]
        marks = marks[:at] + [random_marks(acts[j], n_wrong, rng)] + marks[at:]
        trials.append(IntruderTrial([highlight(records[i].tokens, m) for i, m in
                                     zip(rows, marks)], at, rows, marks))
    return trials


def intruder_messages(texts: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages asking which example is the intruder (numbered from 0, as Delphi)."""
    examples = "".join(f"Example {i}: {prompts.show_token(t)}\n" for i, t in enumerate(texts))
    return [{"role": "system", "content": INTRUDER_SYSTEM.format(n=len(texts))},
            {"role": "user", "content": f"{examples}\nWhich example is the intruder?"}]


def _intruder(c: _Context) -> ScorerResult:
    out = ScorerResult("intruder")
    chosen = c.labelled
    if not _needs_both(out, chosen):
        return out
    trials = intruder_trials(c.records, chosen, max(2, c.per_call), c.seed)
    if c.llm is None:
        rng = random.Random(c.seed)
        answers = []
        for tr in trials:  # the example whose marked tokens the explanation predicts least
            means = [float(np.mean([p for p, k in zip(c.pred[i], m) if k])) if any(m) else 0.0
                     for i, m in zip(tr.records, tr.marks)]
            low = [k for k, v in enumerate(means) if v == min(means)]
            answers.append(rng.choice(low))
    else:
        llm = c.llm

        def ask(tr: IntruderTrial) -> int:
            answer = llm.chat(intruder_messages(tr.texts), max_tokens=24, budget=c.budget,
                              cancel=c.cancel)
            try:
                data = first_json(answer)
                k = data.get("intruder") if isinstance(data, dict) else data
                if isinstance(k, bool) or not isinstance(k, (int, float)) or \
                        not float(k).is_integer() or not 0 <= int(k) < len(tr.texts):
                    raise ValueError(f"expected an example number 0-{len(tr.texts) - 1}")
                return int(k)
            except (ValueError, AttributeError, RecursionError) as err:
                raise ResponseParseError(
                    f"Could not read the intruder from model {llm.model!r} at "
                    f"{llm.base_url}: {err}. Expected {{\"intruder\": <number>}}; got "
                    f"{str(answer)[:200]!r}.") from None

        answers = llm.map(ask, trials, c.cancel)
    correct = np.array([float(a == tr.intruder) for a, tr in zip(answers, trials)])
    out.samples = [{"records": tr.records, "intruder": tr.intruder, "answer": a,
                    "texts": tr.texts} for a, tr in zip(answers, trials)]

    def stat(w: np.ndarray) -> np.ndarray:
        return ((w @ correct) / w.sum(1))[:, None]

    return _finish(out, stat, ("accuracy",), len(trials), c.seed, c.n_boot)


def find_embedder() -> Any | None:
    """A sentence-embedding model available offline: the local folder named by the
    ``IW_EMBEDDING_MODEL`` environment variable, loaded with sentence-transformers; None when
    there is none (the hub is never asked)."""
    path = os.environ.get("IW_EMBEDDING_MODEL")
    if not path or not os.path.isdir(path):
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    return SentenceTransformer(path, local_files_only=True)


def embedding_similarities(embedder: Any, explanation: str, texts: Sequence[str]) -> np.ndarray:
    """float [text]: cosine similarity of `EMBED_QUERY` + explanation with each text."""
    vecs = np.asarray(embedder.encode([EMBED_QUERY + explanation, *texts]), dtype=np.float64)
    if vecs.ndim != 2 or len(vecs) != len(texts) + 1:
        raise ValueError(f"embedder.encode must return one vector per text, [n, d]; got shape "
                         f"{list(vecs.shape)} for {len(texts) + 1} texts.")
    norms = np.linalg.norm(vecs, axis=1)
    norms[norms == 0] = 1.0
    unit = vecs / norms[:, None]
    return unit[1:] @ unit[0]


def _embedding(c: _Context, embedder: Any) -> ScorerResult:
    out = ScorerResult("embedding")
    embedder = embedder if embedder is not None else find_embedder()
    if embedder is None:
        raise EmbeddingUnavailableError(
            "No embedding model available offline: pass embedder=<an object with "
            "encode(list of texts) -> [n, d]> (e.g. a sentence_transformers.SentenceTransformer "
            "loaded from a local folder), or set IW_EMBEDDING_MODEL to such a folder.")
    chosen = c.labelled
    if not _needs_both(out, chosen):
        return out
    texts = ["".join(c.records[i].tokens) for i, _ in chosen]
    sims = embedding_similarities(embedder, c.explanation, texts)
    labels = [lab for _, lab in chosen]
    out.samples = [{"record": i, "activating": bool(lab), "similarity": float(s), "text": t}
                   for (i, lab), s, t in zip(chosen, sims, texts)]
    return _finish(out, auc_statistic(labels, sims), ("auc",), len(labels), c.seed, c.n_boot,
                   labels)


def surprisal_losses(lm: Any, prefix: str, texts: Sequence[str], batch_size: int = 16
                     ) -> list[np.ndarray]:
    """Per text, float [tokens - 1]: `lm`'s loss on each of the text's tokens after the first,
    with `prefix` before the text (the prefix tokenized with the model's BOS rule, the text
    without special tokens)."""
    head = lm.to_tokens(prefix)[0].tolist()
    tok = lm.tokenizer
    rows, spans = [], []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        if len(ids) < 2:
            raise ValueError(f"A sample of fewer than 2 tokens cannot be scored for surprisal: "
                             f"{t!r}.")
        rows.append(head + ids)
        spans.append((len(head) + 1, len(head) + len(ids)))  # positions scored: 2nd..last
    out = []
    for start in range(0, len(rows), batch_size):
        run = lm.run(rows[start:start + batch_size])
        loss = run.loss.float().cpu().numpy()  # [batch, pos]: loss of token i given :i
        for b, (lo, hi) in enumerate(spans[start:start + batch_size]):
            out.append(loss[b, lo:hi].astype(np.float64))
    return out


def surprisal_prompt(explanation: str) -> str:
    """The prompt that comes before each sample (explanation or `SURPRISAL_BASELINE`)."""
    return f"{SURPRISAL_INTRO}Description: \n{explanation}\n Sentences:\n"


def _surprisal(c: _Context, lm: Any) -> ScorerResult:
    out = ScorerResult("surprisal")
    if lm is None:
        raise ValueError("The surprisal scorer needs a language model: pass lm=<an "
                         "interp_widgets Model>, e.g. iw.load_model('demo').")
    chosen = c.labelled
    if not _needs_both(out, chosen):
        return out
    texts = ["".join(c.records[i].tokens) for i, _ in chosen]
    with_expl = surprisal_losses(lm, surprisal_prompt(c.explanation), texts)
    without = surprisal_losses(lm, surprisal_prompt(SURPRISAL_BASELINE), texts)
    reduction = np.array([float(b.mean() - e.mean()) for b, e in zip(without, with_expl)])
    labels = [lab for _, lab in chosen]
    y = np.asarray(labels, dtype=bool)
    out.samples = [{"record": i, "activating": bool(lab), "loss_reduction": float(r),
                    "text": t} for (i, lab), r, t in zip(chosen, reduction, texts)]
    auc = auc_statistic(labels, reduction)
    pos, neg = y.astype(float), (~y).astype(float)

    def stat(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.concatenate([auc(w), ((w @ (pos * reduction)) / (w @ pos))[:, None],
                                   ((w @ (neg * reduction)) / (w @ neg))[:, None]], 1)

    return _finish(out, stat, ("auc", "reduction_activating", "reduction_non_activating"),
                   len(labels), c.seed, c.n_boot, labels)


def run_scorers(explanation: str, records: Sequence[ActivationRecord],
                scorers: str | Sequence[str] = ("detection", "fuzzing"), *,
                llm: Client | None = None, pred: list[list[float]] | None = None,
                lm: Any = None, embedder: Any = None, active_min: int = 1,
                examples_per_call: int = 5, seed: int = 0, n_boot: int = 1000,
                budget: Budget | None = None, cancel: threading.Event | None = None,
                on_step: Callable[[str], Any] | None = None) -> dict[str, ScorerResult]:
    """Run the named scorers (see the module docstring) on held-out `records`.

    llm: a `Client` for the judge (detection, fuzzing, intruder); without one they score
    offline from `pred` (the explanation's simulated activations, 0-10, [record][pos]; computed
    offline when not given). lm: the language model for surprisal. embedder: the embedding
    model (default: `find_embedder`). examples_per_call: examples per judge prompt (the
    intruder shows that many, one of them the intruder). n_boot: bootstrap resamples of the
    intervals (0: none). A scorer that cannot run (no embedding model) gives a result with
    `error` set; the others go on."""
    from .records import _check_records, levels

    names = check_scorers(scorers)
    records = _check_records(records)
    if llm is None and pred is None:
        from .offline import simulate_offline

        pred = simulate_offline(str(explanation), records)
    c = _Context(str(explanation), records, levels(records), pred, llm, active_min,
                 examples_per_call, seed, budget, cancel, n_boot)
    out: dict[str, ScorerResult] = {}
    for name in names:
        (on_step or (lambda s: None))(name)
        try:
            if name == "embedding":
                out[name] = _embedding(c, embedder)
            elif name == "surprisal":
                out[name] = _surprisal(c, lm)
            else:
                out[name] = {"detection": _detection, "fuzzing": _fuzzing,
                             "intruder": _intruder}[name](c)
        except EmbeddingUnavailableError as err:
            out[name] = ScorerResult(name, error=str(err))
    return out


__all__ = ["SCORERS", "EmbeddingUnavailableError", "IntruderTrial", "ScorerResult",
           "check_scorers", "classification_metrics", "find_embedder", "fuzz_samples",
           "highlight", "intruder_trials", "record_labels", "run_scorers", "surprisal_losses"]
