"""Attribution of one prediction: direct logit attribution (per layer, head and MLP neuron), the
logit difference through the logit lens, and input-token attribution (integrated gradients,
gradient x input, occlusion).

Direct logit attribution builds on TransformerLens (`tools.analysis.direct_logit_attribution`
for layers and heads, `ActivationCache.stack_neuron_results` for neurons) over a filtered cache,
with the final LayerNorm scale of the real run; the model must have LayerNorm folded
(`load_model(..., fold_ln=True)`, the default). Input-token attribution is written here: TL 4.3
has none, and we run all integration steps (or all occlusions) as one batched pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model import Model
from .logit_lens import lens_logits, logit_lens, residual_stack, single_token_id

__all__ = ["LogitAttribution", "LogitAttributionSet", "TokenAttribution",
           "direct_logit_attribution", "direct_logit_attribution_set", "input_attribution",
           "logit_diff_lens", "logit_lens"]


def _single_prompt_tokens(model: Model, prompt: str | torch.Tensor,
                          prepend_bos: bool | None = None) -> torch.Tensor:
    """LongTensor[1, pos] of one prompt (text gets `Model.bos_for(prepend_bos)` first)."""
    tokens, _, single = model._tokenize(prompt, prepend_bos=prepend_bos)
    if not single and tokens.shape[0] != 1:
        raise ValueError(f"Attribution takes one prompt, got a batch of {tokens.shape[0]}.")
    return tokens[:1]


@dataclass
class LogitAttribution:
    """What each part of the model writes directly to logit(answer) - logit(wrong) at `pos`.

    embed, pos_embed: contributions of the token and position embeddings.
    attn, mlp: Tensor[layer]: each attention layer's and MLP's output (biases included).
    heads: Tensor[layer, head]: each head's own output ``z_h @ W_O[h]`` at `pos`, its constant
    term included (b_V and the first LayerNorm's bias through W_V, then W_O), which
    TransformerLens's value-bias folding moves into b_O; `Model.head_value_bias` (kept by
    `load_model`) puts it back. attn_bias: Tensor[layer] = attn - heads.sum(1): the attention
    output projection's own bias b_O, which belongs to no head (with a Model built from a bridge
    processed elsewhere, `head_value_bias` is unknown and the heads' constants stay in it:
    `heads_constant` is then False).
    neurons: Tensor[layer, d_mlp]; mlp_bias: Tensor[layer] = mlp - neurons.sum(1) (b_out).
    unembed_bias: b_U[answer] - b_U[wrong], a constant no component writes.
    logit_diff: the model's logit difference; embed + pos_embed + attn.sum() + mlp.sum() +
    unembed_bias equals it (up to float error).
    """

    str_tokens: list[str]
    answer: str
    wrong: str
    pos: int
    logit_diff: float
    embed: float
    pos_embed: float
    attn: torch.Tensor
    mlp: torch.Tensor
    heads: torch.Tensor
    attn_bias: torch.Tensor
    neurons: torch.Tensor
    mlp_bias: torch.Tensor
    unembed_bias: float
    heads_constant: bool = True

    @property
    def layers(self) -> torch.Tensor:
        """Tensor[layer]: attention + MLP of each layer."""
        return self.attn + self.mlp

    @property
    def total(self) -> float:
        """The sum of all components, which equals `logit_diff`."""
        return float(self.embed + self.pos_embed + self.layers.sum() + self.unembed_bias)

    def top_neurons(self, k: int = 10, sign: str | None = None) -> list[tuple[int, int, float]]:
        """[(layer, neuron, contribution)] of k neurons: sign=None the largest |contribution|;
        "positive" the k that raise logit(answer) - logit(wrong) most (contribution > 0 only),
        "negative" the k that lower it most (contribution < 0 only), most negative first."""
        if sign not in (None, "positive", "negative"):
            raise ValueError(f"sign must be None, 'positive' or 'negative'; got {sign!r}")
        flat = self.neurons.reshape(-1)  # [layer * d_mlp]
        key = flat.abs() if sign is None else flat if sign == "positive" else -flat
        vals, idx = key.topk(min(k, flat.numel()))
        d = self.neurons.shape[1]
        return [(i // d, i % d, float(flat[i])) for v, i in zip(vals.tolist(), idx.tolist())
                if sign is None or v > 0]


def direct_logit_attribution(model: Model, prompt: str | torch.Tensor, answer: str | int,
                             wrong: str | int, *, pos: int = -1,
                             prepend_bos: bool | None = None) -> LogitAttribution:
    """Decompose logit(answer) - logit(wrong) at `pos` of one prompt into direct contributions
    (see `LogitAttribution`). `answer`, `wrong`: single tokens such as " Mary" or ids.
    prepend_bos: None is the model's default (`Model.bos`)."""
    from transformer_lens.tools.analysis import direct_logit_attribution as tl_dla

    a = answer if isinstance(answer, int) else single_token_id(model, answer)
    w = wrong if isinstance(wrong, int) else single_token_id(model, wrong)
    tokens = _single_prompt_tokens(model, prompt, prepend_bos)
    n = tokens.shape[1]
    if not -n <= pos < n:
        raise ValueError(f"pos {pos} is out of range for a prompt of {n} tokens "
                         f"(use -{n} .. {n - 1}).")
    L = model.cfg.n_layers
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale",
             f"blocks.{L - 1}.hook_resid_post"]
    names += [f"blocks.{layer}.{h}" for layer in range(L)
              for h in ("hook_attn_out", "hook_mlp_out", "attn.hook_z", "mlp.hook_post")]
    bridge = model.bridge
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens, names_filter=names)
        comp = tl_dla(bridge, None, a, w, unit="component", pos=pos, cache=cache)
        heads = tl_dla(bridge, None, a, w, unit="head", pos=pos, cache=cache)
        direction = bridge.W_U[:, a] - bridge.W_U[:, w]  # [d_model]
        neurons = cache.stack_neuron_results(L, pos_slice=pos, apply_ln=True,
                                             project_output_onto=direction)
    c = dict(zip(comp.labels, comp.attribution.reshape(-1).float().cpu()))
    attn = torch.stack([c[f"{layer}_attn_out"] for layer in range(L)])
    mlp = torch.stack([c[f"{layer}_mlp_out"] for layer in range(L)])
    head_vals = heads.attribution.reshape(-1)[:-1].float().cpu().reshape(L, -1)  # no remainder
    vb = getattr(model, "head_value_bias", None)
    if vb is not None:  # each head's constant z, through W_O and the final LayerNorm
        with torch.no_grad():
            w_o = torch.stack([bridge.blocks[i].attn.W_O.detach().float().cpu()
                               for i in range(L)])  # [layer, head, d_head, d_model]
            const = torch.einsum("lhd,lhdm->lhm", vb, w_o)  # [layer, head, d_model]
            if str(model.cfg.normalization_type).startswith("LN"):
                const = const - const.mean(-1, keepdim=True)  # the final LayerNorm centres
            scale = cache["ln_final.hook_scale"][0, pos].float().cpu()  # [1]
            head_vals = head_vals + (const / scale) @ direction.float().cpu()
    neuron_vals = neurons.reshape(L, -1).float().cpu()  # [layer, d_mlp]
    b_u = getattr(bridge, "b_U", None)
    return LogitAttribution(
        str_tokens=model.to_str_tokens(tokens[0]),
        answer=model.tokenizer.decode([a]), wrong=model.tokenizer.decode([w]), pos=pos % n,
        logit_diff=float(logits[0, pos, a] - logits[0, pos, w]),
        embed=float(c["embed"]), pos_embed=float(c.get("pos_embed", 0.0)),
        attn=attn, mlp=mlp, heads=head_vals, attn_bias=attn - head_vals.sum(1),
        neurons=neuron_vals, mlp_bias=mlp - neuron_vals.sum(1),
        unembed_bias=0.0 if b_u is None else float(b_u[a] - b_u[w]),
        heads_constant=vb is not None,
    )


