"""Sparse and dense linear probes (scikit-learn), after Gurnee et al. 2023, "Finding Neurons in a
Haystack": does a handful of units carry a binary concept?

`sparse_probe` splits the examples once (stratified; or by `groups`, e.g. document ids, so that
tokens of one document never sit on both sides, with classes balanced across the groups). Rows
from `token_activations` carry their document ids, and the split then groups by document by
default (`groups="auto"`); a plain matrix is split by row at random, and the result's `notes`
say which was done. Splitting tokens at random puts every document on both sides, and the
held-out score then rewards recognising documents seen in training: on 120 demo documents
(`corpus_with_labels(120, seed=7)`), the dense probe for "sport" on every token of
blocks.0.mlp.hook_post scored F1 0.384 [0.35, 0.41] split by row and 0.352 [0.16, 0.54] split
by document (the row split's interval, over rows, is also far too narrow). It scores
every unit on the training split only
(`mean_diff`: |mean over positives - mean over negatives|, as in the paper; `f_stat`: the ANOVA F
statistic, scikit-learn's `f_classif`), and for each k fits a logistic regression with balanced
class weights on the k best units. F1 (of the positive class) and accuracy are measured on the
held-out split. The dense probe on every unit is the ceiling. Features are standardised with the
training split's mean and scale before the fit (so the L2 penalty treats every basis alike); the
solver is `SOLVER`.

Every F1 carries an interval (`f1_ci`, `dense_f1_ci`: `Estimate`s). With one split, from a
bootstrap of the held-out groups (documents, or rows when there are none): the F1 recomputed
from each resample's true / false positives and false negatives, which is the test set's
sampling error for that fitted probe. With `n_folds` (and `repeats`), from repeated grouped
folds: the F1 is the mean over every fold of every repeat, and the interval a bootstrap of the
folds' F1s, which also holds the split-to-split variation of training (folds share training
rows, so read it as a spread, not an exact sampling interval).

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

from .uncertainty import Estimate, bootstrap, bootstrap_mean

SELECTIONS = ("mean_diff", "f_stat")
DEFAULT_K = (1, 2, 4, 8, 16, 32)
#: Newton steps with a Cholesky solve: exact, and 3x faster than lbfgs on dense probes of a few
#: hundred standardised units, which lbfgs needs hundreds of iterations for
SOLVER = "newton-cholesky"


@dataclass
class ProbeSplit:
    """Indices of the training and held-out examples; `groups` [example] the group (document)
    of each row, or None when rows were split at random; `grouped_by`: "document", "groups"
    (ids the caller gave) or "row"."""

    train: np.ndarray
    test: np.ndarray
    groups: np.ndarray | None = None
    grouped_by: str = "row"

    def describe(self) -> str:
        """One line saying how the rows were split."""
        if self.groups is None:
            return (f"split by row at random ({len(self.train)} train / {len(self.test)} "
                    "held out): no document ids were given, so tokens of one document can sit "
                    "on both sides; pass groups=<document id per row>")
        n_tr = len(np.unique(self.groups[self.train]))
        n_te = len(np.unique(self.groups[self.test]))
        return (f"split by {'document' if self.grouped_by == 'document' else 'group'}: "
                f"{n_tr} train / {n_te} held out, none on both sides")


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
    f1_ci: list[Estimate] = field(default_factory=list)  # one per k
    dense_f1_ci: Estimate | None = None
    grouped_by: str = "row"
    n_folds: int = 1

    def frame(self):
        """A pandas DataFrame: one row per k (k, f1, f1_low, f1_high, accuracy, units)."""
        import pandas as pd

        lo, hi = _bounds(self.f1_ci, len(self.k))
        return pd.DataFrame({"k": self.k, "f1": self.f1, "f1_low": lo, "f1_high": hi,
                             "accuracy": self.accuracy, "units": self.selected})


def _bounds(ci: Sequence[Estimate], n: int) -> tuple[list[float], list[float]]:
    if len(ci) != n:
        return [math.nan] * n, [math.nan] * n
    return [e.low for e in ci], [e.high for e in ci]


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


def _groups(groups: Any, n: int, carried: Any = None) -> tuple[np.ndarray | None, str]:
    """(group id per row or None, "document" / "groups" / "row") from the `groups` argument:
    "auto" takes the document ids the rows carry (`carried`, e.g. TokenActivations.doc), if
    any; None splits by row; a TokenActivations gives its documents; else ids per row."""
    kind = "groups"
    if isinstance(groups, str):
        if groups != "auto":
            raise ValueError(f"groups must be 'auto', None, or one group id per example; got "
                             f"{groups!r}.")
        groups, kind = carried, "document"
    elif isinstance(groups, TokenActivations):
        groups, kind = groups.doc, "document"
    if groups is None:
        return None, "row"
    g = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have one entry per example ({n}); got shape "
                         f"{list(g.shape)}.")
    return g, kind


def split(labels: np.ndarray, *, test_size: float = 0.3, seed: int = 0,
          groups: Any = None) -> ProbeSplit:
    """A stratified train/test split; with `groups` (one id per example, or a
    `TokenActivations` for its documents), one fold of `StratifiedGroupKFold` with
    round(1 / test_size) folds (whole groups, classes balanced as far as groups allow). Both
    sides must hold both classes."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(labels))
    g, kind = _groups(groups, len(labels))
    if g is None:
        if np.bincount(labels, minlength=2).min() < 2:
            raise ValueError("Each class needs at least 2 examples to be split into train and "
                             f"test; counts are {np.bincount(labels, minlength=2).tolist()}.")
        tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    else:
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / test_size)), shuffle=True,
                                     random_state=seed)
        tr, te = next(folds.split(idx, labels, g))
    for name, part in (("training", tr), ("held-out", te)):
        if len(set(labels[part].tolist())) < 2:
            raise ValueError(f"The {name} split holds one class only: give more examples of "
                             "each class, or other groups / seed.")
    return ProbeSplit(np.sort(tr), np.sort(te), g, kind if g is not None else "row")


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


