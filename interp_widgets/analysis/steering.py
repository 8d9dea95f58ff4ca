"""Steering: directions in the residual stream, generation with them added, and perturbation flow.

Directions: ActAdd (Turner et al. 2023: the activation difference of one prompt pair, position
by position), the mean difference over many pairs at the last token (CAA, Rimsky et al. 2024),
PCA of the residual stream (scikit-learn), and an SAE feature's decoder row.

`generate` writes its own decoding loop over the bridge's HF KV cache (`return_type=
"logits_and_cache"`) because steering must know each new token's absolute position: a
position-aligned ActAdd vector is added at positions 0..n-1 only, whether those arrive in one
prompt pass or one token at a time, so cached decoding equals recomputing the whole sequence.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model import Model
from ._checks import check_layer
from .metrics import kl_div
from .uncertainty import Estimate, bootstrap_mean

RESID_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")
METHODS = ("actadd", "mean_diff")


@dataclass
class SteeringVector:
    """A direction to add to the residual stream.

    vector: Tensor[d_model] (added at every position) or Tensor[n, d_model] (ActAdd: row i is
    added at absolute position i). layer, hook: where it was read (``blocks.{layer}.{hook}``).
    relative_norm: the vector's norm (per row for ActAdd) over the mean norm of the residual
    stream it was read from (the prompts' non-BOS positions), so 1.0 is as large as the stream
    itself; None when unknown. padded: ActAdd only, how many space tokens were added to the
    shorter prompt (positive: to `positive`, negative: to `negative`).
    """

    vector: torch.Tensor
    layer: int
    method: str
    hook: str = "hook_resid_pre"
    label: str = ""
    relative_norm: float | None = None
    padded: int = 0

    def __repr__(self) -> str:
        rel = "" if self.relative_norm is None else f" ({self.relative_norm:.2g}x the residual)"
        pad = f", {abs(self.padded)} space token(s) padded" if self.padded else ""
        return (f"SteeringVector({self.method}, {self.label!r}, layer {self.layer} {self.hook}, "
                f"shape {tuple(self.vector.shape)}, norm {float(self.vector.norm()):.3g}{rel}"
                f"{pad})")


def _resid(model: Model, prompts: str | Sequence[str], layer: int, hook: str,
           prepend_bos: bool | None = None) -> tuple[torch.Tensor, list[int]]:
    """(Tensor[batch, pos, d_model] at blocks.{layer}.{hook}, real lengths)."""
    name = f"blocks.{check_layer(model, layer)}.{hook}"
    run = model.run(prompts if not isinstance(prompts, str) else [prompts], names=[name],
                    prepend_bos=prepend_bos)
    return run.cache[name], run.lengths


def _check_hook(hook: str) -> str:
    hook = hook if hook.startswith("hook_") else f"hook_{hook}"
    if hook not in RESID_HOOKS:
        raise ValueError(f"Steering edits the residual stream: hook must be one of "
                         f"{', '.join(RESID_HOOKS)}, got {hook!r}.")
    return hook


def steering_vector(model: Model, positive: str | Sequence[str], negative: str | Sequence[str],
                    layer: int, *, method: str = "actadd", hook: str = "hook_resid_pre",
                    align: str = "pad", prepend_bos: bool | None = None) -> SteeringVector:
    """A steering vector at ``blocks.{layer}.{hook}``.

    method "actadd": `positive` and `negative` are one prompt each (e.g. "Love", "Hate"); the
    vector is Tensor[n, d_model], the difference at each position. When they tokenize to
    different lengths ("Love" vs "H" + "ate"), `align` says what to do: "pad" (ActAdd's choice)
    pads the shorter at the end with space tokens, so position i of one faces position i of the
    other, and records it in `padded` (with a warning naming both tokenizations); "refuse"
    raises instead. `relative_norm` reports the vector's size against the residual stream.
    "mean_diff": lists of paired prompts; the vector is Tensor[d_model], the mean
    difference of the residual stream at each prompt's last token."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}. Use 'actadd' (one prompt pair) or "
                         "'mean_diff' (many pairs).")
    hook = _check_hook(hook)
    check_layer(model, layer)
    if method == "actadd":
        if not (isinstance(positive, str) and isinstance(negative, str)):
            raise ValueError("actadd takes one positive and one negative prompt (two strings); "
                             "for lists of pairs use method='mean_diff'.")
        if align not in ("pad", "refuse"):
            raise ValueError(f"align must be 'pad' or 'refuse'; got {align!r}.")
        pos_ids = model.to_tokens(positive, prepend_bos=prepend_bos)[0].tolist()
        neg_ids = model.to_tokens(negative, prepend_bos=prepend_bos)[0].tolist()
        padded = len(neg_ids) - len(pos_ids)
        if padded:
            shown = (f"{positive!r} is {model.to_str_tokens(pos_ids)} and {negative!r} is "
                     f"{model.to_str_tokens(neg_ids)}")
            if align == "refuse":
                raise ValueError(f"The ActAdd prompts tokenize to different lengths: {shown}. "
                                 "Choose words of equal token length, or align='pad' to pad "
                                 "the shorter with spaces.")
            warnings.warn(f"ActAdd prompts of different token lengths: {shown}; the shorter "
                          f"was padded with {abs(padded)} space token(s) at the end.",
                          stacklevel=2)
        pad = _space_id(model)
        n = max(len(pos_ids), len(neg_ids))
        pos_ids += [pad] * (n - len(pos_ids))
        neg_ids += [pad] * (n - len(neg_ids))
        name = f"blocks.{layer}.{hook}"
        run = model.run(torch.tensor([pos_ids, neg_ids]), names=[name])
        acts = run.cache[name]  # [2, n, d_model]
        vec = acts[0] - acts[1]
        return SteeringVector(vec, layer, method, hook, f"{positive!r} - {negative!r}",
                              _relative_norm(model, vec, acts, run.tokens), padded)
    pos_list = [positive] if isinstance(positive, str) else list(positive)
    neg_list = [negative] if isinstance(negative, str) else list(negative)
    if len(pos_list) != len(neg_list):
        raise ValueError(f"mean_diff takes paired prompts: got {len(pos_list)} positive and "
                         f"{len(neg_list)} negative.")
    acts, lengths = _resid(model, pos_list + neg_list, layer, hook, prepend_bos)
    last = acts[torch.arange(len(lengths)), torch.tensor(lengths) - 1]  # [2 * pairs, d_model]
    k = len(pos_list)
    vec = last[:k].mean(0) - last[k:].mean(0)
    return SteeringVector(vec, layer, method, hook, f"mean of {k} pairs",
                          float(vec.float().norm() / last.float().norm(dim=-1).mean()))


def _relative_norm(model: Model, vec: torch.Tensor, acts: torch.Tensor,
                   tokens: torch.Tensor) -> float:
    """Mean norm of `vec`'s rows [n, d_model] over the mean norm of `acts` [batch, n, d_model]
    at the non-BOS positions of `tokens` [batch, n] (BOS rows of `vec` left out too)."""
    real = ~model.bos_mask(tokens)
    rows = real.all(0)  # positions that are text in both prompts
    stream = acts.float().norm(dim=-1)[real].mean()
    return float(vec.float().norm(dim=-1)[rows].mean() / stream)


def _space_id(model: Model) -> int:
    """The id of " " when it is one token (ActAdd's padding), else the pad/BOS id."""
    ids = model.tokenizer(" ", add_special_tokens=False)["input_ids"]
    if len(ids) == 1:
        return ids[0]
    tok = model.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.bos_token_id


@dataclass
class Directions:
    """Principal directions of the residual stream at ``blocks.{layer}.{hook}``.

    vectors: Tensor[n, d_model] (unit norm); std: Tensor[n], the standard deviation of the
    activations along each; explained_variance_ratio: Tensor[n]; mean: Tensor[d_model]."""

    vectors: torch.Tensor
    std: torch.Tensor
    explained_variance_ratio: torch.Tensor
    mean: torch.Tensor
    layer: int
    hook: str = "hook_resid_pre"

    def steering_vector(self, i: int) -> SteeringVector:
        """Direction `i` scaled to one standard deviation, ready for `generate`."""
        return SteeringVector(self.vectors[i] * self.std[i], self.layer, "pca", self.hook,
                              f"PC{i}")


def pca_directions(model: Model, prompts: Sequence[str], layer: int, n: int = 5, *,
                   hook: str = "hook_resid_pre") -> Directions:
    """PCA (scikit-learn) of the residual stream over every real token of `prompts` except BOS
    (whose huge norm would be the first component)."""
    from sklearn.decomposition import PCA

    hook = _check_hook(hook)
    acts, lengths = _resid(model, list(prompts), layer, hook)
    rows = torch.cat([acts[b, 1:n_b] for b, n_b in enumerate(lengths)])  # [tokens, d_model]
    if rows.shape[0] <= n:
        raise ValueError(f"PCA of {n} directions needs more than {n} token positions; the "
                         f"prompts give {rows.shape[0]} (BOS excluded). Add prompts.")
    pca = PCA(n_components=n).fit(rows.float().cpu().numpy())
    return Directions(
        vectors=torch.tensor(pca.components_, dtype=acts.dtype),
        std=torch.tensor(pca.explained_variance_, dtype=acts.dtype).sqrt(),
        explained_variance_ratio=torch.tensor(pca.explained_variance_ratio_),
        mean=torch.tensor(pca.mean_, dtype=acts.dtype), layer=layer, hook=hook)


def sae_direction(sae: Any, feature: int) -> SteeringVector:
    """An SAE feature's decoder row (`sae.feature_directions()[feature]`, Tensor[d_model]) at
    the SAE's residual-stream hook."""
    name = sae.hook_name or ""
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] not in RESID_HOOKS:
        raise ValueError(f"The SAE reads {name!r}; steering needs an SAE on the residual stream "
                         f"(blocks.<layer>.{{{', '.join(RESID_HOOKS)}}}).")
    if not 0 <= feature < sae.d_sae:
        raise ValueError(f"feature {feature} is out of range: the SAE has {sae.d_sae} features, "
                         f"so use 0 .. {sae.d_sae - 1}.")
    with torch.no_grad():
        vec = sae.feature_directions()[feature].detach().clone()
    return SteeringVector(vec, int(parts[1]), "sae", parts[2], f"SAE feature {feature}")