def logit_diff_lens(model: Model, prompt: str | torch.Tensor, answer: str | int,
                    wrong: str | int, *, prepend_bos: bool | None = None
                    ) -> tuple[list[str], torch.Tensor]:
    """(layer labels, Tensor[layer + 1, pos]): logit(answer) - logit(wrong) read through the
    final LayerNorm and unembedding from the residual stream before each layer and after the
    last (the logit lens, `logit_lens.residual_stack`)."""
    a = answer if isinstance(answer, int) else single_token_id(model, answer)
    w = wrong if isinstance(wrong, int) else single_token_id(model, wrong)
    _, labels, resid = residual_stack(model, prompt, prepend_bos=prepend_bos)  # [L+1, pos, d]
    with torch.no_grad():
        logits = lens_logits(model, resid)  # [layer + 1, pos, vocab]
    return labels, (logits[..., a] - logits[..., w]).float().cpu()


# ---- input-token attribution ---------------------------------------------------------------


@dataclass
class TokenAttribution:
    """How much each input token contributes to `target` (a logit difference or log-prob).

    values: Tensor[pos]. method: "integrated_gradients", "grad_x_input" or "occlusion".
    target_value: the target on the prompt. baseline: what a removed token's embedding becomes
    ("pad": the pad token's embedding, "zero"); baseline_value: the target with every token but
    a leading BOS replaced so (integrated gradients only). completeness_gap: integrated
    gradients only, (target - baseline) - values.sum(); `relative_gap` divides it by
    |target - baseline|. steps: the Gauss-Legendre points used.
    """

    str_tokens: list[str]
    values: torch.Tensor
    method: str
    target: str
    target_value: float
    baseline_value: float | None = None
    completeness_gap: float | None = None
    baseline: str = "pad"
    steps: int | None = None

    @property
    def relative_gap(self) -> float | None:
        """|completeness_gap| / |target - baseline| (None unless integrated gradients)."""
        if self.completeness_gap is None or self.baseline_value is None:
            return None
        span = abs(self.target_value - self.baseline_value)
        return abs(self.completeness_gap) / span if span > 0 else 0.0


