"""AttentionView: every head's pattern as a thumbnail, full patterns fetched on click
(js/src/widgets/attention.ts). Numbers come from `analysis.attention`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import traitlets as t

from ..analysis.attention import attention_patterns, head_scores, pattern_thumbnails
from ._base import PromptWidget, check_index, check_prompt, request_handler
from ._codec import encode_array

#: static exports keep patterns as float16 up to this many bytes in all, then as uint8 (1/255 steps)
STATIC_FLOAT16_BYTES = 2 * 2**20


class AttentionView(PromptWidget):
    """Layer x head grid of attention-pattern thumbnails, sortable and filterable by head scores
    (previous-token, induction, duplicate-token); click a head for its full pattern and a token
    strip where hovering a token shows where it attends and what attends to it.

    Synced up front: tokens, thumbnails uint8 [layer, head, s, s] and scores float32 [layer, head].
    A head's full pattern [q, k] is sent (float16) only when the view asks for it."""

    _view = t.Unicode("attention").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    n_layers = t.Int(0).tag(sync=True)
    n_heads = t.Int(0).tag(sync=True)
    thumbs = t.Dict().tag(sync=True)  # uint8 [layer, head, s, s], 255 = the head's peak
    scores = t.List(t.Dict()).tag(sync=True)  # [{"name", "values": float32 [layer, head]}]

    def __init__(self, model: Any, prompt: str | torch.Tensor, *, thumb_size: int = 32) -> None:
        self._thumb_size = thumb_size
        super().__init__(model, prompt)
        if model is not None:
            self._set_patterns(*attention_patterns(model, check_prompt(prompt)))

    @classmethod
    def from_patterns(cls, str_tokens: list[str], tokens: torch.Tensor, patterns: torch.Tensor,
                      *, thumb_size: int = 32) -> AttentionView:
        """A view of precomputed patterns Tensor[layer, head, q, k] (no model: no prompt box)."""
        view = cls(None, "", thumb_size=thumb_size)
        view._set_patterns(str_tokens, tokens, patterns)
        return view

    def _set_patterns(self, str_tokens: list[str], tokens: torch.Tensor,
                      patterns: torch.Tensor) -> None:
        """Keep patterns [layer, head, q, k] here (float16) and sync thumbnails and scores."""
        L, H, Q, K = patterns.shape
        if not (Q == K == len(str_tokens)):
            raise ValueError(f"patterns of shape {list(patterns.shape)} do not match "
                             f"{len(str_tokens)} tokens")
        self._str_tokens, self._tokens = list(str_tokens), tokens
        self._patterns = patterns.detach().to("cpu", torch.float16)
        self._scores = head_scores(patterns, tokens)
        with self.hold_sync():
            self.tokens = self._str_tokens
            self.n_layers, self.n_heads = L, H
            self.thumbs = encode_array(pattern_thumbnails(patterns, self._thumb_size), "uint8")
            self.scores = [{"name": k, "values": encode_array(v, "float32")}
                           for k, v in self._scores.items()]
            self._rev += 1

    @request_handler("pattern")
    def _pattern(self, layer: int, head: int, dtype: str = "float16") -> dict[str, Any]:
        """One head's pattern: {"pattern": [q, k] as dtype, "scale": multiply decoded values by}."""
        check_index("layer", layer, self.n_layers)
        check_index("head", head, self.n_heads)
        p = self._patterns[layer, head].float()
        if dtype == "uint8":
            return {"pattern": encode_array((p * 255).round(), "uint8"), "scale": 1 / 255}
        return {"pattern": encode_array(p, "float16"), "scale": 1.0}

    @request_handler("set_prompt")
    def _set_prompt(self, prompt: str) -> dict[str, Any]:
        """Re-run the model on a new prompt and redraw."""
        found = attention_patterns(self._rerun_model(), check_prompt(prompt))
        self.prompt = prompt  # before _set_patterns bumps _rev and the view redraws
        self._set_patterns(*found)
        return {}

    def static_answers(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        dtype = "float16" if self._patterns.numel() * 2 <= STATIC_FLOAT16_BYTES else "uint8"
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                yield ("pattern", {"layer": layer, "head": head},
                       self._pattern(layer, head, dtype=dtype))

    @property
    def data(self) -> dict[str, Any]:
        """{"str_tokens", "tokens": LongTensor[pos], "patterns": Tensor[layer, head, q, k]
        (float16), "scores": {name: Tensor[layer, head]}}."""
        return {"str_tokens": self._str_tokens, "tokens": self._tokens,
                "patterns": self._patterns, "scores": self._scores}
