"""Sparse and dense linear probes (scikit-learn), after Gurnee et al. 2023, "Finding Neurons in a
Haystack": does a handful of units carry a binary concept?

`sparse_probe` splits the examples once (stratified; or by `groups`, e.g. document ids, so that
tokens of one document never sit on both sides, with classes balanced across the groups), scores
every unit on the training split only
(`mean_diff`: |mean over positives - mean over negatives|, as in the paper; `f_stat`: the ANOVA F
statistic, scikit-learn's `f_classif`), and for each k fits a logistic regression with balanced
class weights on the k best units. F1 (of the positive class) and accuracy are measured on the
held-out split. The dense probe on every unit is the ceiling. Features are standardised with the
training split's mean and scale before the fit (so the L2 penalty treats every basis alike); the
solver is `SOLVER`.

A basis is just an activation matrix [example, unit]: neurons (an MLP hook), SAE latents
(`sae.encode(resid)`), PCA or ICA codes (`analysis.dictionaries`); `dictionary_bases` builds the
last three from residual activations, and `compare_bases` probes several bases on one split.

TransformerLens 4.3's `fit_sparse_probe` selects by class-mean difference only and fits with its
own optimiser; we use scikit-learn so that `f_stat` selection and the standard estimator are
available, and check it against scikit-learn called directly in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

SELECTIONS = ("mean_diff", "f_stat")
DEFAULT_K = (1, 2, 4, 8, 16, 32)
#: Newton steps with a Cholesky solve: exact, and 3x faster than lbfgs on dense probes of a few
#: hundred standardised units, which lbfgs needs hundreds of iterations for
SOLVER = "newton-cholesky"


@dataclass
class ProbeSplit:
    """Indices of the training and held-out examples."""

    train: np.ndarray
    test: np.ndarray


@dataclass
class SparseProbeResult:
    """Held-out F1 and accuracy for each k, the units chosen (best first), the training-split
    selection score of every unit, and the dense probe's F1 / accuracy (NaN if not fitted)."""

    k: list[int]
    f1: list[float]
    accuracy: list[float]
    selected: list[list[int]]
    unit_scores: np.ndarray  # [unit]
    selection: str
    dense_f1: float = math.nan
    dense_accuracy: float = math.nan
    n_train: int = 0
    n_test: int = 0
    n_units: int = 0
    positive_rate: float = math.nan
    notes: list[str] = field(default_factory=list)

    def frame(self):
        """A pandas DataFrame: one row per k (k, f1, accuracy, units)."""
        import pandas as pd

        return pd.DataFrame({"k": self.k, "f1": self.f1, "accuracy": self.accuracy,
                             "units": self.selected})


def _matrix(x: Any, name: str = "activations") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a matrix [example, unit]; got shape {list(a.shape)}.")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or inf: drop padding positions first.")
    return a


def binary_labels(labels: Any, positive: Any = None) -> np.ndarray:
    """int array [example] of 0/1: `labels` == `positive`, or the labels themselves when they
    are already boolean or 0/1."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a vector [example]; got shape {list(y.shape)}.")
    if positive is not None:
        return (y == positive).astype(int)
    values = set(np.unique(y).tolist())
    if values <= {0, 1}:
        return y.astype(int)
    shown = sorted(map(str, values))[:6]
    raise ValueError(f"labels have {len(values)} classes ({', '.join(shown)}): pass "
                     "positive=<class> for a one-vs-rest probe.")


def split(labels: np.ndarray, *, test_size: float = 0.3, seed: int = 0,
          groups: Any = None) -> ProbeSplit:
    """A stratified train/test split; with `groups`, one fold of `StratifiedGroupKFold` with
    round(1 / test_size) folds (whole groups, classes balanced as far as groups allow). Both
    sides must hold both classes."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(labels))
    if groups is None:
        if np.bincount(labels, minlength=2).min() < 2:
            raise ValueError("Each class needs at least 2 examples to be split into train and "
                             f"test; counts are {np.bincount(labels, minlength=2).tolist()}.")
        tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    else:
        g = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
        if g.shape != labels.shape:
            raise ValueError(f"groups must have one entry per example ({len(labels)}); got "
                             f"shape {list(g.shape)}.")
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / test_size)), shuffle=True,
                                     random_state=seed)
        tr, te = next(folds.split(idx, labels, g))
    for name, part in (("training", tr), ("held-out", te)):
        if len(set(labels[part].tolist())) < 2:
            raise ValueError(f"The {name} split holds one class only: give more examples of "
                             "each class, or other groups / seed.")
    return ProbeSplit(np.sort(tr), np.sort(te))


