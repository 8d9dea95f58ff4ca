"""A unit census: draw units at random, scan, explain and score each, and say what it is.

Classes (in this order):
- ``dead``: never above `dead_below` over the scanned corpus;
- ``dense``: active (above 10% of its own maximum) on more than `dense_above` of positions;
- ``monosemantic``: the lower end of the 95% interval of its explanation's simulation score
  (bootstrap over held-out records) is above `threshold`;
- ``polysemantic``: the rest. For these the census lists the context groups it fires on (its
  top examples grouped by the activating token), the most correlated neurons of its layer
  (neuron bases), and, given an SAE at a hook the model computes, the SAE features most active
  where the unit peaks.

    table = iw.census(model, 1, iw.demo.corpus(400), n=20)   # neurons of layer 1
    table = iw.census(model, sae, corpus, n=20)              # SAE latents (any iw.scan basis)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..model import Model


def _scan(model: Model, basis: Any, corpus: Sequence[str]):
    """(UnitScan, unit kind) of `basis` (a layer number: its MLP neurons; or any basis of
    `iw.scan`: an SAE, a transcoder or dictionary basis, `iw.neurons(...)`)."""
    from ..units import neurons, scan

    if isinstance(basis, int) and not isinstance(basis, bool):
        basis = neurons(model, basis)
    s = scan(model, basis, corpus, progress=False, correlations=True)
    kind = str(s.meta["basis"]["kind"])
    return s, {"neurons": "neuron", "sae": "feature"}.get(kind, kind)


def _active_fraction(scan: Any, unit: int) -> float:
    """Share of scanned positions where the unit is above 10% of its maximum (histogram)."""
    counts, edges = scan.histogram(unit)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    edges = torch.as_tensor(edges, dtype=torch.float64)
    top = float(scan.top_values(unit).max()) if len(scan.top_values(unit)) else 0.0
    if counts.sum() == 0 or top <= 0:
        return 0.0
    centres = (edges[:-1] + edges[1:]) / 2 if len(edges) == len(counts) + 1 else edges
    return float(counts[centres > 0.1 * top].sum() / counts.sum())


def _groups(examples: list, k: int = 3) -> list[tuple[str, int]]:
    """[(activating token, how many top examples)] of the k commonest."""
    return Counter(e.tokens[e.center] for e in examples).most_common(k)


def _sae_features(model: Model, sae: Any, examples: list, k: int = 3) -> list[tuple[int, float]]:
    """[(feature, mean activation)] of the SAE features most active at the unit's top examples
    (each example's context re-run, read at its centre)."""
    total, n = None, 0
    for e in examples:
        ids = [model.tokenizer.convert_tokens_to_ids(t) for t in e.tokens]
        if any(i is None for i in ids):
            text = "".join(e.tokens[: e.center + 1])
            toks = model.to_tokens(text)
        else:
            toks = torch.tensor([ids[: e.center + 1]])
        run = model.run(toks, names=[sae.hook_name])
        f = sae.encode(run.cache[sae.hook_name][0, -1].to(sae.W_enc.dtype)).float().cpu()
        total = f if total is None else total + f
        n += 1
    if total is None:
        return []
    mean = total / n
    top = mean.topk(min(k, mean.numel()))
    return [(int(i), round(float(v), 4)) for i, v in zip(top.indices, top.values) if v > 0]


def census(model: Model, basis: Any, corpus: Sequence[str], *, n: int = 50, llm: Any = None,
           threshold: float = 0.3, dead_below: float = 1e-6, dense_above: float = 0.3,
           sae: Any = None, seed: int = 0) -> pd.DataFrame:
    """One row per drawn unit: unit, class, explanation, score with its interval (low, high),
    max activation, active fraction, groups (polysemantic: top tokens with counts),
    correlated (neurons), sae_features (when `sae` is given). See the module docstring.

    llm: an `iw.autointerp.Client` to explain and simulate with a model; None: the offline
    statistical explainer. n: units drawn without replacement (seeded)."""
    from .. import autointerp
    from ..analysis.neurons import correlated_neurons
    from ..analysis.uncertainty import bootstrap_correlation

    corpus = list(corpus)
    if not corpus:
        raise ValueError("The corpus is empty: give documents to scan, e.g. iw.demo.corpus(400).")
    scan, kind = _scan(model, basis, corpus)
    total = scan.n_units
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}.")
    units = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)
    mode = {"explainer": "llm", "client": llm} if llm is not None else {"explainer": "offline"}
    sim = {"simulator": "llm", "client": llm} if llm is not None else {"simulator": "offline"}
    rows = []
    for u in sorted(int(x) for x in units):
        top = scan.top_values(u)
        peak = float(top.max()) if len(top) else 0.0
        row: dict[str, Any] = {"unit": u, "kind": kind, "max": peak,
                               "active_fraction": _active_fraction(scan, u)}
        if peak <= dead_below:
            rows.append({**row, "class": "dead"})
            continue
        if row["active_fraction"] > dense_above:
            rows.append({**row, "class": "dense"})
            continue
        records = autointerp.records_from_scan(scan, u)
        train, test = autointerp.split_records(records)
        text = autointerp.explain(train, **mode)
        pred = autointerp.simulate(text, test, **sim)
        est = bootstrap_correlation([list(r.activations) for r in test], pred)
        row.update(explanation=str(text), score=float(est.value), low=float(est.low),
                   high=float(est.high))
        mono = not np.isnan(est.low) and est.low > threshold
        row["class"] = "monosemantic" if mono else "polysemantic"
        if not mono:
            examples = scan.top_examples(u)
            row["groups"] = _groups(examples)
            if kind == "neuron":
                row["correlated"] = [(int(r.neuron), round(float(r.correlation), 3))
                                     for r in correlated_neurons(scan, u, k=3).itertuples()]
            if sae is not None:
                row["sae_features"] = _sae_features(model, sae, examples[:10])
        rows.append(row)
    cols = ["unit", "kind", "class", "score", "low", "high", "explanation", "max",
            "active_fraction", "groups", "correlated", "sae_features"]
    df = pd.DataFrame(rows)
    return df.reindex(columns=[c for c in cols if c in df.columns or c in
                               ("score", "low", "high", "explanation")])
