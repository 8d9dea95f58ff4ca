"""The local replacement model of one prompt: the real run with its attention patterns and
normalisation scales frozen, each MLP replaced by its transcoders plus an error term that holds
what they miss, so that it reproduces the real logits exactly and is linear in its sources
(token embeddings, transcoder features, errors, biases).

`ReplacementRun.linear_forward(batch)` runs that model on `batch` copies of the prompt through
TransformerLens hooks, with leaf tensors where the sources enter, so one backward pass gives the
direct effect of every source on one target per batch row (circuit-tracer's scheme).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..model import Model
    from ..sae.transcoder import Transcoders


@dataclass
class Leaves:
    """The tensors of one linear forward where gradients are read (each [batch, pos, d_model])."""

    embed: torch.Tensor | None = None
    pos_embed: torch.Tensor | None = None
    attn_out: list[torch.Tensor] = field(default_factory=list)   # zero leaves added to attn out
    mlp_out: list[torch.Tensor] = field(default_factory=list)    # the MLP outputs (constants)
    mlp_in: list[torch.Tensor] = field(default_factory=list)     # graph tensors, not leaves


class ReplacementRun:
    """One prompt's real run and everything the replacement model freezes or adds.

    Attributes: tokens LongTensor[pos]; logits Tensor[pos, vocab] (real); inputs / outputs:
    [Tensor[pos, d]] per layer (MLP input and output hooks); acts: [Tensor[pos, d_tc]] per layer;
    errors: [Tensor[pos, d_out]] = real MLP output - transcoder reconstruction (incl. skip);
    embed / pos_embed: Tensor[pos, d_model] (pos_embed None where the model has none);
    frozen: {hook: value} (LayerNorm scales, attention patterns)."""

    def __init__(self, model: Model, tcs: Transcoders, tokens: torch.Tensor):
        self.model, self.tcs, self.tokens = model, tcs, tokens
        L = tcs.n_layers
        names = model.hook_names()
        self.scale_hooks = [h for h in names if h.endswith("hook_scale")]
        self.pattern_hooks = [f"blocks.{layer}.attn.hook_pattern" for layer in range(L)]
        ins = [tcs.input_hook_name(layer) for layer in range(L)]
        outs = [tcs.output_hook_name(layer) for layer in range(L)]
        want = ["hook_embed", "hook_pos_embed", *self.scale_hooks, *self.pattern_hooks,
                *ins, *outs]
        with torch.no_grad():
            logits, cache = model.bridge.run_with_cache(tokens[None].to(model.device),
                                                        names_filter=want)
        self.logits = logits[0].float()
        self.frozen = {h: cache[h].detach() for h in (*self.scale_hooks, *self.pattern_hooks)
                       if h in cache}
        self.embed = cache["hook_embed"][0].float()
        self.pos_embed = cache["hook_pos_embed"][0].float() if "hook_pos_embed" in cache \
            else None
        self.inputs = [cache[h][0].float() for h in ins]
        self.outputs = [cache[h][0].float() for h in outs]
        with torch.no_grad():
            self.acts = [tcs.encode(layer, x).float() for layer, x in enumerate(self.inputs)]
            self.consts = []  # what each MLP output holds besides its skip term
            self.errors = []
            for layer in range(L):
                skip = tcs.skip_term(layer, self.inputs[layer])
                recon = tcs.decode(layer, self.acts).float()
                self.consts.append(self.outputs[layer] - skip)
                self.errors.append(self.outputs[layer] - skip - recon)
        self.attn_bias, self.unembed_bias = self._constants()

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    def _frozen_hooks(self, batch: int) -> list[tuple[str, Any]]:
        def freeze(name: str):
            value = self.frozen[name]

            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                return value.expand(batch, *value.shape[1:]).to(x.dtype)
            return hook
        return [(h, freeze(h)) for h in self.frozen]

    def _constants(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(per layer Tensor[pos, d_model]: what attention adds for a zero input, i.e. its
        biases with the frozen pattern; Tensor[vocab]: the logits of a zero final residual).

        One forward of n_layers + 1 rows: row l zeroes the residual entering block l and
        reads that block's attention output; the last row zeroes the final residual."""
        L, n = self.tcs.n_layers, self.n_pos
        got: dict[int, torch.Tensor] = {}

        def zero_row(row: int):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                x = x.clone()
                x[row] = 0
                return x
            return hook

        def read(layer: int):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                got[layer] = x[layer].detach().float()
                return x
            return hook

        fwd = self._frozen_hooks(L + 1)
        fwd += [(f"blocks.{layer}.hook_resid_pre", zero_row(layer)) for layer in range(L)]
        fwd += [(f"blocks.{layer}.hook_attn_out", read(layer)) for layer in range(L)]
        fwd += [(f"blocks.{L - 1}.hook_resid_post", zero_row(L))]
        toks = self.tokens[None].expand(L + 1, n).to(self.model.device)
        with torch.no_grad(), self.model.bridge.hooks(fwd_hooks=fwd):
            logits = self.model.bridge(toks)
        return [got[layer] for layer in range(L)], logits[L, -1].float()

    @contextmanager
    def linear_forward(self, batch: int) -> Iterator[Leaves]:
        """Context manager: hooks for `batch` rows of the replacement model; run
        `self.model.bridge(tokens)` inside (see `forward`). Yields the `Leaves`, filled in as the
        forward runs."""
        leaves = Leaves()
        tcs = self.tcs

        def const(value: torch.Tensor, slot: str):
            def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
                leaf = value[None].expand(batch, *value.shape).to(x.dtype).clone()
                leaf.requires_grad_(True)
                setattr(leaves, slot, leaf)
                return leaf
            return hook

        def attn_leaf(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            z = torch.zeros_like(x, requires_grad=True)
            leaves.attn_out.append(z)
            return x + z

        def read_in(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
            leaves.mlp_in.append(x)
            return x

        def write_out(layer: int):
            def hook(y: torch.Tensor, hook: Any = None) -> torch.Tensor:
                c = self.consts[layer][None].expand(batch, *y.shape[1:]).to(y.dtype).clone()
                c.requires_grad_(True)
                leaves.mlp_out.append(c)
                if tcs.W_skip is None:
                    return c
                return c + tcs.skip_term(layer, leaves.mlp_in[layer]).to(y.dtype)
            return hook

        fwd = self._frozen_hooks(batch)
        fwd.append(("hook_embed", const(self.embed, "embed")))
        if self.pos_embed is not None:
            fwd.append(("hook_pos_embed", const(self.pos_embed, "pos_embed")))
        for layer in range(tcs.n_layers):
            fwd += [(f"blocks.{layer}.hook_attn_out", attn_leaf),
                    (tcs.input_hook_name(layer), read_in),
                    (tcs.output_hook_name(layer), write_out(layer))]
        with self.model.bridge.hooks(fwd_hooks=fwd):
            yield leaves

    def forward(self, batch: int) -> tuple[torch.Tensor, Leaves]:
        """(logits Tensor[batch, pos, vocab] of the replacement model, its Leaves).

        The weights of the model and transcoders are constants of the autograd graph (they
        require no grad during this forward), so a backward pass fills only the leaves."""
        toks = self.tokens[None].expand(batch, self.n_pos).to(self.model.device)
        with torch.enable_grad(), _constant_weights(self.model.bridge, self.tcs), \
                self.linear_forward(batch) as leaves:
            logits = self.model.bridge(toks)
        return logits, leaves


@contextmanager
def _constant_weights(*modules: torch.nn.Module) -> Iterator[None]:
    """Parameters of `modules` require no grad inside the block (restored after it)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
