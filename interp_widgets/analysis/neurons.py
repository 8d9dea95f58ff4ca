"""One MLP neuron, studied directly and causally: its activations, its direct effect on the logits,
what drives it (decomposed from the cache, and gradient x input), the neurons it fires with, and
what happens when it is ablated, scaled or patched.

Activations are read at an MLP activation hook (``mlp.hook_post`` by default); interventions edit
that hook at neuron n. Direct effects assume the model was loaded with LayerNorm folded
(`load_model(..., fold_ln=True)`, the default), so ``W_out[n] @ W_U`` is the neuron's write to the
logits up to the final LayerNorm's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ..model import Model, Run, per_token_loss
from ._checks import check_layer, check_neuron, d_mlp, mlp_hook
from .corpus import NeuronScan, iter_corpus, layer_activations
from .logit_lens import single_token_id

Hook = Callable[[torch.Tensor, object], torch.Tensor]


def _neuron(model: Model, layer: int, neuron: int, hook: str = "mlp.hook_post") -> tuple[str, int]:
    """(full hook name, neuron) after checking both."""
    name = mlp_hook(model, layer, hook)
    return name, check_neuron(neuron, d_mlp(model))


def _hooked_logits(model: Model, run: Run, hooks: list[tuple[str, Hook]],
                   grab: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Tensor[batch, pos, vocab]: the logits of `run`'s tokens (same padding) with `hooks` on;
    `grab` {hook name: ...} is filled with those hooks' values of the hooked pass."""
    padded = bool((run.attention_mask == 0).any())
    kwargs = {"attention_mask": run.attention_mask} if padded else {}
    extra = []
    for name in grab or {}:
        def keep(act: torch.Tensor, hook=None, name=name) -> None:
            grab[name] = act.detach()
        extra.append((name, keep))
    with torch.no_grad():
        return model.bridge.run_with_hooks(run.tokens, fwd_hooks=hooks + extra, **kwargs)


def _set_neuron(neuron: int, values: torch.Tensor | float, pos: torch.Tensor | None = None,
                scale: torch.Tensor | None = None) -> Hook:
    """A hook that sets (or, with `scale` [batch], multiplies) activation[..., neuron] at `pos`
    (a bool mask [batch, pos]; all positions if None). `values` broadcasts to [batch, pos]."""

    def hook(act: torch.Tensor, hook=None) -> torch.Tensor:  # act: [batch, pos, d_mlp]
        act = act.clone()
        col = act[..., neuron]
        new = col * scale.to(col)[:, None] if scale is not None else torch.as_tensor(values).to(
            col).expand_as(col)
        act[..., neuron] = new if pos is None else torch.where(pos.to(col.device), new, col)
        return act

    return hook


# ---- activations --------------------------------------------------------------------------------


def neuron_activations(model: Model, prompt: str | Sequence[str], layer: int, neuron: int, *,
                       hook: str = "mlp.hook_post") -> tuple[list, torch.Tensor]:
    """(str_tokens, acts): the neuron's activation at every token. For one prompt acts is
    Tensor[pos]; for a list, Tensor[batch, pos] (NaN at padding) with a list of token lists."""
    name, n = _neuron(model, layer, neuron, hook)
    run = model.run(prompt, names=[name])
    acts = run.cache[name][..., n].float().cpu()  # [batch, pos]
    acts = acts.masked_fill(run.attention_mask.cpu() == 0, float("nan"))
    return run.str_tokens, acts[0] if run.single else acts


def corpus_activations(model: Model, corpus, layer: int, neuron: int, *,
                       hook: str = "mlp.hook_post",
                       batch_size: int = 32) -> list[tuple[int, list[int], torch.Tensor]]:
    """For each non-empty document: (its index, token ids with the model's BOS first, if it has
    one, acts Tensor[pos]). Documents are rows as in `scan_neurons`. Memory grows with the
    corpus; for large corpora use `scan_neurons`."""
    name, n = _neuron(model, layer, neuron, hook)
    out = []
    for batch in iter_corpus(model, corpus, batch_size):
        if batch.rows:
            _, _, acts = layer_activations(model, [r for _, r in batch.rows], name)
            acts = acts[..., n].float().cpu()  # [batch, pos]
            out += [(d, r, acts[i, : len(r)]) for i, (d, r) in enumerate(batch.rows)]
    return out