# ---- applying steering ----------------------------------------------------------------------

Steer = Sequence[tuple[Any, int, float]]


@dataclass
class _Edit:
    name: str
    vector: torch.Tensor  # [d_model] or [n, d_model]
    coeff: float


def _edits(model: Model, steer: Steer | None) -> list[_Edit]:
    """Checked (hook name, vector, coeff) from [(vector, layer, coeff), ...]."""
    out = []
    for i, item in enumerate(steer or []):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"steer[{i}] must be (vector, layer, coeff), got {item!r}.")
        vec, layer, coeff = item
        hook = vec.hook if isinstance(vec, SteeringVector) else "hook_resid_pre"
        v = vec.vector if isinstance(vec, SteeringVector) else torch.as_tensor(vec)
        check_layer(model, layer)
        d = model.cfg.d_model
        if v.ndim not in (1, 2) or v.shape[-1] != d:
            raise ValueError(f"steer[{i}]: the vector has shape {tuple(v.shape)} but the "
                             f"residual stream is [..., {d}]; give [d_model] or [n, d_model].")
        out.append(_Edit(f"blocks.{layer}.{hook}", v.to(model.device), float(coeff)))
    return out


def _steer_hooks(edits: list[_Edit], offset: list[int]) -> list[tuple[str, Any]]:
    """Hooks adding coeff * vector; `offset[0]` is the absolute position of the first token
    of the current forward (0 for a full pass, the cache length during cached decoding)."""

    def make(e: _Edit):
        def hook(act: torch.Tensor, hook=None) -> torch.Tensor:  # [batch, pos, d_model]
            v = e.vector.to(act.dtype)
            if v.ndim == 1:
                return act + e.coeff * v
            start, n = offset[0], act.shape[1]
            rows = v[start:start + n]  # the vector's rows at these absolute positions
            if len(rows) == 0:
                return act
            act = act.clone()
            act[:, :len(rows)] += e.coeff * rows
            return act
        return hook

    return [(e.name, make(e)) for e in edits if e.coeff != 0]


