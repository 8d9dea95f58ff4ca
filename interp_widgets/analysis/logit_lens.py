"""The logit lens: read the residual stream after each layer through the final LayerNorm and
the unembedding, as if the model stopped there (nostalgebraist, 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import Model


@dataclass
class LogitLensResult:
    """What the lens sees at each layer x position.

    str_tokens: the prompt's tokens, len pos.
    layer_labels: "resid_pre 0" ... "resid_pre {L-1}", "resid_post {L-1}" (the model's output).
    top_ids, top_probs: LongTensor / Tensor[layer, pos, k], most likely next tokens first.
    top_strs: list[layer][pos][k] of token strings.
    target: the target token string or None; target_prob: Tensor[layer, pos] or None.
    """

    str_tokens: list[str]
    layer_labels: list[str]
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_strs: list[list[list[str]]]
    target: str | None = None
    target_id: int | None = None
    target_prob: torch.Tensor | None = None


def residual_stack(model: Model, prompt: str | torch.Tensor, *, prepend_bos: bool | None = None
                   ) -> tuple[list[str], list[str], torch.Tensor]:
    """(str_tokens, labels, resid Tensor[layer + 1, pos, d_model]): the residual stream before each
    layer and after the last one, for one prompt (BOS first as `Model.bos_for(prepend_bos)`)."""
    L = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    run = model.run(prompt, names=names, prepend_bos=prepend_bos)
    if not run.single:
        raise ValueError("The logit lens takes one prompt, not a batch.")
    labels = [f"resid_pre {i}" for i in range(L)] + [f"resid_post {L - 1}"]
    return run.str_tokens, labels, torch.stack([run.cache[n][0] for n in names])


def lens_logits(model: Model, resid: torch.Tensor) -> torch.Tensor:
    """Logits [..., vocab] read from a residual stream [..., d_model] as the model reads its
    last one: final norm, unembedding, and the final logit soft-cap where the model has one
    (Gemma 2: ``cap * tanh(logits / cap)``, which the bridge's `unembed` leaves to the forward).
    """
    bridge = model.bridge
    logits = bridge.unembed(bridge.ln_final(resid))
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    if cap is not None and cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def single_token_id(model: Model, token: str) -> int:
    """The id of `token`, which must be exactly one token (e.g. " Mary", with its space)."""
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(f"{token!r} is {len(ids)} tokens {pieces}, not one. Pick a single token "
                         "(mind the leading space: ' Mary' and 'Mary' differ).")
    return ids[0]


def logit_lens(model: Model, prompt: str | torch.Tensor, *, target: str | None = None,
               k: int = 10, prepend_bos: bool | None = None) -> LogitLensResult:
    """Apply the final LayerNorm and unembedding to the residual stream at every layer.
    prepend_bos: None is the model's default (`Model.bos`)."""
    target_id = single_token_id(model, target) if target is not None else None
    str_tokens, labels, resid = residual_stack(model, prompt, prepend_bos=prepend_bos)
    with torch.no_grad():
        probs = lens_logits(model, resid).float().softmax(-1)  # [layer, pos, vocab]
    top = probs.topk(k, dim=-1)
    uniq = top.indices.unique().tolist()  # decode each distinct id once
    text = dict(zip(uniq, (model.tokenizer.decode([i]) for i in uniq)))
    top_strs = [[[text[i] for i in cell] for cell in row] for row in top.indices.tolist()]
    return LogitLensResult(
        str_tokens=str_tokens,
        layer_labels=labels,
        top_ids=top.indices.cpu(),
        top_probs=top.values.cpu(),
        top_strs=top_strs,
        target=target,
        target_id=target_id,
        target_prob=None if target_id is None else probs[..., target_id].cpu(),
    )