# ---- direct effect on the logits ----------------------------------------------------------------


@dataclass
class LogitEffect:
    """The neuron's direct effect on each token's logit per unit of activation.

    effect: Tensor[vocab] = W_out[neuron] @ W_U. ln_scale: the final LayerNorm's scale it was
    divided by for `effect_ln` (None if not asked). top / bottom: DataFrames of the k most
    raised / lowered tokens (columns token, id, effect, and effect_ln when ln_scale is set)."""

    layer: int
    neuron: int
    effect: torch.Tensor
    ln_scale: float | None
    top: pd.DataFrame
    bottom: pd.DataFrame

    @property
    def effect_ln(self) -> torch.Tensor | None:
        return None if self.ln_scale is None else self.effect / self.ln_scale


def final_ln_scale(model: Model, prompts: str | Sequence[str]) -> float:
    """Mean scale (the std the final LayerNorm divides by) over the prompts' non-BOS tokens."""
    run = model.run(prompts, names=["ln_final.hook_scale"])
    scale = run.cache["ln_final.hook_scale"][..., 0]  # [batch, pos]
    mask = run.attention_mask.bool() & ~model.bos_mask(run.tokens)
    if not mask.any():
        raise ValueError("The prompts have no tokens after BOS to measure the LayerNorm scale on.")
    return float(scale[mask].float().mean())


def direct_logit_effect(model: Model, layer: int, neuron: int, k: int = 10, *,
                        ln_scale: float | str | Sequence[str] | None = None) -> LogitEffect:
    """Top k raised and lowered tokens of ``W_out[neuron] @ W_U``.

    ln_scale: also give the effect divided by the final LayerNorm's scale: a number, or prompts
    whose mean scale is used (`final_ln_scale`). Dividing by a constant does not change the
    ranking; it puts the effect in logits per unit activation for typical text. On models with
    a norm after the MLP (Gemma 2/3's post-feedforward norm) the neuron's write passes that
    norm's per-token scale and elementwise weight before it reaches the stream, which this
    weight-only effect leaves out: there it is an approximation (see docs/real_models.md)."""
    check_layer(model, layer)
    n = check_neuron(neuron, d_mlp(model))
    b = model.bridge
    with torch.no_grad():
        w = b.blocks[layer].mlp.W_out[n]  # [d_model]
        if str(model.cfg.normalization_type).startswith("LN"):
            w = w - w.mean()  # LayerNorm centres its input (a no-op with centred weights)
        effect = (w @ b.W_U).float().cpu()  # [vocab]
    if ln_scale is not None and not isinstance(ln_scale, (int, float)):
        ln_scale = final_ln_scale(model, ln_scale)
    scale = None if ln_scale is None else float(ln_scale)
    return LogitEffect(layer, n, effect, scale, _token_table(model, effect, k, scale, True),
                       _token_table(model, effect, k, scale, False))


def _token_table(model: Model, effect: torch.Tensor, k: int, scale: float | None,
                 largest: bool) -> pd.DataFrame:
    top = effect.topk(min(k, effect.numel()), largest=largest)
    ids = top.indices.tolist()
    df = pd.DataFrame({"token": [model.tokenizer.decode([i]) for i in ids], "id": ids,
                       "effect": top.values.tolist()})
    if scale is not None:
        df["effect_ln"] = df["effect"] / scale
    return df