def steered_logits(model: Model, tokens: torch.Tensor, steer: Steer | None) -> torch.Tensor:
    """Tensor[batch, pos, vocab]: one full forward over `tokens` [batch, pos] with `steer`."""
    hooks = _steer_hooks(_edits(model, steer), [0])
    with torch.no_grad():
        return model.bridge.run_with_hooks(tokens.to(model.device), fwd_hooks=hooks)


def steering_effect(model: Model, prompts: str | Sequence[str], metric: Any,
                    steer: Steer | None = None, *,
                    prepend_bos: bool | None = None) -> torch.Tensor:
    """Tensor[batch]: `metric` (e.g. `logit_diff(" an", " a")`) of the next-token logits after
    each prompt's last token, with `steer` applied; prompts of any lengths, one padded pass."""
    from .metrics import Metric, as_metric

    metric = as_metric(metric, model)
    tokens, mask, _ = model._tokenize(prompts if not isinstance(prompts, str) else [prompts],
                                      prepend_bos=prepend_bos)
    kwargs = {"attention_mask": mask} if bool((mask == 0).any()) else {}
    hooks = _steer_hooks(_edits(model, steer), [0])
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(tokens, fwd_hooks=hooks, **kwargs)
    rows = torch.arange(len(tokens), device=logits.device)
    last = logits[rows, mask.sum(1) - 1][:, None]  # [batch, 1, vocab]
    if isinstance(metric, Metric):
        return metric.per_row(last).cpu()
    return torch.stack([torch.as_tensor(metric(row[None])).reshape(()) for row in last]).cpu()


