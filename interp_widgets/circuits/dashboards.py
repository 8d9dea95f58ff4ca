"""What a graph node's dashboard shows: the top corpus activations of a transcoder feature (one
streaming scan of that transcoder layer, `analysis.feature_scan.scan_features`) and its top
logit effects (its decoder direction through the unembedding, `analysis.features`).

`TranscoderLayer` presents one layer of a `Transcoders` as the dictionary those functions read
(`encode`, `decode`, `feature_directions`, `d_in`, `d_sae`, `hook_name`), so the scan, the logit
effects and the nearest features are the same code as for SAE latents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..analysis.feature_scan import FeatureScan, scan_features
from ..analysis.features import FeatureLogitEffect, feature_logit_effect

if TYPE_CHECKING:
    from ..model import Model
    from ..sae.transcoder import Transcoders


class TranscoderLayer:
    """Layer `layer` of `transcoders` as a dictionary over its MLP input.

    encode: x [..., d_in] -> activations [..., d_sae]; feature_directions(): [d_sae, d_out], what
    one unit of a feature writes to the residual stream summed over every MLP output it reaches
    (one for a per-layer transcoder, every later layer for a cross-layer one), which is the
    direct path to the logits; decode: activations -> this layer's own MLP-output part."""

    def __init__(self, transcoders: Transcoders, layer: int):
        if not 0 <= int(layer) < transcoders.n_layers:
            raise IndexError(f"Layer {layer} out of range: these transcoders cover layers "
                             f"0 .. {transcoders.n_layers - 1}.")
        self.transcoders, self.layer = transcoders, int(layer)
        self.d_in, self.d_sae = transcoders.d_in, transcoders.d_transcoder
        self.hook_name = transcoders.input_hook_name(self.layer)

    def __repr__(self) -> str:
        return f"TranscoderLayer({self.hook_name}, {self.d_sae} features)"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.transcoders.encode(self.layer, x)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        tc, lyr = self.transcoders, self.layer
        return acts @ tc.decoder(lyr, lyr) + tc.b_dec[lyr]

    def feature_directions(self) -> torch.Tensor:
        tc = self.transcoders
        return sum(tc.decoder(self.layer, t) for t in range(self.layer, tc.n_layers)
                   if self.layer in tc.sources(t))


def scan_transcoder_layer(model: Model, transcoders: Transcoders, layer: int,
                          corpus: Iterable[str | Sequence[int]], **kwargs: Any) -> FeatureScan:
    """One streaming scan of every feature of transcoder layer `layer` over `corpus`
    (`scan_features` keywords pass through: k, batch_size, context, progress, ...)."""
    return scan_features(model, TranscoderLayer(transcoders, layer), corpus, **kwargs)


def transcoder_logit_effect(model: Model, transcoders: Transcoders, layer: int, feature: int,
                            k: int = 10) -> FeatureLogitEffect:
    """The tokens whose logits feature `feature` of layer `layer` most raises and lowers through
    the direct path (its summed decoder direction @ W_U); effect: Tensor[vocab]."""
    return feature_logit_effect(model, TranscoderLayer(transcoders, layer), feature, k=k)