def find_neurons(model: Model, token: str, *, against: str | None = None,
                 layers: Sequence[int] | None = None, k: int = 10) -> pd.DataFrame:
    """The k neurons whose direct effect ``W_out[n] @ W_U[:, token]`` most raises `token`'s
    logit, over `layers` (all by default). Columns: layer, neuron, effect.

    against: a rival token; neurons are then ranked by what they add to the logit difference
    ``token - against`` (``W_out[n] @ (W_U[:, token] - W_U[:, against])``). The tokens a model
    weighs against each other often share much of their unembedding (" a" and " an"), so the
    neurons that raise one token's logit most may raise its rival's as much."""
    ids = [single_token_id(model, t) for t in (token, against) if t is not None]
    if len(ids) == 2 and ids[0] == ids[1]:
        raise ValueError(f"against={against!r} is the token itself; give a rival token, e.g. "
                         "find_neurons(model, ' an', against=' a')")
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    for layer in layers:
        check_layer(model, layer)
    b = model.bridge
    with torch.no_grad():
        direction = b.W_U[:, ids[0]]  # [d_model]
        if len(ids) == 2:
            direction = direction - b.W_U[:, ids[1]]
        rows = []
        for layer in layers:
            w = b.blocks[layer].mlp.W_out  # [d_mlp, d_model]
            if str(model.cfg.normalization_type).startswith("LN"):
                w = w - w.mean(-1, keepdim=True)
            rows.append((w @ direction).float().cpu())  # [d_mlp]
        effect = torch.stack(rows)  # [layer, d_mlp]
    top = effect.flatten().topk(min(k, effect.numel()))
    li, ni = top.indices // effect.shape[1], top.indices % effect.shape[1]
    return pd.DataFrame({"layer": [layers[i] for i in li.tolist()], "neuron": ni.tolist(),
                         "effect": top.values.tolist()})


# ---- what drives the neuron ---------------------------------------------------------------------


@dataclass
class InputAttribution:
    """What one of the neuron's pre-activations at `pos` is made of.

    hook: the pre-activation decomposed (``blocks.{layer}.mlp.hook_pre`` or ``hook_pre_linear``);
    kind: what it is (see `pre_activations`). labels / contributions (Tensor[component]): the
    embeddings, each attention head, each earlier MLP, the summed attention output biases and the
    pre-activation's own bias (``b_in``, or ``b_gate``, when the model has one), each read
    through the MLP's input norm (its scale taken from the run) and the pre-activation's weight
    column; they sum to `pre_activation`. With parallel attention and MLP (GPT-NeoX/Pythia) the
    MLP reads the stream before its layer's attention, so that layer's heads are not parts. On
    models with a norm after attention (Gemma 2/3) each head's part passes through that norm's
    per-token scale, so the parts still sum exactly.
    grad_x_input: Tensor[pos], gradient of the pre-activation with respect to the residual stream
    entering layer 0, times that input, summed over d_model."""

    str_tokens: list[str]
    pos: int
    labels: list[str]
    contributions: torch.Tensor
    pre_activation: float
    grad_x_input: torch.Tensor
    hook: str = ""
    kind: str = ""

    @property
    def total(self) -> float:
        return float(self.contributions.sum())

    def frame(self) -> pd.DataFrame:
        """The components as a DataFrame (label, contribution), largest magnitude first."""
        df = pd.DataFrame({"label": self.labels, "contribution": self.contributions.tolist()})
        return df.reindex(df["contribution"].abs().sort_values(ascending=False).index)


def is_gated(model: Model) -> bool:
    """Whether the model's MLPs are gated (Llama, Mistral, Qwen2, Gemma, Phi-3): a neuron's
    output ``mlp.hook_post`` is act(gate) * up."""
    return bool(getattr(model.cfg, "gated_mlp", False))


def pre_activations(model: Model) -> dict[str, str]:
    """{MLP hook: what it is} for the pre-activations a neuron of this model has.

    GPT-2-style MLP: ``mlp.hook_pre`` = x @ W_in + b_in, and hook_post = act(hook_pre).
    Gated MLP: ``mlp.hook_pre`` = x @ W_gate (+ b_gate), the gate pre-activation, and
    ``mlp.hook_pre_linear`` = x @ W_in (+ b_in), the up (linear) pre-activation;
    hook_post = act(hook_pre) * hook_pre_linear. x is the MLP's input after its norm."""
    if is_gated(model):
        return {"mlp.hook_pre": "gate pre-activation (x @ W_gate)",
                "mlp.hook_pre_linear": "up (linear) pre-activation (x @ W_in)"}
    return {"mlp.hook_pre": "pre-activation (x @ W_in + b_in)"}


def _pre_weights(model: Model, layer: int, pre: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                              str]:
    """(weight [d_model, d_mlp], bias [d_mlp] or None, bias label) behind MLP hook `pre`."""
    mlp = model.bridge.blocks[layer].mlp
    if pre == "mlp.hook_pre" and is_gated(model):
        return mlp.W_gate, getattr(mlp, "b_gate", None), "b_gate"
    return mlp.W_in, getattr(mlp, "b_in", None), "b_in"


