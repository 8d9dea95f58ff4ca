"""AttributionView: direct logit attribution bars per layer, head and neuron, and input-token
attribution as a heatmap (js/src/widgets/attribution.ts). Numbers come from
`analysis.attribution`."""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..analysis.attribution import (
    METHODS,
    LogitAttribution,
    TokenAttribution,
    direct_logit_attribution,
    input_attribution,
)
from ._base import BaseWidget, check_prompt, request_handler
from ._codec import encode_array


class AttributionView(BaseWidget):
    """What writes logit(answer) - logit(wrong) after `prompt`: bars for the embeddings and each
    attention layer and MLP, a layer x head heatmap with bars for the largest heads, the
    neurons that raise it most and those that lower it most; and each input token's attribution
    (integrated gradients with its completeness gap, gradient x input, occlusion)."""

    _view = t.Unicode("attribution").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    answer_token = t.Unicode("").tag(sync=True)  # ("answer" is BaseWidget's request method)
    wrong_token = t.Unicode("").tag(sync=True)
    logit_diff = t.Float(0.0).tag(sync=True)
    total = t.Float(0.0).tag(sync=True)
    components = t.List(t.List()).tag(sync=True)  # [[label, value]]
    heads = t.Dict().tag(sync=True)  # float32 [layer, head]
    #: [[layer, neuron, value]]: the 8 that raise the difference most, then the 8 that lower it
    top_neurons = t.List(t.List()).tag(sync=True)
    #: [{"method", "target", "values": float32 [pos], "completeness_gap", "baseline_value"}]
    inputs = t.List(t.Dict()).tag(sync=True)
    prompt = t.Unicode("").tag(sync=True)
    can_rerun = t.Bool(False).tag(sync=True)

    def __init__(self, model: Any, prompt: str, answer: str, wrong: str, *,
                 steps: int | None = None) -> None:
        self._model, self._steps = model, steps
        super().__init__(can_rerun=True)
        self._compute(prompt, answer, wrong)

    def _compute(self, prompt: str, answer: str, wrong: str) -> None:
        prompt = check_prompt(prompt)
        dla = direct_logit_attribution(self._model, prompt, answer, wrong)
        attr = {m: input_attribution(self._model, prompt, answer, wrong, method=m,
                                     steps=self._steps) for m in METHODS}
        self._dla, self._inputs = dla, attr
        comps = [["embed", dla.embed], ["pos_embed", dla.pos_embed]]
        for layer in range(len(dla.attn)):
            comps += [[f"attn {layer}", float(dla.attn[layer])], [f"mlp {layer}",
                                                                 float(dla.mlp[layer])]]
        comps.append(["unembed bias", dla.unembed_bias])
        with self.hold_sync():
            self.prompt, self.answer_token, self.wrong_token = prompt, dla.answer, dla.wrong
            self.tokens = dla.str_tokens
            self.logit_diff, self.total = dla.logit_diff, dla.total
            self.components = comps
            self.heads = encode_array(dla.heads)
            self.top_neurons = [list(x) for x in dla.top_neurons(8, "positive")
                                + dla.top_neurons(8, "negative")]
            self.inputs = [{"method": m, "target": a.target, "values": encode_array(a.values),
                            "completeness_gap": a.completeness_gap,
                            "baseline_value": a.baseline_value, "target_value": a.target_value}
                           for m, a in attr.items()]
            self._rev += 1

    @request_handler("set_prompt")
    def _set_prompt(self, prompt: str, answer: str, wrong: str) -> dict[str, Any]:
        """Recompute everything for a new prompt / answer / wrong token."""
        self._compute(prompt, answer, wrong)
        return {}

    @property
    def data(self) -> tuple[LogitAttribution, dict[str, TokenAttribution]]:
        """(direct logit attribution, {method: input attribution})."""
        return self._dla, self._inputs
