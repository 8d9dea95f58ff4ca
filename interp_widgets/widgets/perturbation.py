"""PerturbationFlowView: how removing part of a text changes the residual stream, layer x
position (js/src/widgets/perturbation.ts). Numbers come from `analysis.steering.perturbation_flow`.
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..analysis.steering import PerturbationFlow, perturbation_flow
from ._base import BaseWidget, check_prompt, request_handler
from ._codec import encode_array


class PerturbationFlowView(BaseWidget):
    """Heatmap of |resid(text) - resid(text without `remove`)| at every layer and shared token
    (absolute or relative to the residual norm), a row of next-token KL, and the top-5 next
    tokens before and after. Removed tokens are left blank."""

    _view = t.Unicode("perturbation_flow").tag(sync=True)
    text = t.Unicode("").tag(sync=True)
    remove = t.Unicode("").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    removed = t.List(t.Bool()).tag(sync=True)
    layer_labels = t.List(t.Unicode()).tag(sync=True)
    diff = t.Dict().tag(sync=True)  # float32 [layer + 1, pos], NaN at removed tokens
    relative = t.Dict().tag(sync=True)  # float32 [layer + 1, pos]
    kl = t.Dict().tag(sync=True)  # float32 [pos]
    top_before = t.List(t.List()).tag(sync=True)
    top_after = t.List(t.List()).tag(sync=True)
    can_rerun = t.Bool(False).tag(sync=True)

    def __init__(self, model: Any, text: str, remove: str) -> None:
        self._model = model
        super().__init__(can_rerun=True)
        self._compute(text, remove)

    def _compute(self, text: str, remove: str) -> None:
        flow = perturbation_flow(self._model, check_prompt(text), remove)
        self._flow = flow
        with self.hold_sync():
            self.text, self.remove = text, remove
            self.tokens, self.removed = flow.str_tokens, flow.removed
            self.layer_labels = flow.layer_labels
            self.diff = encode_array(flow.diff)
            self.relative = encode_array(flow.relative)
            self.kl = encode_array(flow.kl)
            self.top_before = [list(x) for x in flow.top_before]
            self.top_after = [list(x) for x in flow.top_after]
            self._rev += 1

    @request_handler("set_text")
    def _set_text(self, text: str, remove: str) -> dict[str, Any]:
        """Recompute for a new text and the part to remove."""
        self._compute(text, remove)
        return {}

    @property
    def data(self) -> PerturbationFlow:
        """The `analysis.steering.PerturbationFlow` shown."""
        return self._flow