def _written_parts(model: Model, cache: dict[str, torch.Tensor], layer: int, pos: int,
                   with_attn: bool) -> tuple[list[str], list[torch.Tensor]]:
    """(labels, vectors [d_model]) of everything written to the residual stream at `pos` of row
    0 before the MLP of `layer` (with its attention when `with_attn`), summing to that stream:
    the embeddings, each head of each layer, the attention output biases (one "bias" part) and
    each earlier MLP. On models with a norm after attention the heads and the bias are scaled
    by that norm's per-element factor (attn_out / pre-norm sum), which keeps them summing to what
    the layer wrote."""
    bridge, fired = model.bridge, model.fired_hooks()
    resid0 = cache["blocks.0.hook_resid_pre"][0, pos]
    labels, parts = ["embed"], [resid0]
    if "hook_pos_embed" in fired:
        pe = cache["hook_pos_embed"][0, pos] if cache["hook_pos_embed"].ndim == 3 else \
            cache["hook_pos_embed"][pos]
        parts = [resid0 - pe, pe]
        labels.append("pos_embed")
    bias = torch.zeros_like(resid0)
    head_labels, head_parts, mlp_labels, mlp_parts = [], [], [], []
    for i in range(layer + int(with_attn)):
        attn = bridge.blocks[i].attn
        z = cache[f"blocks.{i}.attn.hook_z"][0, pos]  # [head, d_head]
        heads = torch.einsum("hd,hdm->hm", z, attn.W_O)  # [head, d_model]
        b_o = attn.b_O if getattr(attn, "b_O", None) is not None else torch.zeros_like(resid0)
        if f"blocks.{i}.ln1_post.hook_scale" in fired:  # a norm after attention (Gemma)
            x = heads.sum(0) + b_o
            out = cache[f"blocks.{i}.hook_attn_out"][0, pos]
            factor = torch.where(x == 0, torch.zeros_like(x), out / x)
            heads, b_o = heads * factor, b_o * factor
        head_labels += [f"L{i}H{h}" for h in range(heads.shape[0])]
        head_parts += list(heads)
        bias = bias + b_o
        if i < layer:
            mlp_labels.append(f"{i}_mlp_out")
            mlp_parts.append(cache[f"blocks.{i}.hook_mlp_out"][0, pos])
    return labels + head_labels + mlp_labels + ["bias"], parts + head_parts + mlp_parts + [bias]


def neuron_input_attribution(model: Model, prompt: str, layer: int, neuron: int,
                             pos: int = -1, *, pre: str = "mlp.hook_pre",
                             prepend_bos: bool | None = None) -> InputAttribution:
    """Split one pre-activation of the neuron at `pos` (negative counts from the end) into the
    contributions of the embeddings, attention heads and earlier MLPs (see `InputAttribution`),
    plus gradient x input per token.

    pre: which pre-activation (`pre_activations` lists them): ``"mlp.hook_pre"`` (the gate's on
    a gated MLP, x @ W_gate) or, on a gated MLP, ``"mlp.hook_pre_linear"`` (the up projection,
    x @ W_in). Written here rather than with TransformerLens's `get_full_resid_decomposition`,
    which decomposes with W_in whatever the MLP, asks for ``hook_pos_embed`` on rotary models
    (where it never fires) and ignores norms after attention."""
    check_layer(model, layer)
    n = check_neuron(neuron, d_mlp(model))
    kinds = pre_activations(model)
    short = pre.removeprefix(f"blocks.{layer}.")
    short = short if short.startswith("mlp.") else f"mlp.{short}"
    if short not in kinds:
        raise ValueError(f"pre={pre!r} is not a pre-activation of this model's neurons; use one "
                         f"of {', '.join(repr(k) for k in kinds)} ({'; '.join(kinds.values())}).")
    name = f"blocks.{layer}.{short}"
    L = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre", f"blocks.{layer}.ln2.hook_scale", name]
    names += ["hook_pos_embed"] if "hook_pos_embed" in model.fired_hooks() else []
    names += [f"blocks.{i}.{h}" for i in range(min(layer + 1, L))
              for h in ("attn.hook_z", "hook_attn_out", "hook_mlp_out")]
    run = model.run(prompt, names=list(dict.fromkeys(names)), prepend_bos=prepend_bos)
    if not run.single:
        raise ValueError("neuron_input_attribution takes one prompt, not a list.")
    length = run.tokens.shape[1]
    if not -length <= pos < length:
        raise IndexError(f"pos {pos} is out of range for a prompt of {length} tokens "
                         f"(use -{length} .. {length - 1}).")
    pos %= length
    parallel = bool(getattr(model.cfg, "parallel_attn_mlp", False))  # GPT-NeoX / Pythia, GPT-J
    labels, vecs = _written_parts(model, run.cache, layer, pos, with_attn=not parallel)
    weight, bias, bias_label = _pre_weights(model, layer, short)
    with torch.no_grad():
        resid = torch.stack(vecs)  # [component, d_model]
        if str(model.cfg.normalization_type).startswith("LN"):
            resid = resid - resid.mean(-1, keepdim=True)  # LayerNorm centres (linear per part)
        resid = resid / run.cache[f"blocks.{layer}.ln2.hook_scale"][0, pos]
        parts = (resid @ weight[:, n]).float().cpu()  # [component]
        if bias is not None:
            parts = torch.cat([parts, bias[n].reshape(1).float().cpu()])
            labels = labels + [bias_label]
    return InputAttribution(run.str_tokens, pos, labels, parts,
                            float(run.cache[name][0, pos, n]),
                            _grad_x_input(model, run, name, n, pos), name, kinds[short])


