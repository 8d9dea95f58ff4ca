"""CensusView: the table of `iw.census`, one row per drawn unit with its class, explanation and
score interval, filterable by class and sortable by score in the browser
(js/src/widgets/census.ts). Everything is synced once, so it works the same in static exports."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import traitlets as t

from ..autointerp.text import display_text
from ._base import BaseWidget
from ._codec import encode_array

CLASSES = ("monosemantic", "polysemantic", "dense", "dead")


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _groups(row: pd.Series) -> str:
    parts = []
    g = row.get("groups")
    if isinstance(g, list) and g:
        parts.append("fires on " + ", ".join(f"{display_text(tok)!r} x{n}" for tok, n in g))
    c = row.get("correlated")
    if isinstance(c, list) and c:
        parts.append("correlated: " + ", ".join(f"N{u} ({r:+.2f})" for u, r in c))
    f = row.get("sae_features")
    if isinstance(f, list) and f:
        parts.append("SAE features: " + ", ".join(f"F{u} ({v:.2f})" for u, v in f))
    return "; ".join(parts)


class CensusView(BaseWidget):
    """`table`: the DataFrame `iw.census` returns."""

    _view = t.Unicode("census").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    units = t.Dict().tag(sync=True)  # int32 [n]
    scores = t.Dict().tag(sync=True)  # float32 [n, 3]: score, low, high (NaN: not scored)
    classes = t.List(t.Unicode()).tag(sync=True)
    explanations = t.List(t.Unicode()).tag(sync=True)
    notes = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, table: pd.DataFrame, *, title: str = "") -> None:
        if not isinstance(table, pd.DataFrame) or not {"unit", "class"} <= set(table.columns):
            raise ValueError("CensusView takes the DataFrame iw.census returns (columns unit, "
                             f"class, ...); got {type(table).__name__}.")
        bad = sorted(set(table["class"]) - set(CLASSES))
        if bad:
            raise ValueError(f"unknown census classes {bad}; expected {list(CLASSES)}.")
        self._table = table.reset_index(drop=True)
        sc = np.array([[_num(r.get(k)) for k in ("score", "low", "high")]
                       for _, r in self._table.iterrows()], np.float32).reshape(-1, 3)
        kind = str(self._table["kind"].iloc[0]) if "kind" in self._table and len(table) else "unit"
        super().__init__(
            title=title or f"Census of {len(table)} {kind}s",
            units=encode_array(self._table["unit"].to_numpy(np.int64), "int32"),
            scores=encode_array(sc), classes=[str(c) for c in self._table["class"]],
            explanations=[display_text(str(e)) if isinstance(e, str) else ""
                          for e in self._table.get("explanation", [""] * len(table))],
            notes=[_groups(r) for _, r in self._table.iterrows()])

    @property
    def data(self) -> pd.DataFrame:
        """The census table shown."""
        return self._table
