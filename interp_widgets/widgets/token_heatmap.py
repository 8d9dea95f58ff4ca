"""TokenHeatmap: tokens coloured by per-token metrics (js/src/widgets/token_heatmap.ts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import traitlets as t

from ._base import BaseWidget, check_index, request_handler
from ._codec import decode_strings, encode_array, encode_strings, to_numpy

Prediction = Sequence[tuple[str, float]]


def _documents(tokens: Sequence[str] | Sequence[Sequence[str]]) -> tuple[list[list[str]], bool]:
    """([doc][pos] token strings, whether one document was given)."""
    if isinstance(tokens, str):
        raise ValueError("tokens must be a list of token strings (e.g. run.str_tokens), "
                         "not one string")
    tokens = list(tokens)
    if all(isinstance(x, str) for x in tokens):
        return [tokens], True
    if all(isinstance(d, (list, tuple)) and all(isinstance(x, str) for x in d) for d in tokens):
        return [list(d) for d in tokens], False
    raise ValueError("tokens must be a list of strings, or a list of lists of strings (documents)")


def _per_document(name: str, values: Any, docs: list[list[str]], single: bool
                  ) -> list[np.ndarray]:
    """One float32 array per document. values: [pos] for one document (a leading batch axis of 1
    is dropped); [doc, pos >= len] (padding ignored) or a list of [pos] for several."""
    if single:
        arr = to_numpy(values).astype(np.float32)
        rows = [arr[0] if arr.ndim == 2 and arr.shape[0] == 1 else arr]
    else:
        rows = [to_numpy(v).astype(np.float32) for v in values]
        if len(rows) != len(docs):
            raise ValueError(f"metric {name!r} has {len(rows)} rows for {len(docs)} documents")
    for d, (row, doc) in enumerate(zip(rows, docs)):
        if row.ndim != 1 or len(row) < len(doc) or (single and len(row) != len(doc)):
            raise ValueError(f"metric {name!r} has shape {list(row.shape)} for document {d}, "
                             f"which has {len(doc)} tokens")
    return [row[: len(doc)] for row, doc in zip(rows, docs)]


class _Documents(t.List):
    """A trait of [doc][pos] token strings, checked in one pass: `t.List(t.List(t.Unicode()))`
    validates each string through a trait (about 1 microsecond each: 20 ms for 20,000 tokens)."""

    def validate(self, obj: Any, value: Any) -> list[list[str]]:
        value = super().validate(obj, value)
        if not all(isinstance(d, list) and all(isinstance(x, str) for x in d) for d in value):
            self.error(obj, value)
        return value

    def info(self) -> str:
        return "a list of documents, each a list of token strings"


def _tokens_to_json(docs: list[list[str]], _widget: Any) -> dict[str, Any]:
    """The [doc][pos] token strings packed for the wire (one UTF-8 buffer + byte lengths + tokens
    per document; `_codec.encode_strings`) instead of a JSON list of lists."""
    return encode_strings(docs)


def _tokens_from_json(value: Any, _widget: Any) -> list[list[str]]:
    """The inverse of `_tokens_to_json` (a plain list of lists passes through)."""
    if isinstance(value, dict):
        out = decode_strings(value)
        return out if "rows" in value else [out]
    return value


class TokenHeatmap(BaseWidget):
    """Tokens coloured by per-token metrics; hover for values (and predictions), click to select.

    tokens: list[str] (one document) or list[list[str]] (several).
    metrics: one array [pos] (or [doc, pos] / list of [pos]), or a dict {name: array} switched with
    a dropdown. NaN and infinite values (e.g. loss at position 0) are gaps: uncoloured, dotted,
    and counted in the legend.
    cmap: "auto" (diverging around `center` when given or when values cross zero, sequential
    otherwise), "diverging" or "sequential"; vmin/vmax fix the ends (vmin < vmax), e.g. a unit's
    corpus maximum so that one document's noise does not look saturated.
    predictions: per token a list of (token_str, prob), e.g. run.top_predictions(pos=i);
    [doc][pos] for several documents. Fetched by the view on hover, not synced up front.
    """

    _view = t.Unicode("token_heatmap").tag(sync=True)
    #: [doc][pos] token strings; travel packed (see `_tokens_to_json`)
    tokens = _Documents().tag(sync=True, to_json=_tokens_to_json, from_json=_tokens_from_json)
    metrics = t.List(t.Dict()).tag(sync=True)  # [{"name", "values": float32 [total tokens]}]
    metric = t.Unicode("").tag(sync=True)
    cmap = t.Enum(["auto", "diverging", "sequential"], "auto").tag(sync=True)
    center = t.Float(None, allow_none=True).tag(sync=True)
    vmin = t.Float(None, allow_none=True).tag(sync=True)
    vmax = t.Float(None, allow_none=True).tag(sync=True)
    has_predictions = t.Bool(False).tag(sync=True)
    #: [doc, pos] of the clicked token, or None
    selected = t.List(t.Int(), default_value=None, allow_none=True, minlen=2, maxlen=2
                      ).tag(sync=True)

    def __init__(self, tokens: Sequence[str] | Sequence[Sequence[str]],
                 metrics: Any | Mapping[str, Any], *, cmap: str = "auto",
                 center: float | None = None, vmin: float | None = None,
                 vmax: float | None = None,
                 predictions: Sequence[Prediction | None] | None = None) -> None:
        if vmin is not None and vmax is not None and not vmin < vmax:
            raise ValueError(f"vmin ({vmin}) must be below vmax ({vmax}): they are the colour "
                             "scale's low and high ends")
        docs, self._single = _documents(tokens)
        named = dict(metrics) if isinstance(metrics, Mapping) else {"value": metrics}
        if not named:
            raise ValueError("metrics is empty: give at least one per-token array")
        self._metrics = {str(k): _per_document(str(k), v, docs, self._single)
                         for k, v in named.items()}
        self._predictions = self._check_predictions(predictions, docs)
        self._callbacks: list[Callable[[int, int], Any]] = []
        super().__init__(
            tokens=docs,
            metrics=[{"name": k, "values": encode_array(np.concatenate(v), "float32")}
                     for k, v in self._metrics.items()],
            metric=next(iter(self._metrics)),
            cmap=cmap, center=center, vmin=vmin, vmax=vmax,
            has_predictions=self._predictions is not None,
        )
        self.observe(self._fire_select, names="selected")

    def _check_predictions(self, predictions: Any, docs: list[list[str]]
                           ) -> list[list[Prediction | None]] | None:
        if predictions is None:
            return None
        rows = [list(predictions)] if self._single else [list(p) for p in predictions]
        if len(rows) != len(docs) or any(len(r) != len(d) for r, d in zip(rows, docs)):
            raise ValueError(f"predictions must give one entry per token: got "
                             f"{[len(r) for r in rows]} for documents of {[len(d) for d in docs]}")
        return [[None if p is None else [(str(s), float(v)) for s, v in p] for p in r]
                for r in rows]

    def on_select(self, callback: Callable[[int, int], Any], remove: bool = False) -> None:
        """Call `callback(doc, pos)` when a token is clicked in the view."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def _fire_select(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            for cb in list(self._callbacks):
                cb(*change["new"])

    @request_handler("predictions")
    def _predictions_at(self, doc: int, pos: int) -> dict[str, Any]:
        """Top predictions after token (doc, pos): {"tokens": [str], "probs": float32 [k]}."""
        if self._predictions is None:
            raise ValueError("this heatmap was made without predictions")
        check_index("doc", doc, len(self.tokens))
        check_index("pos", pos, len(self.tokens[doc]))
        pred = self._predictions[doc][pos] or []
        return {"tokens": [s for s, _ in pred],
                "probs": encode_array(np.array([p for _, p in pred], np.float32), "float32")}

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        if self._predictions is None:
            return
        for d, row in enumerate(self._predictions):
            for p in range(len(row)):
                yield "predictions", {"doc": d, "pos": p}, self._predictions_at(d, p)

    @property
    def data(self) -> dict[str, Any]:
        """{"tokens", "metrics": {name: float32 array [pos]}, "predictions"}; for several
        documents tokens, each metric and predictions are lists over documents."""
        def one(x: list) -> Any:
            return x[0] if self._single else x

        return {
            "tokens": one(self.tokens),
            "metrics": {k: one(v) for k, v in self._metrics.items()},
            "predictions": None if self._predictions is None else one(self._predictions),
        }