def _grad_x_input(model: Model, run: Run, pre: str, neuron: int, pos: int) -> torch.Tensor:
    """Tensor[pos]: d pre[pos, neuron] / d resid_pre_0 . resid_pre_0, per input token."""
    kept: dict[str, torch.Tensor] = {}

    def grab_input(act, hook):
        act = act if act.requires_grad else act.detach().requires_grad_(True)
        kept["x"] = act
        return act

    def grab_pre(act, hook):
        kept["pre"] = act

    with torch.enable_grad():
        model.bridge.run_with_hooks(run.tokens, fwd_hooks=[("blocks.0.hook_resid_pre", grab_input),
                                                           (pre, grab_pre)])
        (grad,) = torch.autograd.grad(kept["pre"][0, pos, neuron], kept["x"])
    return (grad * kept["x"]).sum(-1)[0].detach().float().cpu()


# ---- co-activation and selectivity --------------------------------------------------------------


def correlated_neurons(scan: NeuronScan, neuron: int, k: int = 10) -> pd.DataFrame:
    """The k neurons of the scanned layer most correlated (Pearson, over every scanned position)
    with `neuron`, most positive first. Columns: neuron, correlation."""
    corr = scan.correlations(neuron).clone()
    corr[neuron] = float("nan")
    corr = torch.nan_to_num(corr, nan=-float("inf"))
    top = corr.topk(min(k, corr.numel() - 1))
    keep = torch.isfinite(top.values)
    return pd.DataFrame({"neuron": top.indices[keep].tolist(),
                         "correlation": top.values[keep].tolist()})


@dataclass
class Selectivity:
    """Mean activation at the selected positions against all others, over a corpus.

    mean_in / mean_out, n_in / n_out; difference = mean_in - mean_out; d: Cohen's d (difference
    over the pooled standard deviation); auroc: how well the activation separates the two sets
    (0.5 = not at all, 1 = perfectly, higher in the selected set)."""

    what: str
    mean_in: float
    mean_out: float
    n_in: int
    n_out: int
    d: float
    auroc: float

    @property
    def difference(self) -> float:
        return self.mean_in - self.mean_out