def _fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, C: float,
                 max_iter: int) -> np.ndarray:
    """int [test]: predictions of a standardised, class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(
        class_weight="balanced", C=C, max_iter=max_iter, solver=SOLVER))
    clf.fit(x_tr, y_tr)
    return clf.predict(x_te)


def _fit_score(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
               C: float, max_iter: int) -> tuple[float, float]:
    """(F1, accuracy) on the test split of a standardised, class-balanced logistic regression."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = _fit_predict(x_tr, y_tr, x_te, C, max_iter)
    return float(f1_score(y_te, pred, zero_division=0.0)), float(accuracy_score(y_te, pred))


def f1_interval(y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None = None, *,
                seed: int = 0, n_boot: int = 2000) -> Estimate:
    """F1 of the positive class with a bootstrap interval over `groups` (documents; rows when
    None): per group its true positives, false positives and false negatives, and F1 =
    2 TP / (2 TP + FP + FN) of each resample's weighted sums (BCa, `uncertainty.bootstrap`)."""
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    _, inv = np.unique(g, return_inverse=True)
    counts = np.zeros((inv.max() + 1 if len(inv) else 0, 3))
    np.add.at(counts, inv, np.stack([(y == 1) & (pred == 1), (y == 0) & (pred == 1),
                                     (y == 1) & (pred == 0)], 1).astype(float))

    def stat(w: np.ndarray) -> np.ndarray:
        tp, fp, fn = (w @ counts).T
        den = 2 * tp + fp + fn
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 0.0)

    return bootstrap(stat, len(counts), n_boot=n_boot, seed=seed)[0]


def _rows(activations: Any, hook: str | None, name: str = "activations"
          ) -> tuple[np.ndarray, Any]:
    """(matrix [example, unit], the document ids the rows carry or None)."""
    if isinstance(activations, TokenActivations):
        return _matrix(activations.matrix(hook), name), activations.doc
    return _matrix(activations, name), None


