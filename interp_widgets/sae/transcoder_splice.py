"""Splicing transcoders into a model: MLP outputs replaced by their reconstructions, or the real
MLP outputs shifted by edits of transcoder features (the error term kept).

    with transcoders_spliced(model, tcs, layers=[1]):      # MLP 1 -> its transcoder
        run = model.run(prompt)
    with transcoders_spliced(model, tcs, edits={(1, 5, 42): 0.0}, use_error_term=True):
        run = model.run(prompt)                      # real model, feature 42 at (1, 5) = 0

Hooks go through TransformerLens's `bridge.hooks`. Features are computed live from each run's own
MLP inputs, so features downstream of a change respond to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..model import Model
    from .transcoder import Transcoders

# (layer, pos, feature) -> value; pos None means every position
FeatureKey = tuple[int, int | None, int]


def _apply_edits(acts: torch.Tensor, layer: int, edits: Mapping[FeatureKey, float]) -> torch.Tensor:
    """acts [batch, pos, d_tc] of `layer` with the edits for that layer applied (a copy)."""
    mine = [(p, f, v) for (lyr, p, f), v in edits.items() if lyr == layer]
    if not mine:
        return acts
    acts = acts.clone()
    for p, f, v in mine:
        if p is None:
            acts[..., f] = v
        else:
            acts[:, p, f] = v
    return acts


@contextmanager
def transcoders_spliced(model: Model, tcs: Transcoders, *, layers: Sequence[int] | None = None,
                        edits: Mapping[FeatureKey, float] | None = None,
                        use_error_term: bool = False, skip_bos: bool = False,
                        cache: dict[str, torch.Tensor] | None = None) -> Iterator[Model]:
    """Context manager: inside it, the MLP output of each layer in `layers` (default all) is
    the transcoders' reconstruction from the live MLP inputs, with `edits` applied to the
    features. With `use_error_term`, the real MLP output plus (edited - unedited)
    reconstruction instead, so with no edits the model is unchanged. `skip_bos` leaves position
    0 as it was. `cache`, if given, receives `acts.{layer}` (Tensor[batch, pos, d_tc], edited)."""
    tcs.check_model(model)
    layers = list(range(tcs.n_layers)) if layers is None else sorted(set(layers))
    edits = dict(edits or {})
    bad = [k for k in edits if not 0 <= k[2] < tcs.d_transcoder or not 0 <= k[0] < tcs.n_layers]
    if bad:
        raise IndexError(f"Edits {bad} name a layer or feature these transcoders lack (layers "
                         f"0 .. {tcs.n_layers - 1}, features 0 .. {tcs.d_transcoder - 1}).")
    need = sorted({s for t in layers for s in tcs.sources(t)})
    inputs: dict[int, torch.Tensor] = {}
    acts: list[torch.Tensor | None] = [None] * tcs.n_layers
    edited: list[torch.Tensor | None] = [None] * tcs.n_layers

    def read(layer: int):
        def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            with torch.no_grad():
                inputs[layer] = x
                acts[layer] = tcs.encode(layer, x)
                edited[layer] = _apply_edits(acts[layer], layer, edits)
                if cache is not None:
                    cache[f"acts.{layer}"] = edited[layer]
            return x
        return hook

    def write(layer: int):
        def hook(y: torch.Tensor, hook: Any = None) -> torch.Tensor:
            with torch.no_grad():
                new = tcs.decode(layer, edited)
                if use_error_term:
                    out = y + (new - tcs.decode(layer, acts)).to(y.dtype)
                else:
                    out = (new + tcs.skip_term(layer, inputs[layer])).to(y.dtype)
                if skip_bos and out.ndim >= 3:
                    out = out.clone()
                    out[:, 0] = y[:, 0]
            return out
        return hook

    fwd = [(tcs.input_hook_name(s), read(s)) for s in need]
    fwd += [(tcs.output_hook_name(t), write(t)) for t in layers]
    with model.bridge.hooks(fwd_hooks=fwd):
        yield model