def neuron_selectivity(model: Model, corpus, layer: int, neuron: int, *,
                       token: str | None = None, where: str = "next",
                       labels: Sequence | None = None, label=None,
                       hook: str = "mlp.hook_post") -> Selectivity:
    """How selective the neuron is for a token or a document label.

    token + where="next": positions where `token` comes next; where="present": positions holding
    `token`. labels (one per document) + label: positions in documents with that label.
    BOS positions are left out."""
    from sklearn.metrics import roc_auc_score

    if (token is None) == (labels is None):
        raise ValueError("Give either token= (with where='next' or 'present') or labels= with "
                         "label=, not both and not neither.")
    if token is not None and where not in ("next", "present"):
        raise ValueError(f"where must be 'next' or 'present'; got {where!r}.")
    corpus = list(corpus)
    if labels is not None and len(labels) != len(corpus):
        raise ValueError(f"labels has {len(labels)} entries but the corpus has {len(corpus)} "
                         "documents: give one label per document.")
    t = single_token_id(model, token) if token is not None else None
    acts_in, acts_out = [], []
    for i, ids, acts in corpus_activations(model, corpus, layer, neuron, hook=hook):
        ids = torch.tensor(ids)
        if t is None:
            sel = torch.full((len(ids),), labels[i] == label)
        elif where == "present":
            sel = ids == t
        else:
            sel = torch.zeros(len(ids), dtype=torch.bool)
            sel[:-1] = ids[1:] == t
        skip = int(model.starts_with_bos(ids))
        sel, acts = sel[skip:], acts[skip:]  # drop BOS
        acts_in.append(acts[sel])
        acts_out.append(acts[~sel])
    a, b = torch.cat(acts_in).double(), torch.cat(acts_out).double()
    what = f"{token!r} {where}" if token is not None else f"label {label!r}"
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError(f"No positions {'match' if a.numel() == 0 else 'fall outside'} {what} "
                         "in this corpus, so there is nothing to compare.")
    pooled = ((a.var(unbiased=False) * a.numel() + b.var(unbiased=False) * b.numel())
              / (a.numel() + b.numel())).sqrt()
    y = torch.cat([torch.ones(a.numel()), torch.zeros(b.numel())])
    return Selectivity(what, float(a.mean()), float(b.mean()), a.numel(), b.numel(),
                       float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan"),
                       float(roc_auc_score(y.numpy(), torch.cat([a, b]).numpy())))


# ---- interventions ------------------------------------------------------------------------------


@dataclass
class AblationResult:
    """Per-token effect of ablating the neuron. Tensors are [batch, pos] (NaN at padding) and
    [batch, pos, target] for the targets; logits / probs at pos predict the token at pos + 1.
    `value`: what the activation was set to (a number, or "resample").
    `logit_clean` / `logit_ablated` are the model's own logits (the Hugging Face model's,
    `Model.logit_shift` added back to TransformerLens's centred ones); `logits_centred` is True
    when the shift was unknown (a bridge wrapped after processing) and they are the centred
    ones, which differ from the model's by a per-position constant (differences and
    probabilities are unaffected)."""

    mode: str
    value: float | str
    str_tokens: list[list[str]]
    loss_clean: torch.Tensor
    loss_ablated: torch.Tensor
    targets: list[str]
    logit_clean: torch.Tensor
    logit_ablated: torch.Tensor
    prob_clean: torch.Tensor
    prob_ablated: torch.Tensor
    logits_centred: bool = False

    @property
    def d_loss(self) -> torch.Tensor:
        return self.loss_ablated - self.loss_clean

    @property
    def d_logit(self) -> torch.Tensor:
        return self.logit_ablated - self.logit_clean

    @property
    def d_prob(self) -> torch.Tensor:
        return self.prob_ablated - self.prob_clean


def _replacement(mode: str, neuron: int, layer: int, hook: str, model: Model, corpus,
                 scan: NeuronScan | None, shape: tuple[int, int],
                 generator: torch.Generator) -> tuple[torch.Tensor | float, float | str]:
    """(values broadcastable to [batch, pos], description) for an ablation mode."""
    if mode == "zero":
        return 0.0, 0.0
    if scan is not None:
        if (scan.layer, scan.hook) != (layer, hook):
            raise ValueError(f"The scan is of {scan.hook}, but the ablation is at {hook}: pass a "
                             "scan of the same layer and hook.")
        if mode == "mean":
            v = float(scan.mean[neuron])
            return v, v
        pool = [(b.count / len(b.examples), e.value)
                 for b in scan.bucket_examples(neuron) for e in b.examples]
        if not pool:
            raise ValueError("The scan has no samples of this neuron to resample from.")
        weights, values = torch.tensor(pool, dtype=torch.float64).T
    elif corpus is not None:
        docs = corpus_activations(model, corpus, layer, neuron, hook=hook)
        values = torch.cat([a[int(model.starts_with_bos(r)):] for _, r, a in docs])  # no BOS
        if values.numel() == 0:
            raise ValueError("The corpus has no tokens to take ablation statistics from.")
        if mode == "mean":
            v = float(values.double().mean())
            return v, v
        weights = torch.ones(values.numel())
    else:
        raise ValueError(f"{mode} ablation needs statistics: pass corpus=[texts] or "
                         "scan=NeuronScan.")
    idx = torch.multinomial(weights, shape[0] * shape[1], replacement=True, generator=generator)
    return values[idx].view(shape), "resample"


