"""UnitDashboards / `iw.dashboards(scan, units, path)`: many units of one scan on one page
(js/src/widgets/unit_dashboards.ts). The list (id, label, density, max) is synced up front;
each unit's dashboard (stats, histogram, logit effect, top / bottom / bucket / random examples)
is answered when the unit is opened. In the static export every unit's answer is its own
compressed block in the page, decoded by the browser only when that unit is opened, so a page
of thousands of units paints at once and needs no per-unit files and no network."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import traitlets as t

from ..interchange.units_adapter import check_units, logit_effects, unit_directions, unit_record
from ._base import BaseWidget, request_handler
from ._codec import encode_array
from .neuron_view import _example


class UnitDashboards(BaseWidget):
    """Dashboards of `units` (default: all) of `scan` (a `UnitScan`), searchable by id and label.

    model, basis: given both, each unit's logit effect (its output direction @ W_U) is shown.
    labels: {unit: text} (explanations, say); default the token at the unit's top example.
    k: top / bottom examples shown; n_random: random-position examples shown."""

    _view = t.Unicode("unit_dashboards").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    hook = t.Unicode("").tag(sync=True)
    n_tokens = t.Int(0).tag(sync=True)
    units = t.Dict().tag(sync=True)  # {"ids": int32, "density", "max": float32}
    labels = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, scan: Any, units: Sequence[int] | None = None, *, model: Any = None,
                 basis: Any = None, labels: Mapping[int, str] | None = None, k: int = 10,
                 n_random: int = 5, title: str | None = None) -> None:
        self._scan, self._k, self._n_random = scan, k, n_random
        ids = check_units(scan, units)
        self._ids = ids
        vocab, tops = scan.meta["vocab"], scan.top_token_ids()
        given = {int(u): str(v) for u, v in (labels or {}).items()}
        names = [given.get(u) or (vocab.get(str(int(tops[u])), "") if tops[u] >= 0 else "")
                 for u in ids]
        self._effects: dict[int, Any] = {}
        directions = unit_directions(model, scan, basis) if model is not None else None
        if directions is not None:
            self._effects = logit_effects(model, directions, ids, k=k)
        dens = scan.density[ids].float().numpy()
        mx = scan.max_values()[ids].float().numpy()
        super().__init__(title=title or f"{scan.basis['kind']} at {scan.hook}", hook=scan.hook,
                         n_tokens=int(scan.n_tokens), labels=names,
                         units={"ids": encode_array(np.asarray(ids, np.int32), "int32"),
                                "density": encode_array(dens, "float32"),
                                "max": encode_array(mx, "float32")})
        self._labels = dict(zip(ids, names))

    @request_handler("unit")
    def _unit(self, unit: int) -> dict[str, Any]:
        """One unit's dashboard (see the module docstring)."""
        u = int(unit)
        if u not in self._labels:
            raise ValueError(f"unit {u} is not on this page (it shows {len(self._ids)} units)")
        s, rec = self._scan, unit_record(self._scan, u, n_random=self._n_random)
        counts, edges = rec.histogram
        nz = counts.nonzero()
        lo, hi = (int(nz.min()), int(nz.max()) + 1) if len(nz) else (0, 1)
        eff = self._effects.get(u)
        return {
            "unit": u, "label": self._labels[u],
            "stats": {"density": rec.density, "max": rec.max_value, "mean": float(s.mean[u]),
                      "std": float(s.std[u])},
            "histogram": {"counts": encode_array(counts[lo:hi].float(), "float32"),
                          "edges": encode_array(edges[lo: hi + 1].float(), "float32")},
            "logit_effect": None if eff is None else {
                "top": [[tok, v] for tok, v in eff["top"]],
                "bottom": [[tok, v] for tok, v in eff["bottom"]]},
            "top": [_example(e) for e in rec.top[: self._k]],
            "bottom": [_example(e) for e in rec.bottom[: self._k]],
            "buckets": [{"lo": b.lo, "hi": b.hi, "q_lo": b.q_lo, "q_hi": b.q_hi,
                         "count": b.count, "examples": [_example(e) for e in b.examples]}
                        for b in rec.buckets],
            "random": [_example(e) for e in rec.random],
        }

    def lazy_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """Every unit's answer, each written to its own block of the static export."""
        for u in self._ids:
            yield "unit", {"unit": u}, self._unit(u)

    @property
    def data(self) -> dict[str, Any]:
        """{"units": [ids], "labels": {unit: label}, "scan": the UnitScan}."""
        return {"units": list(self._ids), "labels": dict(self._labels), "scan": self._scan}


def dashboards(scan: Any, units: Sequence[int] | None, path: str | Path, *, model: Any = None,
               basis: Any = None, labels: Mapping[int, str] | None = None, k: int = 10,
               n_random: int = 5, title: str | None = None) -> Path:
    """Write one self-contained, searchable HTML page with the dashboards of `units` (None: all)
    of `scan`; each unit's data is decoded only when it is opened. Returns the path."""
    return UnitDashboards(scan, units, model=model, basis=basis, labels=labels, k=k,
                          n_random=n_random, title=title).to_html(path, title=title)