METHODS = ("integrated_gradients", "grad_x_input", "occlusion")
BASELINES = ("pad", "zero")


def _target_fn(model: Model, answer: str | int, wrong: str | int | None, pos: int
               ) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """(name, f): f maps logits [batch, pos, vocab] -> Tensor[batch]."""
    a = answer if isinstance(answer, int) else single_token_id(model, answer)
    sa = model.tokenizer.decode([a])
    if wrong is None:
        return f"log p({sa!r})", lambda lg: lg[:, pos].float().log_softmax(-1)[:, a]
    w = wrong if isinstance(wrong, int) else single_token_id(model, wrong)
    sw = model.tokenizer.decode([w])
    return f"logit({sa!r}) - logit({sw!r})", lambda lg: (lg[:, pos, a] - lg[:, pos, w]).float()


def _run_embeds(model: Model, tokens: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, vocab] of `tokens` [1, pos] with the token embeddings replaced by
    `embeds` [batch, pos, d_model] (position embeddings unchanged)."""
    batch = embeds.shape[0]

    def swap(act: torch.Tensor, hook=None) -> torch.Tensor:
        return embeds.to(act.dtype)

    return model.bridge.run_with_hooks(tokens.expand(batch, -1),
                                       fwd_hooks=[("hook_embed", swap)])


def _embeddings(model: Model, tokens: torch.Tensor) -> torch.Tensor:
    """Tensor[1, pos, d_model]: the value of ``hook_embed`` for `tokens` [1, pos] (whatever
    scaling the architecture applies there, e.g. Gemma's sqrt(d_model))."""
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(tokens, names_filter=["hook_embed"])
    return cache["hook_embed"].detach()


def _baseline_embeds(model: Model, tokens: torch.Tensor, baseline: str) -> torch.Tensor:
    """Tensor[1, pos, d_model] that a removed token's embedding becomes."""
    if baseline == "zero":
        return torch.zeros_like(_embeddings(model, tokens[:, :1])).expand(
            1, tokens.shape[1], -1).clone()
    tok = model.tokenizer
    pad = next((i for i in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
                if i is not None), 0)
    return _embeddings(model, torch.full_like(tokens, pad))


def _integrated(model: Model, tokens: torch.Tensor, x: torch.Tensor, base: torch.Tensor,
                keep: torch.Tensor, f: Callable, steps: int, chunk: int) -> torch.Tensor:
    """Tensor[pos, d_model]: (x - base) * the Gauss-Legendre mean gradient on the straight path
    base -> x (positions with keep = 1 held at x), `chunk` points per forward/backward."""
    if steps == 1:  # gradient x input at x itself
        alphas, weights = torch.ones(1), torch.ones(1)
    else:
        nodes, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        alphas, weights = torch.tensor((nodes + 1) / 2), torch.tensor(w / 2)
    alphas = alphas.to(x.device, x.dtype)
    weights = weights.to(x.device, x.dtype)
    delta = (x - base) * (1 - keep)  # [1, pos, d_model]
    total = torch.zeros_like(x[0])
    for at in range(0, steps, chunk):
        a = alphas[at:at + chunk, None, None]  # [chunk, 1, 1]
        with torch.enable_grad():
            embeds = (x - (1 - a) * delta).requires_grad_(True)  # [chunk, pos, d_model]
            out = f(_run_embeds(model, tokens, embeds))  # [chunk]
            (grad,) = torch.autograd.grad(out.sum(), embeds)
        total += (grad * weights[at:at + chunk, None, None]).sum(0)
    return delta[0] * total


def input_attribution(model: Model, prompt: str | torch.Tensor, answer: str | int,
                      wrong: str | int | None = None, *, method: str = "integrated_gradients",
                      steps: int | None = None, pos: int = -1, baseline: str = "pad",
                      tol: float = 0.01, max_steps: int = 256, chunk: int = 16,
                      prepend_bos: bool | None = None) -> TokenAttribution:
    """Attribute logit(answer) - logit(wrong) (or log p(answer) when `wrong` is None) at `pos`
    to each input token.

    integrated_gradients: (x - b) . mean gradient along the straight path from the baseline
    embeddings b to the real ones x, by Gauss-Legendre quadrature (`chunk` points per batched
    forward/backward). `baseline` "pad" (default) puts the pad token's embedding (EOS's, when
    there is no pad token) at every position: a real input the model has seen, so the path
    stays where RMSNorm + rotary models work; "zero" zeroes the embeddings, which on RMSNorm
    models leaves layer 0 a scale-free input and an unconverged integral. steps None: 16, then
    doubled until the completeness gap is below `tol` x |target - baseline| (at most
    `max_steps`); a warning says the gap when it is not. grad_x_input: embedding . gradient.
    occlusion: target minus the target with that token's embedding replaced by the baseline
    (all positions in one batched forward). A leading BOS (`Model.bos_mask`) is never replaced
    (it is where attention rests), so it scores 0; a model without BOS has none to keep."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}. Use one of: {', '.join(METHODS)}.")
    if baseline not in BASELINES:
        raise ValueError(f"Unknown baseline {baseline!r}. Use one of: {', '.join(BASELINES)}.")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1 (or None: adaptive), got {steps}.")
    tokens = _single_prompt_tokens(model, prompt, prepend_bos)
    n = tokens.shape[1]
    name, f = _target_fn(model, answer, wrong, pos)
    x = _embeddings(model, tokens)  # [1, pos, d_model]
    base = _baseline_embeds(model, tokens, baseline)
    keep = model.bos_mask(tokens)[0].to(x.dtype)[:, None]  # [pos, 1]: 1 where never replaced
    str_tokens = model.to_str_tokens(tokens[0])
    with torch.no_grad():
        target = float(f(model.bridge(tokens))[0])

    if method == "occlusion":
        rows = (1 - keep[:, 0]).nonzero()[:, 0]  # positions that can be occluded
        embeds = x.repeat(len(rows), 1, 1)  # [rows, pos, d_model]
        embeds[torch.arange(len(rows)), rows] = base[0, rows]
        with torch.no_grad():
            occluded = f(_run_embeds(model, tokens, embeds)).cpu() if len(rows) else None
        values = torch.zeros(n)
        if occluded is not None:
            values[rows.cpu()] = target - occluded
        return TokenAttribution(str_tokens, values, method, name, target, baseline=baseline)

    if method == "grad_x_input":
        grad_x = _integrated(model, tokens, x, torch.zeros_like(x), keep, f, 1, 1)
        values = (grad_x.sum(-1) * (1 - keep[:, 0])).float().cpu()
        return TokenAttribution(str_tokens, values, method, name, target, baseline="zero",
                                steps=1)
    with torch.no_grad():
        base_value = float(f(_run_embeds(model, tokens, x * keep + base * (1 - keep)))[0])
    span = target - base_value
    n_steps = steps or 16
    while True:
        values = _integrated(model, tokens, x, base, keep, f, n_steps, chunk).sum(-1)
        values = (values * (1 - keep[:, 0])).float().cpu()  # [pos]
        gap = span - float(values.sum())
        if steps is not None or abs(gap) <= tol * abs(span) or n_steps * 2 > max_steps:
            break
        n_steps *= 2
    if abs(gap) > tol * abs(span):
        warnings.warn(
            f"Integrated gradients did not converge: completeness gap {gap:.3g} is "
            f"{abs(gap) / max(abs(span), 1e-12):.1%} of target - baseline ({span:.3g}) at "
            f"{n_steps} steps. Pass more steps (steps=None adapts up to max_steps="
            f"{max_steps}; raise it), or baseline='pad' if you chose 'zero'.", stacklevel=2)
    return TokenAttribution(str_tokens, values, method, name, target, base_value, gap,
                            baseline=baseline, steps=n_steps)


# ---- over a prompt set ----------------------------------------------------------------------


@dataclass
class LogitAttributionSet:
    """Direct logit attribution over a set of prompts: per component the mean over prompts,
    a 95% bootstrap interval (prompts resampled, BCa) and the standard deviation over prompts.

    mean, low, high, spread: {name: Tensor} with the fields of `LogitAttribution` ("embed",
    "pos_embed", "attn" [layer], "mlp" [layer], "heads" [layer, head], "attn_bias" [layer],
    "neurons" [layer, d_mlp], "mlp_bias" [layer], "unembed_bias", "logit_diff"), each a 0-d
    tensor or the field's shape. per_prompt: [LogitAttribution] one per prompt."""

    mean: dict[str, torch.Tensor]
    low: dict[str, torch.Tensor]
    high: dict[str, torch.Tensor]
    spread: dict[str, torch.Tensor]
    per_prompt: list[LogitAttribution]

    @property
    def n(self) -> int:
        return len(self.per_prompt)

    def estimate(self, name: str, *index: int):
        """One component as an `Estimate`, e.g. ``estimate("heads", 2, 0)``."""
        from .uncertainty import Estimate

        if name not in self.mean:
            raise ValueError(f"Unknown component {name!r}; use one of {sorted(self.mean)}.")
        return Estimate(float(self.mean[name][index]), float(self.low[name][index]),
                        float(self.high[name][index]), self.n)

    def frame(self, neurons: bool = False):
        """Long DataFrame: component label ("L2H0", "attn 1", "mlp 0", "embed" ...), value,
        value_low, value_high, spread, value_ci; neuron rows only with `neurons`."""
        import pandas as pd

        from .uncertainty import Estimate

        rows = []
        for name, m in self.mean.items():
            if name == "neurons" and not neurons:
                continue
            for idx in np.ndindex(*m.shape):
                label = _component_label(name, idx)
                v, lo, hi = (float(t[name][idx]) for t in (self.mean, self.low, self.high))
                rows.append({"component": label, "value": v, "value_low": lo,
                             "value_high": hi, "spread": float(self.spread[name][idx]),
                             "value_ci": str(Estimate(v, lo, hi, self.n))})
        return pd.DataFrame(rows)


def _component_label(name: str, idx: tuple[int, ...]) -> str:
    if name == "heads":
        return f"L{idx[0]}H{idx[1]}"
    if name == "neurons":
        return f"L{idx[0]}N{idx[1]}"
    return f"{name} {idx[0]}" if idx else name


_DLA_FIELDS = ("embed", "pos_embed", "attn", "mlp", "heads", "attn_bias", "neurons", "mlp_bias",
               "unembed_bias", "logit_diff")


def direct_logit_attribution_set(model: Model, prompts: Sequence[str] | Sequence[tuple],
                                 answers: str | int | Sequence[str | int] | None = None,
                                 wrongs: str | int | Sequence[str | int] | None = None, *,
                                 pos: int = -1, n_boot: int = 2000, seed: int = 0
                                 ) -> LogitAttributionSet:
    """`direct_logit_attribution` of each prompt, summarised over the set (see
    `LogitAttributionSet`). prompts: strings with `answers` / `wrongs` (one token, or one per
    prompt), or (prompt, answer, wrong) triples such as `demo.tasks.ioi_prompts`."""
    from .uncertainty import bootstrap_mean

    items = list(prompts)
    if items and isinstance(items[0], tuple):
        if answers is not None or wrongs is not None:
            raise ValueError("Give (prompt, answer, wrong) triples or answers= and wrongs=, "
                             "not both.")
        triples = [tuple(t) for t in items]
    else:
        if answers is None or wrongs is None:
            raise ValueError("Give answers= and wrongs= (a token each, or one per prompt), or "
                             "(prompt, answer, wrong) triples.")

        def per(x: Any, what: str) -> list[Any]:
            if isinstance(x, (str, int)):
                return [x] * len(items)
            x = list(x)
            if len(x) != len(items):
                raise ValueError(f"{what} has {len(x)} entries for {len(items)} prompts.")
            return x

        triples = list(zip(items, per(answers, "answers"), per(wrongs, "wrongs")))
    if len(triples) < 2:
        raise ValueError("direct_logit_attribution_set needs at least 2 prompts to give an "
                         "interval; for one use direct_logit_attribution.")
    runs = [direct_logit_attribution(model, p, a, w, pos=pos) for p, a, w in triples]
    mean, low, high, spread = {}, {}, {}, {}
    for name in _DLA_FIELDS:
        stack = torch.stack([torch.as_tensor(getattr(r, name), dtype=torch.float64)
                             for r in runs])  # [prompt, *shape]
        shape = stack.shape[1:]
        flat = stack.reshape(len(runs), -1).numpy()
        est = bootstrap_mean(flat, n_boot=n_boot, seed=seed)
        mean[name] = torch.tensor([e.value for e in est]).reshape(shape)
        low[name] = torch.tensor([e.low for e in est]).reshape(shape)
        high[name] = torch.tensor([e.high for e in est]).reshape(shape)
        spread[name] = torch.from_numpy(flat.std(0, ddof=1)).reshape(shape)
    return LogitAttributionSet(mean, low, high, spread, runs)