def ablate_neuron(model: Model, prompts: str | Sequence[str], layer: int, neuron: int,
                  mode: str = "zero", targets: Sequence[str] | None = None, *, corpus=None,
                  scan: NeuronScan | None = None, hook: str = "mlp.hook_post",
                  seed: int = 0) -> AblationResult:
    """Ablate the neuron at every position and measure the change in per-token loss and in the
    logits / probabilities of `targets` (single tokens, e.g. [" an", " a"]).

    mode: "zero"; "mean" (its mean activation over `corpus` or from `scan`); "resample" (each
    position gets the activation at a random position of `corpus`, or drawn from `scan`'s bucket
    samples weighted by bucket size). Each prompt is its own row (right-padded batch)."""
    if mode not in ("zero", "mean", "resample"):
        raise ValueError(f"mode must be 'zero', 'mean' or 'resample'; got {mode!r}.")
    name, n = _neuron(model, layer, neuron, hook)
    target_ids = [single_token_id(model, t) for t in (targets or [])]
    resid = model.final_resid_hook
    run = model.run(prompts, names=[resid])
    gen = torch.Generator().manual_seed(seed)
    values, desc = _replacement(mode, n, layer, name, model, corpus, scan,
                                tuple(run.tokens.shape), gen)
    real = run.attention_mask.bool()
    grab: dict[str, torch.Tensor] = {resid: run.cache[resid]}
    logits = _hooked_logits(model, run, [(name, _set_neuron(n, values, real))], grab)
    nan = ~real.cpu()[..., None]

    def per_target(lg: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lg = lg.float().cpu()
        probs = lg.softmax(-1)[..., target_ids].masked_fill(nan, float("nan"))
        own = lg[..., target_ids]
        shift = model.logit_shift(r)
        if shift is not None:  # the model's own logits, not TransformerLens's centred ones
            own = own + shift.float().cpu()[..., None]
        return own.masked_fill(nan, float("nan")), probs

    (lc, pc), (la, pa) = per_target(run.logits, run.cache[resid]), per_target(logits, grab[resid])
    rows = run.str_tokens
    return AblationResult(mode, desc, [rows] if run.single else rows, run.loss.cpu(),
                          per_token_loss(logits, run.tokens, run.attention_mask).cpu(),
                          list(targets or []), lc, la, pc, pa,
                          logits_centred=model.logit_offset is None)


@dataclass
class ModulationResult:
    """Next-token distribution after `prompt` with the neuron's activation multiplied by each
    scale. scales: Tensor[scale]; probs: Tensor[scale, vocab]; baseline: Tensor[vocab] (scale 1
    is the unmodified model). `top(i, k)` lists the most likely tokens under scale i."""

    str_tokens: list[str]
    scales: torch.Tensor
    probs: torch.Tensor
    baseline: torch.Tensor
    model: Model

    def top(self, i: int = 0, k: int = 10) -> list[tuple[str, float]]:
        p = self.probs[i].topk(k)
        return [(self.model.tokenizer.decode([t]), float(v))
                for t, v in zip(p.indices.tolist(), p.values.tolist())]

    def target_probs(self, tokens: Sequence[str]) -> pd.DataFrame:
        """P(token) under each scale: rows are scales, columns tokens (plus 'baseline' row)."""
        ids = [single_token_id(self.model, t) for t in tokens]
        df = pd.DataFrame(self.probs[:, ids].numpy(), columns=list(tokens),
                          index=[float(s) for s in self.scales])
        df.index.name = "scale"
        return df


SCALE_RANGE = (-2.0, 5.0)


def modulate_neuron(model: Model, prompt: str, layer: int, neuron: int,
                    scale: float | Sequence[float], *, hook: str = "mlp.hook_post",
                    pos: int | None = None) -> ModulationResult:
    """Multiply the neuron's activation by `scale` (-2 .. 5; a list sweeps several scales in one
    batched forward pass) at every position, or only at `pos`, and return the next-token
    distribution after the prompt."""
    name, n = _neuron(model, layer, neuron, hook)
    scales = torch.tensor([scale] if isinstance(scale, (int, float)) else list(scale),
                          dtype=torch.float32)
    lo, hi = SCALE_RANGE
    if scales.numel() == 0 or scales.min() < lo or scales.max() > hi:
        raise ValueError(f"scale must lie in {lo} .. {hi}; got {scale!r}.")
    run = model.run(prompt)
    if not run.single:
        raise ValueError("modulate_neuron takes one prompt, not a list.")
    length = run.tokens.shape[1]
    where = None
    if pos is not None:
        if not -length <= pos < length:
            raise IndexError(f"pos {pos} is out of range for a prompt of {length} tokens "
                             f"(use -{length} .. {length - 1}).")
        where = torch.zeros((len(scales), length), dtype=torch.bool)
        where[:, pos % length] = True
    rows = run.tokens.expand(len(scales), -1)
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(
            rows, fwd_hooks=[(name, _set_neuron(n, 0.0, where, scale=scales))])
    return ModulationResult(run.str_tokens, scales, logits[:, -1].float().softmax(-1).cpu(),
                            run.logits[0, -1].float().softmax(-1).cpu(), model)


@dataclass
class NeuronPatch:
    """Patching the neuron's activation from the clean run into the corrupted one.

    metric: logit(answer) - logit(wrong) at the last position (log P(answer) if no wrong).
    clean / corrupt: the metric on each run unpatched; by_pos: Tensor[pos], the metric with the
    neuron patched at that position only; all_pos: patched at every position."""

    str_tokens: list[str]
    clean: float
    corrupt: float
    by_pos: torch.Tensor
    all_pos: float

    @property
    def recovered(self) -> float:
        """(all_pos - corrupt) / (clean - corrupt): the share of the gap the neuron restores."""
        gap = self.clean - self.corrupt
        return (self.all_pos - self.corrupt) / gap if gap else float("nan")


def patch_neuron(model: Model, clean: str, corrupt: str, layer: int, neuron: int, answer: str,
                 wrong: str | None = None, *, hook: str = "mlp.hook_post") -> NeuronPatch:
    """Single-neuron activation patching, clean -> corrupt, at each position and at all at once,
    in one batched forward pass (row i patches position i; the last row patches all)."""
    name, n = _neuron(model, layer, neuron, hook)
    a = single_token_id(model, answer)
    w = single_token_id(model, wrong) if wrong is not None else None
    clean_run = model.run(clean, names=[name])
    corrupt_run = model.run(corrupt)
    length = clean_run.tokens.shape[1]
    if corrupt_run.tokens.shape[1] != length:
        raise ValueError(f"clean and corrupt prompts must have the same number of tokens to patch "
                         f"position by position; got {length} and {corrupt_run.tokens.shape[1]}.")

    def metric(logits: torch.Tensor) -> torch.Tensor:  # [batch, pos, vocab] -> [batch]
        last = logits[:, -1].float()
        return last[:, a] - last[:, w] if w is not None else last.log_softmax(-1)[:, a]

    where = torch.cat([torch.eye(length, dtype=torch.bool),
                       torch.ones(1, length, dtype=torch.bool)])  # [row, pos]
    donor = clean_run.cache[name][0, :, n]  # [pos]
    rows = corrupt_run.tokens.expand(length + 1, -1)
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(rows, fwd_hooks=[(name, _set_neuron(n, donor, where))])
    m = metric(logits).cpu()
    return NeuronPatch(corrupt_run.str_tokens, float(metric(clean_run.logits)),
                       float(metric(corrupt_run.logits)), m[:-1], float(m[-1]))
