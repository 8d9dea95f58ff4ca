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


def residual_stack(model: Model, prompt: str | torch.Tensor) -> tuple[list[str], list[str],
                                                                      torch.Tensor]:
    """(str_tokens, labels, resid Tensor[layer + 1, pos, d_model]): the residual stream before each
    layer and after the last one, for one prompt."""
    L = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    run = model.run(prompt, names=names)
    if not run.single:
        raise ValueError("The logit lens takes one prompt, not a batch.")
    labels = [f"resid_pre {i}" for i in range(L)] + [f"resid_post {L - 1}"]
    return run.str_tokens, labels, torch.stack([run.cache[n][0] for n in names])


def single_token_id(model: Model, token: str) -> int:
    """The id of `token`, which must be exactly one token (e.g. " Mary", with its space)."""
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(f"{token!r} is {len(ids)} tokens {pieces}, not one. Pick a single token "
                         "(mind the leading space: ' Mary' and 'Mary' differ).")
    return ids[0]


def logit_lens(model: Model, prompt: str | torch.Tensor, *, target: str | None = None,
               k: int = 10) -> LogitLensResult:
    """Apply the final LayerNorm and unembedding to the residual stream at every layer."""
    target_id = single_token_id(model, target) if target is not None else None
    str_tokens, labels, resid = residual_stack(model, prompt)
    bridge = model.bridge
    with torch.no_grad():
        probs = bridge.unembed(bridge.ln_final(resid)).float().softmax(-1)  # [layer, pos, vocab]
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
