"""PromptFeatures: which SAE features fire on a prompt, and what they do to the prediction
(js/src/widgets/prompt_features.ts). Numbers come from `analysis.features`.

Synced: the prompt's tokens, the largest feature activation at each token, and the ranked
features active at the selected token. Fetched on demand: one feature's activation over the
prompt, and the next-token distribution with a feature ablated or clamped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import traitlets as t

from ..analysis import features as ft
from ._base import PromptWidget, check_index, check_prompt, request_handler
from ._codec import encode_array

#: clamp slider stops, as multiples of the feature's largest activation on the prompt
STOPS = [x / 4 for x in range(0, 17)]


def _predictions(pairs: list[tuple[str, float]]) -> dict[str, Any]:
    return {"tokens": [s for s, _ in pairs],
            "probs": encode_array(torch.tensor([p for _, p in pairs]), "float32")}


class PromptFeatures(PromptWidget):
    """The features of `sae` on `prompt`: click a token to list the features active there,
    ranked by activation or by direct contribution to a chosen logit (`target`, default the top
    prediction); pick a feature to see its activation over the prompt as a heatmap; a slider
    clamps it (0 = ablate, up to 4x its largest activation on the prompt) at every position,
    keeping the SAE's error term, and the next-token distribution after the selected token
    updates."""

    _view = t.Unicode("prompt_features").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    token_max = t.Dict().tag(sync=True)  # float32 [pos]
    pos = t.Int(0).tag(sync=True)
    by = t.Enum(["activation", "logit"], "activation").tag(sync=True)
    target = t.Unicode("").tag(sync=True)
    active = t.List(t.List()).tag(sync=True)  # [[feature, activation, logit contribution]]
    stops = t.List(t.Float()).tag(sync=True)
    hook = t.Unicode("").tag(sync=True)

    def __init__(self, model: Any, sae: Any, prompt: str, *, k: int = 10, pos: int = -1,
                 by: str = "activation", target: str | None = None) -> None:
        self._sae, self._k = sae, k
        super().__init__(model, check_prompt(prompt), stops=STOPS, hook=sae.hook_name or "")
        self._run(prompt, pos, by, target or "")

    def _run(self, prompt: str, pos: int, by: str, target: str) -> None:
        tokens, acts = ft.prompt_feature_acts(self._model, self._sae, check_prompt(prompt))
        self._acts = acts  # [pos, d_sae]
        with self.hold_sync():
            self.prompt, self.tokens = prompt, list(tokens)
            self.token_max = encode_array(acts.max(dim=-1).values, "float32")
            self._choose(pos, by, target)
            self._rev += 1

    def _choose(self, pos: int, by: str, target: str) -> None:
        n = len(self.tokens)
        if not -n <= pos < n:
            raise ValueError(f"pos {pos} is out of range for a prompt of {n} tokens")
        rows = ft.active_features(self._model, self._sae, self.prompt, pos % n, k=self._k, by=by,
                                  token=target or None)
        self.pos, self.by, self.target = pos % n, by, target
        self.active = [[int(f), float(a), float(c)] for f, a, c in
                       zip(rows["feature"], rows["activation"], rows["logit_contribution"])]

    def select(self, pos: int, by: str = "activation", target: str | None = None) -> None:
        """Rank the features at token `pos` (negative counts from the end) by "activation" or by
        "logit" contribution to `target` (default: the top prediction), as a click does."""
        if by not in ("activation", "logit"):
            raise ValueError(f"by must be 'activation' or 'logit', got {by!r}")
        with self.hold_sync():
            self._choose(pos, by, target or "")
            self._rev += 1

    # -- requests -------------------------------------------------------------------------------
    @request_handler("set_prompt")
    def _set_prompt(self, prompt: str) -> dict[str, Any]:
        """Re-run on a new prompt (the last token selected)."""
        self._rerun_model()
        self._run(prompt, -1, self.by, self.target)
        return {}

    @request_handler("select")
    def _select(self, pos: int, by: str = "activation", target: str = "") -> dict[str, Any]:
        """Rank the features at token `pos` by "activation" or "logit" (of `target`)."""
        check_index("pos", pos, len(self.tokens))
        self.select(pos, by, target)
        return {}

    @request_handler("feature_acts")
    def _feature_acts(self, feature: int) -> dict[str, Any]:
        """{"feature", "acts": float32 [pos]}: the feature's activation at every token."""
        f = check_index("feature", feature, int(self._sae.d_sae))
        return {"feature": f, "acts": encode_array(self._acts[:, f], "float32")}

    @request_handler("intervene")
    def _intervene(self, feature: int, stop: int, pos: int | None = None) -> dict[str, Any]:
        """Clamp `feature` to STOPS[stop] x its largest activation on the prompt (stop 0:
        ablate) at every position and read the next-token distribution after token `pos`
        (default: the selected token, `self.pos`): {"pos", "value", "kl", "before", "after":
        {"tokens", "probs" float32 [k]}}."""
        f = check_index("feature", feature, int(self._sae.d_sae))
        s = check_index("stop", stop, len(STOPS))
        p = self.pos if pos is None else check_index("pos", pos, len(self.tokens))
        ref = float(self._acts[:, f].max()) or 1.0
        value = STOPS[s] * ref
        r = ft.intervene_on_feature(self._model, self._sae, self.prompt, f,
                                    mode="ablate" if s == 0 else "clamp",
                                    value=None if s == 0 else value, pos=p)
        return {"pos": p, "value": value, "kl": r.kl, "before": _predictions(r.before),
                "after": _predictions(r.after)}

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """Each listed feature's activations and every slider stop for it."""
        for f, _, _ in self.active:
            yield "feature_acts", {"feature": f}, self._feature_acts(f)
            for s in range(len(STOPS)):
                yield ("intervene", {"feature": f, "stop": s, "pos": self.pos},
                       self._intervene(f, s, self.pos))

    @property
    def data(self) -> dict[str, Any]:
        """{"tokens", "acts" (Tensor[pos, d_sae], every feature at every token), "pos", "by",
        "target", "active" (DataFrame of the ranked features at pos)}."""
        import pandas as pd

        return {"tokens": self.tokens, "acts": self._acts, "pos": self.pos, "by": self.by,
                "target": self.target,
                "active": pd.DataFrame(self.active,
                                       columns=["feature", "activation", "logit_contribution"])}
