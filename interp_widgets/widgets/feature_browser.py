"""FeatureBrowser: every feature of an SAE (or PCA/ICA dictionary), one at a time
(js/src/widgets/feature_browser.ts). Numbers come from `analysis.features`.

Synced up front (small): the current feature's statistics, histogram, logit-effect tables, nearest
features and explanation. Fetched on demand: pages of the feature list (search and sort run in
the kernel, so a 16k-feature SAE never goes to the browser whole) and the current feature's
corpus examples."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import traitlets as t

from ..analysis import features as ft
from ..analysis.feature_scan import FeatureScan
from ._base import BaseWidget, check_index, request_handler
from ._codec import encode_array
from .explain import ExplainMixin, sae_source
from .neuron_view import _example

PAGE = 50
SORTS = ["max", "density", "feature"]


class FeatureBrowser(ExplainMixin, BaseWidget):
    """Browse the features of `sae` on `model`: a searchable, sortable list (by id, top token or
    explanation text; by density or maximum activation) and, for the chosen feature, its density
    histogram, top corpus examples and activation-bucket samples as token heatmaps, logit effect
    (direction @ W_U, top and bottom tokens), nearest features by decoder cosine (click to go
    there) and its explanation.

    corpus: documents to scan (`analysis.features.scan_features`, every feature at once);
    scan: that scan, made before. explanations: {feature: text or (text, score)}."""

    _view = t.Unicode("feature_browser").tag(sync=True)
    feature = t.Int(0).tag(sync=True)
    n_features = t.Int(1).tag(sync=True)
    hook = t.Unicode("").tag(sync=True)
    stats = t.Dict().tag(sync=True)  # {} without a scan
    histogram = t.Dict(None, allow_none=True).tag(sync=True)  # {"counts", "edges"} float32
    logit_effect = t.Dict().tag(sync=True)  # {"top": [[token, effect]], "bottom": [...]}
    nearest = t.List(t.List()).tag(sync=True)  # [[feature, cosine], ...]
    explanation = t.Dict(None, allow_none=True).tag(sync=True)  # {"text", "score"}
    sorts = t.List(t.Unicode()).tag(sync=True)
    page_size = t.Int(PAGE).tag(sync=True)

    def __init__(self, model: Any, sae: Any, corpus: Iterable[str] | None = None, *,
                 scan: FeatureScan | None = None,
                 explanations: Mapping[int, Any] | None = None, feature: int | None = None,
                 k: int = 10, progress: bool = True) -> None:
        self._model, self._sae, self._k = model, sae, k
        if scan is None and corpus is not None:
            scan = ft.scan_features(model, sae, list(corpus), k=max(k, 20), progress=progress)
        if scan is not None and (scan.n_neurons != sae.d_sae or scan.hook != sae.hook_name):
            raise ValueError(f"the scan covers {scan.n_neurons} units at {scan.hook!r}, but the "
                             f"SAE has {sae.d_sae} features at {sae.hook_name!r}")
        self._scan = scan
        self._explanations = dict(explanations or {})
        self._table = ft.feature_table(scan, self._explanations) if scan is not None else None
        super().__init__(n_features=int(sae.d_sae), hook=sae.hook_name or "", sorts=SORTS)
        if feature is None:
            feature = int(self._table["max"].idxmax()) if self._table is not None else 0
        self._select(feature)

    def _select(self, feature: int) -> None:
        f = check_index("feature", feature, self.n_features)
        effect = ft.feature_logit_effect(self._model, self._sae, f, k=self._k)
        near = ft.nearest_features(self._sae, f, k=self._k)
        expl = self._explanations.get(f)
        with self.hold_sync():
            self.feature = f
            self.logit_effect = {
                "top": [[r.token, r.effect] for r in effect.top.itertuples()],
                "bottom": [[r.token, r.effect] for r in effect.bottom.itertuples()],
            }
            self.nearest = [[int(a), float(b)] for a, b in zip(near["feature"], near["cosine"])]
            self.explanation = None if expl is None else (
                {"text": str(expl[0]), "score": float(expl[1])} if isinstance(expl, (tuple, list))
                else {"text": str(expl), "score": None})
            self.stats, self.histogram = self._corpus_panels(f)
            self._rev += 1

    def _corpus_panels(self, f: int) -> tuple[dict, dict | None]:
        if self._scan is None:
            return {}, None
        scan, row = self._scan, self._table.iloc[f]
        counts, edges = scan.histogram(f)
        nz = counts.nonzero()
        lo, hi = (int(nz.min()), int(nz.max()) + 1) if len(nz) else (0, 1)
        stats = {"density": float(row["density"]), "max": float(row["max"]),
                 "top_token": str(row["top_token"]), "n_tokens": scan.n_tokens,
                 "n_docs": scan.n_docs, "partial": scan.partial}
        hist = {"counts": encode_array(counts[lo:hi].float(), "float32"),
                "edges": encode_array(edges[lo: hi + 1].float(), "float32")}
        return stats, hist

    # -- auto-interp (widgets/explain.py: the Explain panel; explanations join the search) -------
    def explain_key(self) -> tuple[str, str, int]:
        return self._model.name, sae_source(self._sae), self.feature

    def explain_records(self):
        from ..autointerp import records_from_scan

        if self._scan is None:
            raise ValueError("no corpus scan to explain from: pass corpus= or scan= to "
                             "FeatureBrowser")
        return records_from_scan(self._scan, self.feature)

    def explain_done(self, entry) -> None:
        self._explanations[entry.unit] = (entry.explanation, entry.score)
        if self._table is not None:
            self._table.loc[self._table.index[entry.unit], "explanation"] = entry.explanation
        if entry.unit == self.feature:
            score = entry.score
            self.explanation = {"text": entry.explanation,
                                "score": None if math.isnan(score) else score}

    def show(self, feature: int) -> None:
        """Show `feature` (as clicking it in the list does)."""
        self._select(int(feature))

    # -- requests -------------------------------------------------------------------------------
    @request_handler("select")
    def _select_request(self, feature: int) -> dict[str, Any]:
        """Show another feature; everything synced is recomputed."""
        self._select(feature)
        return {}

    @request_handler("list")
    def _list(self, query: str = "", sort: str = "max", offset: int = 0,
              limit: int = PAGE) -> dict[str, Any]:
        """One page of the feature list: {"total", "offset", "ids" int32, "density", "max"
        float32, "labels": [top token or explanation]}; without a scan, ids in order."""
        limit = max(1, min(int(limit), 500))
        if self._table is None:
            ids = np.arange(self.n_features)
            if query.strip().isdigit():
                ids = ids[ids == int(query)]
            page = ids[offset: offset + limit]
            return {"total": len(ids), "offset": offset,
                    "ids": encode_array(page.astype(np.int32), "int32"),
                    "density": None, "max": None, "labels": [""] * len(page)}
        rows = ft.search_features(self._table, query, sort)
        page = rows.iloc[offset: offset + limit]
        labels = [e or tok for e, tok in zip(page["explanation"], page["top_token"])]
        return {"total": len(rows), "offset": offset,
                "ids": encode_array(page["feature"].to_numpy(np.int32), "int32"),
                "density": encode_array(page["density"].to_numpy(np.float32), "float32"),
                "max": encode_array(page["max"].to_numpy(np.float32), "float32"),
                "labels": labels}

    @request_handler("examples")
    def _examples(self) -> dict[str, Any]:
        """The current feature's top examples and bucket samples (empty without a scan)."""
        if self._scan is None:
            return {"top": [], "buckets": []}
        f = self.feature
        return {
            "top": [_example(e) for e in self._scan.top_examples(f)[: self._k]],
            "buckets": [{"lo": b.lo, "hi": b.hi, "q_lo": b.q_lo, "q_hi": b.q_hi,
                         "count": b.count, "examples": [_example(e) for e in b.examples]}
                        for b in self._scan.bucket_examples(f)],
        }

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """The first page of the list in each sort order, and the current feature's examples."""
        for sort in SORTS:
            args = {"query": "", "sort": sort, "offset": 0, "limit": PAGE}
            yield "list", args, self._list(**args)
        yield "examples", {}, self._examples()

    @property
    def data(self) -> dict[str, Any]:
        """{"feature", "table" (DataFrame of every feature, None without a scan), "stats",
        "logit_effect", "nearest", "explanation", "examples"}."""
        return {"feature": self.feature, "table": self._table, "stats": self.stats,
                "logit_effect": self.logit_effect, "nearest": self.nearest,
                "explanation": self.explanation, "examples": self._examples()}
