"""ProbeView: held-out accuracy (or F1) of k-sparse probes against k, one line per basis, with
each basis's dense probe as a dashed ceiling (js/src/widgets/probe_view.ts). Numbers come from
`analysis.probing`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import traitlets as t

from ..analysis.probing import ProbeComparison, SparseProbeResult, _bounds, compare_bases
from ._base import BaseWidget
from ._codec import encode_array


def _results(results: Any) -> dict[str, SparseProbeResult]:
    if isinstance(results, ProbeComparison):
        return dict(results.results)
    if isinstance(results, SparseProbeResult):
        return {"probe": results}
    if isinstance(results, Mapping) and results and all(
            isinstance(r, SparseProbeResult) for r in results.values()):
        return dict(results)
    raise ValueError("ProbeView takes a ProbeComparison (analysis.compare_bases), a "
                     "SparseProbeResult, or {basis name: SparseProbeResult}; got "
                     f"{type(results).__name__}. Use ProbeView.from_bases(bases, labels) to "
                     "probe activation matrices.")


def _finite_pair(e: Any) -> list[float] | None:
    """[low, high] of an Estimate, None when it has no interval."""
    if e is None or not (np.isfinite(e.low) and np.isfinite(e.high)):
        return None
    return [float(e.low), float(e.high)]


class ProbeView(BaseWidget):
    """Accuracy (switch to F1 in the view) against k for each basis; hover a point for the
    units it uses (and, for F1, its 95% interval, e.g. ``0.42 [0.31, 0.52]``). `results`: see
    `_results`; metric: "accuracy" or "f1"."""

    _view = t.Unicode("probe_view").tag(sync=True)
    bases = t.List(t.Dict()).tag(sync=True)
    metric = t.Enum(["accuracy", "f1"], "accuracy").tag(sync=True)
    title = t.Unicode("").tag(sync=True)

    def __init__(self, results: Any, *, metric: str = "accuracy", title: str = "") -> None:
        self._results = _results(results)
        bases = []
        for name, r in self._results.items():
            lo, hi = _bounds(r.f1_ci, len(r.k))
            bases.append({
                "name": name, "selection": r.selection, "n_units": r.n_units,
                "n_train": r.n_train, "n_test": r.n_test,
                "k": encode_array(np.array(r.k, np.int64), "int32"),
                "accuracy": encode_array(np.array(r.accuracy, np.float32)),
                "f1": encode_array(np.array(r.f1, np.float32)),
                "f1_low": encode_array(np.array(lo, np.float32)),
                "f1_high": encode_array(np.array(hi, np.float32)),
                "dense_accuracy": None if np.isnan(r.dense_accuracy) else r.dense_accuracy,
                "dense_f1": None if np.isnan(r.dense_f1) else r.dense_f1,
                "dense_f1_ci": _finite_pair(r.dense_f1_ci),
                "split": r.notes[-1] if r.notes else "",
                "units": [encode_array(np.array(u[:32], np.int64), "int32") for u in r.selected],
            })
        super().__init__(bases=bases, metric=metric, title=title)

    @classmethod
    def from_bases(cls, bases: Mapping[str, Any], labels: Any, *, metric: str = "accuracy",
                   title: str = "", **probe_kwargs: Any) -> ProbeView:
        """Probe each basis ({name: activations [example, unit]}) with
        `analysis.compare_bases` and show the result."""
        return cls(compare_bases(bases, labels, **probe_kwargs), metric=metric, title=title)

    @property
    def data(self) -> dict[str, SparseProbeResult]:
        """{basis name: SparseProbeResult}."""
        return dict(self._results)