def steering_shift(model: Model, prompts: Sequence[str], metric: Any, steer: Steer, *,
                   n_boot: int = 2000, seed: int = 0) -> Estimate:
    """How much `steer` moves `metric` over `prompts`: the mean over prompts of
    metric(steered) - metric(unsteered) (`steering_effect` both ways, paired by prompt), with a
    95% bootstrap interval over prompts (BCa). Needs at least 2 prompts for an interval."""
    if isinstance(prompts, str):
        prompts = [prompts]
    steered = steering_effect(model, prompts, metric, steer).double()
    plain = steering_effect(model, prompts, metric, None).double()
    return bootstrap_mean((steered - plain).numpy(), n_boot=n_boot, seed=seed)


@dataclass
class Generation:
    """A generated continuation.

    tokens: LongTensor[prompt + new]; n_prompt: prompt length; logits: Tensor[new, vocab], the
    distribution each new token was drawn from; text: the continuation only."""

    tokens: torch.Tensor
    n_prompt: int
    logits: torch.Tensor
    text: str
    str_tokens: list[str] = field(default_factory=list)

    @property
    def new_tokens(self) -> list[str]:
        return self.str_tokens[self.n_prompt:]


def generate(model: Model, prompt: str | torch.Tensor, *, steer: Steer | None = None,
             max_new_tokens: int = 20, seed: int = 0, temperature: float = 1.0,
             top_k: int | None = None, use_cache: bool = True,
             stop_at_eos: bool = False, prepend_bos: bool | None = None) -> Generation:
    """Sample `max_new_tokens` after `prompt` with `steer` = [(vector, layer, coeff), ...] added
    to the residual stream (a `SteeringVector` brings its hook; a bare Tensor[d_model] goes to
    ``hook_resid_pre``). `temperature` 0 is greedy. The same `seed` gives the same draws, so a
    baseline (`steer=None`) and a steered run are comparable token by token. `use_cache=False`
    recomputes the whole sequence each step (slow; the same tokens)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    tokens, _, _ = model._tokenize(prompt, prepend_bos=prepend_bos)
    if tokens.shape[0] != 1:
        raise ValueError("generate takes one prompt, not a batch.")
    offset = [0]
    hooks = _steer_hooks(_edits(model, steer), offset)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bridge, n_prompt, step_logits = model.bridge, tokens.shape[1], []
    eos = model.tokenizer.eos_token_id
    past = None
    with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
        for _ in range(max_new_tokens):
            if use_cache:
                feed = tokens if past is None else tokens[:, -1:]
                offset[0] = tokens.shape[1] - feed.shape[1]
                logits, past = model.forward_with_cache(feed, past)
                use_cache = past is not None  # an unfilled cache: recompute from now on
            else:
                offset[0] = 0
                logits = bridge(tokens)
            last = logits[0, -1].float()  # [vocab]
            step_logits.append(last.cpu())
            nxt = _sample(last, temperature, top_k, gen)
            tokens = torch.cat([tokens, torch.tensor([[nxt]], device=tokens.device)], 1)
            if stop_at_eos and nxt == eos:
                break
    ids = tokens[0].cpu()
    return Generation(
        tokens=ids, n_prompt=n_prompt,
        logits=torch.stack(step_logits) if step_logits else torch.zeros(0, model.cfg.d_vocab),
        text=model.tokenizer.decode(ids[n_prompt:].tolist()),
        str_tokens=model.to_str_tokens(ids))


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None,
            gen: torch.Generator) -> int:
    """One token id from logits [vocab]: greedy at temperature 0."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits.cpu() / temperature
    if top_k is not None:
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=gen))


