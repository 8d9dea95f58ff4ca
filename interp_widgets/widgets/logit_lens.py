"""LogitLens: top-1 token and its (or the target's) probability at every layer x position
(js/src/widgets/logit_lens.ts). Numbers come from `analysis.logit_lens`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import traitlets as t

from ..analysis.logit_lens import LogitLensResult, logit_lens
from ._base import PromptWidget, check_index, check_prompt, request_handler
from ._codec import encode_array


class LogitLens(PromptWidget):
    """Heatmap of layer x position: each cell shows the lens's top-1 next token, coloured by its
    probability, or by the probability of `target` (a single token, e.g. " Mary") when given.
    Click a cell for the top 10 there (fetched on demand)."""

    _view = t.Unicode("logit_lens").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    layer_labels = t.List(t.Unicode()).tag(sync=True)
    top_strs = t.List(t.List(t.Unicode())).tag(sync=True)  # [layer][pos] top-1 token
    top_probs = t.Dict().tag(sync=True)  # float32 [layer, pos]
    target = t.Unicode(None, allow_none=True).tag(sync=True)
    target_probs = t.Dict(None, allow_none=True).tag(sync=True)  # float32 [layer, pos]
    colour_by = t.Enum(["top1", "target"], "top1").tag(sync=True)

    def __init__(self, model: Any, prompt: str | torch.Tensor, *, target: str | None = None,
                 k: int = 10, prepend_bos: bool | None = None) -> None:
        self._k, self._prepend_bos = k, prepend_bos  # None: the model's default (Model.bos)
        super().__init__(model, prompt)
        if model is not None:
            self._set_result(logit_lens(model, check_prompt(prompt), target=target, k=k,
                                        prepend_bos=prepend_bos))

    @classmethod
    def from_result(cls, result: LogitLensResult) -> LogitLens:
        """A view of a precomputed `analysis.logit_lens` result (no model: no prompt box)."""
        view = cls(None, "")
        view._set_result(result)
        return view

    def _set_result(self, r: LogitLensResult) -> None:
        self._result = r
        with self.hold_sync():
            self.tokens = list(r.str_tokens)
            self.layer_labels = list(r.layer_labels)
            self.top_strs = [[cell[0] for cell in row] for row in r.top_strs]
            self.top_probs = encode_array(r.top_probs[..., 0], "float32")
            self.target = r.target
            self.target_probs = (None if r.target_prob is None
                                 else encode_array(r.target_prob, "float32"))
            self.colour_by = "top1" if r.target_prob is None else "target"
            self._rev += 1

    @request_handler("topk")
    def _topk(self, layer: int, pos: int) -> dict[str, Any]:
        """The top k at (layer, pos): {"tokens": [str], "probs": float32 [k], "ids": int32 [k]}."""
        r = self._result
        check_index("layer", layer, len(r.layer_labels))
        check_index("pos", pos, len(r.str_tokens))
        return {"tokens": r.top_strs[layer][pos],
                "probs": encode_array(r.top_probs[layer, pos], "float32"),
                "ids": encode_array(r.top_ids[layer, pos], "int32")}

    @request_handler("set_prompt")
    def _set_prompt(self, prompt: str, target: str = "") -> dict[str, Any]:
        """Re-run the lens on a new prompt (and target; "" for none) and redraw."""
        result = logit_lens(self._rerun_model(), check_prompt(prompt), target=target or None,
                            k=self._k, prepend_bos=self._prepend_bos)
        self.prompt = prompt  # before _set_result bumps _rev and the view redraws
        self._set_result(result)
        return {}

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        for layer in range(len(self.layer_labels)):
            for pos in range(len(self.tokens)):
                yield "topk", {"layer": layer, "pos": pos}, self._topk(layer, pos)

    @property
    def data(self) -> LogitLensResult:
        """The `analysis.logit_lens.LogitLensResult` shown."""
        return self._result