def probe_folds(labels: Any, *, n_folds: int, repeats: int = 1, seed: int = 0,
                groups: Any = None) -> list[ProbeSplit]:
    """`repeats` x `n_folds` splits: (Stratified)GroupKFold with `groups`, StratifiedKFold
    without, reshuffled with seed + r for repeat r. Each fold's both sides hold both classes."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(labels).astype(int)
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an int >= 2; got {n_folds!r}.")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1; got {repeats!r}.")
    g, kind = _groups(groups, len(y))
    out = []
    idx = np.arange(len(y))
    for r in range(repeats):
        if g is None:
            folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed + r).split(idx, y)
        else:
            folds = StratifiedGroupKFold(n_folds, shuffle=True,
                                         random_state=seed + r).split(idx, y, g)
        for tr, te in folds:
            if len(set(y[tr].tolist())) < 2 or len(set(y[te].tolist())) < 2:
                raise ValueError(f"A fold of {n_folds} holds one class only on one side: use "
                                 "fewer folds, or more examples / groups of each class.")
            out.append(ProbeSplit(np.sort(tr), np.sort(te), g, kind))
    return out


def sparse_probe(activations: Any, labels: Any, *, k: Sequence[int] = DEFAULT_K,
                 selection: str = "mean_diff", positive: Any = None, test_size: float = 0.3,
                 seed: int = 0, groups: Any = "auto", dense: bool = True, C: float = 1.0,
                 max_iter: int = 2000, probe_split: ProbeSplit | Sequence[ProbeSplit] | None = None,
                 n_folds: int | None = None, repeats: int = 1, hook: str | None = None
                 ) -> SparseProbeResult:
    """k-sparse probes (see the module docstring).

    activations: [example, unit] (tensor or array), or a `TokenActivations` (`hook` picks the
    hook when it holds several), whose rows carry their documents. labels: [example] binary, or
    any labels with `positive` naming the positive class. k: the sparsity levels (values above
    the number of units are dropped). groups: "auto" (the documents the rows carry, else a
    random split by row), None (split by row), or [example] group ids kept on one side.
    dense: also fit the probe on every unit (the ceiling). probe_split: reuse a split (or a
    list of folds). n_folds, repeats: repeated grouped k-fold instead of one split."""
    x, carried = _rows(activations, hook)
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
    if probe_split is not None:
        splits = [probe_split] if isinstance(probe_split, ProbeSplit) else list(probe_split)
    else:
        g, kind = _groups(groups, len(y), carried)
        if n_folds is None:
            splits = [split(y, test_size=test_size, seed=seed, groups=g)]
        else:
            splits = probe_folds(y, n_folds=n_folds, repeats=repeats, seed=seed, groups=g)
        for sp in splits:
            sp.grouped_by = kind
    notes.append(splits[0].describe() + (f"; {len(splits)} folds" if len(splits) > 1 else ""))
    first = splits[0]
    scores = unit_scores(x[first.train], y[first.train], selection)
    out = SparseProbeResult(k=ks, f1=[], accuracy=[], selected=[], unit_scores=scores,
                            selection=selection, n_train=len(first.train),
                            n_test=len(first.test), n_units=x.shape[1],
                            positive_rate=float(y.mean()), notes=notes,
                            grouped_by=first.grouped_by, n_folds=len(splits))
    per_k: list[list[tuple[float, float, np.ndarray, np.ndarray]]] = [[] for _ in ks]
    dense_runs = []
    for j, sp in enumerate(splits):
        tr, te = sp.train, sp.test
        order = np.argsort(-(scores if j == 0 else unit_scores(x[tr], y[tr], selection)),
                           kind="stable")
        for i, kk in enumerate(ks):
            units = order[:kk]
            pred = _fit_predict(x[tr][:, units], y[tr], x[te][:, units], C, max_iter)
            per_k[i].append(_f1_acc(y[te], pred) + (pred, units))
        if dense:
            pred = _fit_predict(x[tr], y[tr], x[te], C, max_iter)
            dense_runs.append(_f1_acc(y[te], pred) + (pred, None))
    for i in range(len(ks)):
        f1, acc, est = _summarise(per_k[i], splits, y, seed)
        out.f1.append(f1)
        out.accuracy.append(acc)
        out.f1_ci.append(est)
        out.selected.append(per_k[i][0][3].tolist())
    if dense:
        out.dense_f1, out.dense_accuracy, out.dense_f1_ci = _summarise(dense_runs, splits, y,
                                                                       seed)
    return out


def _f1_acc(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return float(f1_score(y, pred, zero_division=0.0)), float(accuracy_score(y, pred))


def _summarise(runs: list[tuple[float, float, np.ndarray, Any]], splits: list[ProbeSplit],
               y: np.ndarray, seed: int) -> tuple[float, float, Estimate]:
    """(F1, accuracy, F1 interval) of one probe over one split (interval over held-out groups)
    or several folds (mean over folds, interval over folds)."""
    if len(runs) == 1:
        sp = splits[0]
        groups = None if sp.groups is None else sp.groups[sp.test]
        est = f1_interval(y[sp.test], runs[0][2], groups, seed=seed)
        return runs[0][0], runs[0][1], est
    f1s = np.array([r[0] for r in runs])
    return float(f1s.mean()), float(np.mean([r[1] for r in runs])), bootstrap_mean(f1s,
                                                                                     seed=seed)


def dense_probe(activations: Any, labels: Any, *, positive: Any = None, test_size: float = 0.3,
                seed: int = 0, groups: Any = "auto", C: float = 1.0, max_iter: int = 2000,
                probe_split: ProbeSplit | None = None, hook: str | None = None
                ) -> tuple[float, float]:
    """(F1, accuracy) held out of a logistic probe on every unit (the ceiling for sparse
    probes); same split and estimator as `sparse_probe`."""
    x, carried = _rows(activations, hook)
    y = binary_labels(labels, positive)
    g, _ = _groups(groups, len(y), carried)
    sp = probe_split or split(y, test_size=test_size, seed=seed, groups=g)
    return _fit_score(x[sp.train], y[sp.train], x[sp.test], y[sp.test], C, max_iter)


@dataclass
class ProbeComparison:
    """`sparse_probe` results of several bases on one split (or one set of folds)."""

    results: dict[str, SparseProbeResult]
    split: ProbeSplit
    folds: list[ProbeSplit] = field(default_factory=list)

    def frame(self):
        """Long DataFrame: basis, k ("dense" for the ceiling), f1, f1_low, f1_high, accuracy,
        n_units."""
        import pandas as pd

        rows = []
        for name, r in self.results.items():
            lo, hi = _bounds(r.f1_ci, len(r.k))
            rows += [{"basis": name, "k": kk, "f1": f, "f1_low": a_lo, "f1_high": a_hi,
                      "accuracy": a, "n_units": r.n_units}
                     for kk, f, a_lo, a_hi, a in zip(r.k, r.f1, lo, hi, r.accuracy)]
            if not math.isnan(r.dense_f1):
                ci = r.dense_f1_ci
                rows.append({"basis": name, "k": "dense", "f1": r.dense_f1,
                             "f1_low": ci.low if ci else math.nan,
                             "f1_high": ci.high if ci else math.nan,
                             "accuracy": r.dense_accuracy, "n_units": r.n_units})
        return pd.DataFrame(rows)


def compare_bases(bases: Mapping[str, Any], labels: Any, *, k: Sequence[int] = DEFAULT_K,
                  selection: str = "mean_diff", positive: Any = None, test_size: float = 0.3,
                  seed: int = 0, groups: Any = "auto", dense: bool = True, C: float = 1.0,
                  max_iter: int = 2000, n_folds: int | None = None, repeats: int = 1,
                  hook: str | None = None) -> ProbeComparison:
    """`sparse_probe` on each basis ({name: activations [example, unit], or TokenActivations}),
    all on the same train/test split (or folds) of the same examples. groups: as in
    `sparse_probe` ("auto": the documents of any TokenActivations basis)."""
    if not bases:
        raise ValueError("bases is empty: give {name: activations [example, unit]}.")
    y = binary_labels(labels, positive)
    rows = {name: _rows(a, hook, name) for name, a in bases.items()}
    sizes = {name: x.shape[0] for name, (x, _) in rows.items()}
    if set(sizes.values()) != {len(y)}:
        raise ValueError(f"Every basis needs one row per label ({len(y)}); got {sizes}.")
    carried = next((d for _, d in rows.values() if d is not None), None)
    g, kind = _groups(groups, len(y), carried)
    if n_folds is None:
        splits = [split(y, test_size=test_size, seed=seed, groups=g)]
    else:
        splits = probe_folds(y, n_folds=n_folds, repeats=repeats, seed=seed, groups=g)
    for sp in splits:
        sp.grouped_by = kind
    return ProbeComparison({name: sparse_probe(x, y, k=k, selection=selection, dense=dense,
                                               C=C, max_iter=max_iter, probe_split=splits,
                                               seed=seed)
                            for name, (x, _) in rows.items()}, splits[0], splits)


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

    def __len__(self) -> int:
        return len(self.doc)

    def matrix(self, hook: str | None = None) -> torch.Tensor:
        """Tensor[token, d] at `hook` (may be left out when there is one hook)."""
        if hook is None:
            if len(self.acts) != 1:
                raise ValueError(f"These activations hold {len(self.acts)} hooks: pass hook= "
                                 f"one of {sorted(self.acts)}.")
            return next(iter(self.acts.values()))
        if hook not in self.acts:
            raise ValueError(f"No activations at {hook!r}; these hold {sorted(self.acts)}.")
        return self.acts[hook]

    def select(self, rows: Any) -> TokenActivations:
        """The rows picked by `rows` (a bool mask or indices [token]), documents kept."""
        idx = torch.as_tensor(np.asarray(rows))
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(f"A row mask needs {len(self)} entries; got {list(idx.shape)}.")
            idx = idx.nonzero()[:, 0]
        picked = idx.tolist()
        return TokenActivations({h: a[idx] for h, a in self.acts.items()}, self.doc[idx],
                                self.pos[idx], [self.tokens[i] for i in picked])

    def with_basis(self, name: str, values: Any) -> TokenActivations:
        """A copy that also holds `values` [token, units] under `name` (e.g. SAE latents or
        PCA codes of these rows), so that they carry the same documents."""
        v = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
        if v.shape[0] != len(self):
            raise ValueError(f"{name} has {v.shape[0]} rows; these activations have "
                             f"{len(self)}.")
        return TokenActivations({**self.acts, name: v}, self.doc, self.pos, self.tokens)


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
        keep = run.attention_mask.bool()
        if skip_bos:
            keep &= ~model.bos_mask(run.tokens)
        keep = keep.cpu()
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