def kl_to_baseline(model: Model, tokens: torch.Tensor, steer: Steer | None) -> torch.Tensor:
    """Tensor[pos]: KL(steered || unsteered) of the next-token distributions at each position
    of `tokens` [pos] (e.g. a steered generation read back through both models)."""
    t = tokens.reshape(1, -1).to(model.device)
    with torch.no_grad():
        base = model.bridge(t)
    return kl_div(steered_logits(model, t, steer), base)[0].cpu()


def continuation_loss(model: Model, generation: Generation) -> torch.Tensor:
    """Tensor[new]: the loss (nats, -log p) the *unsteered* model gives each new token of
    `generation`, given everything before it: a coherence measure of the text. Steered text the
    model itself would not write (word salad) costs it far more than its own continuation does,
    so compare it with the baseline generation's (`generate(..., steer=None)`) at the same seed."""
    n, ids = generation.n_prompt, generation.tokens.reshape(1, -1).to(model.device)
    if ids.shape[1] <= n:
        return torch.zeros(0)
    with torch.no_grad():
        logprobs = model.bridge(ids)[0, n - 1:-1].float().log_softmax(-1)  # [new, vocab]
    return -logprobs.gather(-1, ids[0, n:, None])[:, 0].cpu()


@dataclass
class StrengthRow:
    """One coefficient of `compare_strengths`: the generation, its mean KL(steered || unsteered)
    per new token, its `continuation_loss` (mean, nats per token) and, with a metric, the metric
    steered (mean over the metric's prompts)."""

    coeff: float
    generation: Generation
    mean_kl: float
    loss: float
    metric: float | None
    #: the steered metric with its interval over the metric's prompts (None without a metric;
    #: NaN bounds with one prompt)
    metric_ci: Estimate | None = None


