"""AutoInterpTable: the explanations and scores of an `AutoInterpStore`, sortable and filterable
in the browser; clicking a row opens the unit (js/src/widgets/autointerp_table.ts).

All rows are synced once as columns (scores and their 95% intervals as float32 buffers, text as
strings; a score reads ``0.90 [0.87, 0.92]``), so sorting and
filtering need no kernel and work in static exports; clicking a row asks the kernel to open it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets as t

from ..autointerp import AutoInterpStore, Entry
from ..autointerp.score import SCORE_NAMES
from ..autointerp.text import display_text
from ._base import BaseWidget, check_index, request_handler
from ._codec import encode_array

_MLP = re.compile(r"^blocks\.(\d+)\.mlp\.(hook_post|hook_pre|hook_pre_linear)$")
Opener = Callable[[Entry], Any]


def neuron_opener(model: Any, **view_kwargs: Any) -> Opener:
    """An opener that shows MLP-neuron rows in a `NeuronView` of `model` (other rows: an error
    that says which sources it opens)."""

    def open_neuron(entry: Entry) -> Any:
        from .neuron_view import NeuronView

        m = _MLP.match(entry.source)
        if m is None:
            raise ValueError(f"this opener shows MLP neurons (sources like "
                             f"blocks.0.mlp.hook_post), not {entry.source!r}: pass opener= to "
                             "AutoInterpTable for other units")
        return NeuronView(model, int(m.group(1)), entry.unit, hook=f"mlp.{m.group(2)}",
                          **view_kwargs)

    return open_neuron


class AutoInterpTable(BaseWidget):
    """Units of `store` with their explanation and scores: click a header to sort, type to filter
    (by explanation, explainer or unit), click a row to open the unit.

    model, source, explainer, search: which entries to list (None: all). opener(entry) -> a
    widget to show for a clicked row (shown in `.output`; display `.panel` for the table with it
    below); with `model` given and no opener, MLP-neuron rows open in a NeuronView (`view_kwargs`
    go to it, e.g. corpus=...). `on_open(callback)` is called with the clicked `Entry` too.
    Offline explanations are marked "statistical" in the table."""

    _view = t.Unicode("autointerp_table").tag(sync=True)
    columns = t.Dict().tag(sync=True)  # {"unit": int32, score: float32, text column: [str]}
    score_names = t.List(t.Unicode()).tag(sync=True)
    n_rows = t.Int(0).tag(sync=True)
    sort = t.Unicode("correlation").tag(sync=True)
    descending = t.Bool(True).tag(sync=True)
    filter = t.Unicode("").tag(sync=True)
    selected = t.Int(None, allow_none=True).tag(sync=True)  # row index
    can_open = t.Bool(False).tag(sync=True)

    def __init__(self, store: AutoInterpStore | str, *, model: Any = None,
                 source: str | None = None, explainer: str | None = None,
                 search: str | None = None, opener: Opener | None = None,
                 sort: str = "correlation", descending: bool = True,
                 **view_kwargs: Any) -> None:
        self._store = AutoInterpStore(store) if isinstance(store, str) else store
        if not isinstance(self._store, AutoInterpStore):
            raise ValueError(f"store must be an AutoInterpStore or a path; got "
                             f"{type(store).__name__}")
        if sort not in ("unit", "explanation", "explainer", *SCORE_NAMES):
            raise ValueError(f"sort must be 'unit', 'explanation', 'explainer' or a score "
                             f"({', '.join(SCORE_NAMES)}); got {sort!r}")
        self._filters = {"model": getattr(model, "name", None), "source": source,
                         "explainer": explainer, "search": search}
        if model is not None and not isinstance(model, str) and opener is None:
            opener = neuron_opener(model, **view_kwargs)
        if isinstance(model, str):
            self._filters["model"] = model
        self._opener = opener
        self._callbacks: list[Callable[[Entry], Any]] = []
        self._output: Any = None
        super().__init__(score_names=list(SCORE_NAMES), sort=sort, descending=descending,
                         can_open=opener is not None)
        self.refresh()

    def refresh(self) -> None:
        """Reload the rows from the store."""
        self._entries = self._store.entries(**self._filters)
        e = self._entries
        cols: dict[str, Any] = {k: [display_text(getattr(x, k)) for x in e]
                                for k in ("model", "source", "explainer", "kind", "explanation")}
        cols["unit"] = encode_array(np.array([x.unit for x in e], np.int64), "int32")
        for k in SCORE_NAMES:
            cols[k] = encode_array(np.array([getattr(x.scores, k) for x in e], np.float32))
            rows = [x.scores.estimate(k) for x in e]  # the 95% interval, shown beside it
            cols[f"{k}_low"] = encode_array(np.array([r.low for r in rows], np.float32))
            cols[f"{k}_high"] = encode_array(np.array([r.high for r in rows], np.float32))
        with self.hold_sync():
            self.columns, self.n_rows, self.selected = cols, len(e), None
            self._rev += 1

    # -- opening ---------------------------------------------------------------------------------
    def on_open(self, callback: Callable[[Entry], Any], remove: bool = False) -> None:
        """Call `callback(entry)` when a row is clicked (rows are clickable only while the table
        has an opener or a callback: `can_open`)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)
        self.can_open = self._opener is not None or bool(self._callbacks)

    @property
    def output(self):
        """An ipywidgets.Output where opened units are shown."""
        if self._output is None:
            import ipywidgets

            self._output = ipywidgets.Output()
        return self._output

    @property
    def panel(self):
        """The table with the opened unit below it (an ipywidgets.VBox): display this."""
        import ipywidgets

        return ipywidgets.VBox([self, self.output])

    @request_handler("open")
    def _open(self, row: int) -> dict[str, Any]:
        """Open row `row` (an index into the store's order, as synced)."""
        check_index("row", row, len(self._entries))
        entry = self._entries[row]
        self.selected = row
        for cb in list(self._callbacks):
            cb(entry)
        shown = False
        if self._opener is not None:
            from IPython.display import display

            view = self._opener(entry)
            with self.output:
                self.output.clear_output()
                display(view)
            shown = True
        return {"unit": entry.unit, "source": entry.source, "shown": shown}

    @property
    def data(self):
        """The listed entries as a pandas DataFrame (`AutoInterpStore.frame`)."""
        import pandas as pd

        return pd.DataFrame([x.row() for x in self._entries],
                            columns=["model", "source", "unit", "explainer", "kind",
                                     "explanation", *SCORE_NAMES])