def unit_scores(x: np.ndarray, y: np.ndarray, selection: str) -> np.ndarray:
    """float [unit]: how well each unit separates the classes (higher is better)."""
    if selection == "mean_diff":
        return np.abs(x[y == 1].mean(0) - x[y == 0].mean(0))
    if selection == "f_stat":
        import warnings

        from sklearn.feature_selection import f_classif

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant units give NaN
            f, _ = f_classif(x, y)
        return np.nan_to_num(f, nan=0.0)
    raise ValueError(f"selection must be one of {SELECTIONS}; got {selection!r}.")


def _fit_score(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
               C: float, max_iter: int) -> tuple[float, float]:
    """(F1, accuracy) on the test split of a standardised, class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(
        class_weight="balanced", C=C, max_iter=max_iter, solver=SOLVER))
    clf.fit(x_tr, y_tr)
    pred = clf.predict(x_te)
    return float(f1_score(y_te, pred, zero_division=0.0)), float(accuracy_score(y_te, pred))


def sparse_probe(activations: Any, labels: Any, *, k: Sequence[int] = DEFAULT_K,
                 selection: str = "mean_diff", positive: Any = None, test_size: float = 0.3,
                 seed: int = 0, groups: Any = None, dense: bool = True, C: float = 1.0,
                 max_iter: int = 2000, probe_split: ProbeSplit | None = None
                 ) -> SparseProbeResult:
    """k-sparse probes (see the module docstring).

    activations: [example, unit] (tensor or array); labels: [example] binary, or any labels with
    `positive` naming the positive class. k: the sparsity levels (values above the number of
    units are dropped). groups: [example] group ids kept on one side of the split.
    dense: also fit the probe on every unit (the ceiling). probe_split: reuse a split."""
    x = _matrix(activations)
    y = binary_labels(labels, positive)
    if len(y) != len(x):
        raise ValueError(f"activations have {len(x)} examples but labels have {len(y)}.")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}; got {selection!r}.")
    ks = sorted({int(v) for v in k})
    if not ks or ks[0] < 1:
        raise ValueError(f"k must be positive integers; got {list(k)!r}.")
    notes = []
    if ks[-1] > x.shape[1]:
        notes.append(f"k above {x.shape[1]} units dropped: {[v for v in ks if v > x.shape[1]]}")
        ks = [v for v in ks if v <= x.shape[1]] or [x.shape[1]]
    sp = probe_split or split(y, test_size=test_size, seed=seed, groups=groups)
    tr, te = sp.train, sp.test
    scores = unit_scores(x[tr], y[tr], selection)
    order = np.argsort(-scores, kind="stable")
    out = SparseProbeResult(k=ks, f1=[], accuracy=[], selected=[], unit_scores=scores,
                            selection=selection, n_train=len(tr), n_test=len(te),
                            n_units=x.shape[1], positive_rate=float(y.mean()), notes=notes)
    for kk in ks:
        units = order[:kk]
        f1, acc = _fit_score(x[tr][:, units], y[tr], x[te][:, units], y[te], C, max_iter)
        out.f1.append(f1)
        out.accuracy.append(acc)
        out.selected.append(units.tolist())
    if dense:
        out.dense_f1, out.dense_accuracy = _fit_score(x[tr], y[tr], x[te], y[te], C, max_iter)
    return out


def dense_probe(activations: Any, labels: Any, *, positive: Any = None, test_size: float = 0.3,
                seed: int = 0, groups: Any = None, C: float = 1.0, max_iter: int = 2000,
                probe_split: ProbeSplit | None = None) -> tuple[float, float]:
    """(F1, accuracy) held out of a logistic probe on every unit (the ceiling for sparse
    probes); same split and estimator as `sparse_probe`."""
    x, y = _matrix(activations), binary_labels(labels, positive)
    sp = probe_split or split(y, test_size=test_size, seed=seed, groups=groups)
    return _fit_score(x[sp.train], y[sp.train], x[sp.test], y[sp.test], C, max_iter)


@dataclass
class ProbeComparison:
    """`sparse_probe` results of several bases on one split."""

    results: dict[str, SparseProbeResult]
    split: ProbeSplit

    def frame(self):
        """Long DataFrame: basis, k ("dense" for the ceiling), f1, accuracy, n_units."""
        import pandas as pd

        rows = []
        for name, r in self.results.items():
            rows += [{"basis": name, "k": kk, "f1": f, "accuracy": a, "n_units": r.n_units}
                     for kk, f, a in zip(r.k, r.f1, r.accuracy)]
            if not math.isnan(r.dense_f1):
                rows.append({"basis": name, "k": "dense", "f1": r.dense_f1,
                             "accuracy": r.dense_accuracy, "n_units": r.n_units})
        return pd.DataFrame(rows)


def compare_bases(bases: Mapping[str, Any], labels: Any, *, k: Sequence[int] = DEFAULT_K,
                  selection: str = "mean_diff", positive: Any = None, test_size: float = 0.3,
                  seed: int = 0, groups: Any = None, dense: bool = True, C: float = 1.0,
                  max_iter: int = 2000) -> ProbeComparison:
    """`sparse_probe` on each basis ({name: activations [example, unit]}), all on the same
    train/test split of the same examples."""
    if not bases:
        raise ValueError("bases is empty: give {name: activations [example, unit]}.")
    y = binary_labels(labels, positive)
    sizes = {name: _matrix(a, name).shape[0] for name, a in bases.items()}
    if set(sizes.values()) != {len(y)}:
        raise ValueError(f"Every basis needs one row per label ({len(y)}); got {sizes}.")
    sp = split(y, test_size=test_size, seed=seed, groups=groups)
    return ProbeComparison({name: sparse_probe(a, y, k=k, selection=selection, dense=dense, C=C,
                                               max_iter=max_iter, probe_split=sp)
                            for name, a in bases.items()}, sp)


def dictionary_bases(resid: Any, *, sae: Any = None, n_components: int | None = None,
                     fit_on: np.ndarray | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """{"sae": latents, "pca": codes, "ica": codes} of residual activations [example, d_model].

    sae: an SAE (or anything with `encode`), left out when None. PCA and ICA (from
    `analysis.dictionaries`) get `n_components` (default min(d_model, 64): ICA's time grows
    fast with it) and are fitted on the rows `fit_on` only (e.g. `split.train`; default all
    rows, which uses no labels)."""
    from .dictionaries import fit_ica, fit_pca

    x = resid if isinstance(resid, torch.Tensor) else torch.as_tensor(np.asarray(resid))
    x = x.detach().float().cpu()
    n = n_components or min(x.shape[1], 64)
    # float64 for the fits: FastICA rarely meets its tolerance in float32 and runs to max_iter
    fit_rows = (x if fit_on is None else x[torch.as_tensor(fit_on)]).double().numpy()
    out = {}
    with torch.no_grad():
        if sae is not None:
            out["sae"] = sae.encode(x.to(getattr(sae, "dtype", x.dtype))).float().cpu()
        out["pca"] = fit_pca(fit_rows, n, seed=seed).encode(x)
        out["ica"] = fit_ica(fit_rows, n, seed=seed).encode(x)
    return out


@dataclass
class TokenActivations:
    """Activations of every real token of a corpus: `acts` {hook: Tensor[token, d]}, and for
    each token its document `doc` and position `pos` (LongTensor[token])."""

    acts: dict[str, torch.Tensor]
    doc: torch.Tensor
    pos: torch.Tensor
    tokens: list[str]


def token_activations(model: Any, docs: Sequence[str], hooks: Sequence[str], *,
                      batch_size: int = 16, skip_bos: bool = True) -> TokenActivations:
    """Activations at `hooks` for every real token of `docs` (position 0, the BOS token, left
    out when `skip_bos`), with the document and position of each row, for per-token probes
    (`groups=doc` keeps documents on one side of the split)."""
    from ..sae.activations import quiet_truncation

    model.check_hook_names(list(hooks))
    acts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    doc_ids, positions, strs = [], [], []
    for start in range(0, len(docs), batch_size):
        batch = list(docs[start:start + batch_size])
        with quiet_truncation():
            run = model.run(batch, names=list(hooks))
        keep = run.attention_mask.bool().cpu()
        if skip_bos:
            keep[:, 0] = False
        b, p = keep.nonzero(as_tuple=True)
        for h in hooks:
            acts[h].append(run.cache[h].detach().float().cpu()[keep].flatten(1))
        doc_ids.append(b + start)
        positions.append(p)
        rows = [run.str_tokens] if run.single else run.str_tokens
        strs += [rows[i][j] for i, j in zip(b.tolist(), p.tolist())]
    if not doc_ids:
        raise ValueError("docs is empty: give at least one document.")
    return TokenActivations({h: torch.cat(v) for h, v in acts.items()}, torch.cat(doc_ids),
                            torch.cat(positions), strs)