def compare_strengths(model: Model, prompt: str, vector: SteeringVector | torch.Tensor,
                      layer: int, coeffs: Sequence[float], *, metric: Any = None,
                      metric_prompts: str | Sequence[str] | None = None, seed: int = 0,
                      max_new_tokens: int = 20, temperature: float = 1.0) -> list[StrengthRow]:
    """Side by side of several steering strengths: for each coefficient (0 = unsteered) the
    generation from `prompt` with the same `seed`, its mean KL to the unsteered model, the
    unsteered model's loss on it (coherence: `continuation_loss`) and, when `metric` is given,
    the metric after `metric_prompts` (default: the prompt) with the vector applied, so a
    metric that moves can be read against text that stays (or stops being) language."""
    if not len(coeffs):
        raise ValueError("coeffs is empty: give the coefficients to compare, e.g. (0, 1, 2, 4)")
    check_layer(model, layer)
    rows = []
    for c in coeffs:
        steer = [(vector, int(layer), float(c))]
        g = generate(model, prompt, steer=steer, seed=seed, max_new_tokens=max_new_tokens,
                     temperature=temperature)
        kl = kl_to_baseline(model, g.tokens, steer)[g.n_prompt - 1:-1]  # [new]
        loss = continuation_loss(model, g)
        value, ci = None, None
        if metric is not None:
            per = steering_effect(model, metric_prompts or prompt, metric, steer).double()
            value, ci = float(per.mean()), bootstrap_mean(per.numpy(), seed=seed)
        rows.append(StrengthRow(float(c), g, float(kl.mean()) if len(kl) else 0.0,
                                float(loss.mean()) if len(loss) else float("nan"), value, ci))
    return rows


# ---- perturbation flow ----------------------------------------------------------------------


@dataclass
class PerturbationFlow:
    """How removing part of a text changes the residual stream of what is left.

    str_tokens: the full text's tokens; removed: bool per token (no counterpart in the edited
    text). layer_labels: "resid_pre 0" .. "resid_post {L-1}". diff: Tensor[layer + 1, pos]:
    |resid(full) - resid(edited)| at each shared token (NaN at removed tokens); norm: |resid(full)|
    there. kl: Tensor[pos], KL(full || edited) of the next-token distributions (NaN at removed).
    top_before / top_after: top-5 next tokens after the last token, [(token, prob)].
    kept_positions: whether the edited text kept the full text's positions (`keep_positions`).
    """

    str_tokens: list[str]
    edited_tokens: list[str]
    removed: list[bool]
    layer_labels: list[str]
    diff: torch.Tensor
    norm: torch.Tensor
    kl: torch.Tensor
    top_before: list[tuple[str, float]]
    top_after: list[tuple[str, float]]
    kept_positions: bool = True

    @property
    def relative(self) -> torch.Tensor:
        """diff / norm: the change as a fraction of the residual stream's size."""
        return self.diff / self.norm.clamp_min(1e-12)


def keeps_positions(model: Model) -> bool:
    """`perturbation_flow`'s default: keep the full text's positions only where positions are
    learned absolute embeddings (``cfg.positional_embedding_type == "standard"``)."""
    return str(getattr(model.cfg, "positional_embedding_type", "standard")) == "standard"


def perturbation_flow(model: Model, text: str, remove: str, *,
                      keep_positions: bool | None = None,
                      prepend_bos: bool | None = None) -> PerturbationFlow:
    """Remove the first occurrence of `remove` (a sentence or any substring) from `text`, align
    the tokens the two versions share (common prefix and suffix), and measure the change in the
    residual stream at every layer and shared position, and in the next-token predictions.

    keep_positions: the edited text's tokens keep the positions they had in the full text
    (``position_ids``), so with learned absolute positions the difference measures the removed
    information rather than the shift of everything after the cut; False runs it as written.
    None (default) chooses from the model's positional scheme (`keeps_positions`): True for
    learned absolute positions (GPT-2), False for rotary ones (Llama, Qwen, Gemma, Pythia),
    which see only relative distances, so renumbering the tokens after the cut would leave a
    gap the model never saw in training."""
    if not remove:
        raise ValueError("remove is empty: give the sentence or substring to take out.")
    at = text.find(remove)
    if at < 0:
        raise ValueError(f"{remove!r} does not occur in the text; give a substring of it "
                         "(case and spaces must match).")
    head, tail = text[:at], text[at + len(remove):]
    if head.endswith(" ") and tail.startswith(" "):
        tail = tail[1:]  # no double space where the cut was
    edited = head + tail
    if not edited.strip():
        raise ValueError("Removing that leaves no text: remove a smaller part.")
    if keep_positions is None:
        keep_positions = keeps_positions(model)
    a_tok = model.to_tokens(text, prepend_bos=prepend_bos)  # [1, pos]
    b_tok = model.to_tokens(edited, prepend_bos=prepend_bos)
    pairs = _align_cut(a_tok[0].tolist(), b_tok[0].tolist())
    ia = torch.tensor([p[0] for p in pairs])
    ib = torch.tensor([p[1] for p in pairs])
    positions = None
    if keep_positions:  # shared tokens at their old positions, new boundary tokens after them
        pos, last, where = [], -1, {j: i for i, j in pairs}
        for j in range(b_tok.shape[1]):
            last = where.get(j, last + 1)
            pos.append(last)
        positions = torch.tensor([pos], device=model.device)
    labels, full, la = _resid_and_logits(model, a_tok, None)
    _, part, lb = _resid_and_logits(model, b_tok, positions)
    n = a_tok.shape[1]
    diff = torch.full((len(labels), n), float("nan"))
    norm = torch.full((len(labels), n), float("nan"))
    diff[:, ia] = (full[:, ia] - part[:, ib]).norm(dim=-1).float().cpu()
    norm[:, ia] = full[:, ia].norm(dim=-1).float().cpu()
    kl = torch.full((n,), float("nan"))
    kl[ia] = kl_div(la[ia], lb[ib]).float().cpu()
    removed = [True] * n
    for i in ia.tolist():
        removed[i] = False
    return PerturbationFlow(model.to_str_tokens(a_tok[0]), model.to_str_tokens(b_tok[0]),
                            removed, labels, diff, norm, kl, _top(model, la[-1]),
                            _top(model, lb[-1]), bool(keep_positions))


def _resid_and_logits(model: Model, tokens: torch.Tensor, position_ids: torch.Tensor | None
                      ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(labels, resid Tensor[layer + 1, pos, d_model] before each layer and after the last,
    logits Tensor[pos, vocab]) of one row of tokens [1, pos]."""
    L = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    kwargs = {} if position_ids is None else {"position_ids": position_ids}
    with torch.no_grad():
        logits, cache = model.bridge.run_with_cache(tokens, names_filter=names, **kwargs)
    labels = [f"resid_pre {i}" for i in range(L)] + [f"resid_post {L - 1}"]
    return labels, torch.stack([cache[nm][0] for nm in names]), logits[0]


def _align_cut(a: list[int], b: list[int]) -> list[tuple[int, int]]:
    """(i, j) pairs of tokens a[i] == b[j] shared by `a` and `b`, which differ by one cut: the
    longest common prefix, then the longest common suffix of what is left."""
    pre = 0
    while pre < min(len(a), len(b)) and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < min(len(a), len(b)) - pre and a[-1 - suf] == b[-1 - suf]:
        suf += 1
    return [(i, i) for i in range(pre)] + [(len(a) - suf + k, len(b) - suf + k)
                                           for k in range(suf)]


def _top(model: Model, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    top = logits.float().softmax(-1).topk(k)
    return [(model.tokenizer.decode([i]), float(p))
            for i, p in zip(top.indices.tolist(), top.values.tolist())]
