"""Attention patterns, head-type scores and pattern thumbnails.

Head scores use TransformerLens's detection patterns (`transformer_lens.head_detector`) and its
"mul" measure: the share of a head's attention that falls on the positions the pattern names. We
score every head at once from one stacked tensor instead of TransformerLens's per-head loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformer_lens.head_detector import (
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

from ..model import Model

DETECTION_PATTERNS = {
    "previous_token": get_previous_token_head_detection_pattern,
    "induction": get_induction_head_detection_pattern,
    "duplicate_token": get_duplicate_token_head_detection_pattern,
}


def attention_patterns(model: Model, prompt: str | torch.Tensor
                       ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Run one prompt and stack every head's pattern.

    Returns (str_tokens, tokens LongTensor[pos], patterns Tensor[layer, head, q_pos, k_pos])."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    run = model.run(prompt, names=names)
    if not run.single:
        raise ValueError("attention_patterns takes one prompt, not a batch.")
    patterns = torch.stack([run.cache[n][0] for n in names])  # [layer, head, q_pos, k_pos]
    return run.str_tokens, run.tokens[0], patterns


def head_scores(patterns: torch.Tensor, tokens: torch.Tensor, *, relevant_queries_only: bool = True,
                exclude_bos: bool = False) -> dict[str, torch.Tensor]:
    """Score every head as a previous-token, induction and duplicate-token head.

    patterns: Tensor[layer, head, q_pos, k_pos]; tokens: LongTensor[pos].
    Returns {"previous_token" | "induction" | "duplicate_token": Tensor[layer, head]} in [0, 1].

    With `relevant_queries_only=False` this is exactly TransformerLens's `detect_head(...,
    error_measure="mul")`: attention on the detection pattern's positions divided by all attention,
    summed over every query. Queries that have no such position (a token seen for the first time
    cannot be copied) then pull every score down, so a perfect induction head on "random, repeat"
    scores about 0.5. By default we average only over queries that have at least one target, so a
    perfect head scores 1."""
    pats = patterns.float()
    if exclude_bos:
        pats = pats.clone()
        pats[..., 0] = 0
    toks = tokens.detach().reshape(1, -1).cpu()
    scores = {}
    for name, make in DETECTION_PATTERNS.items():
        det = make(toks).to(pats.device)  # [q_pos, k_pos] of 0/1
        hit = (pats * det).sum(-1)  # [layer, head, q_pos]
        total = pats.sum(-1)
        if relevant_queries_only:
            rows = det.sum(-1) > 0
            if not rows.any():
                scores[name] = torch.zeros(pats.shape[:2])
                continue
            hit, total = hit[..., rows], total[..., rows]
            scores[name] = (hit / total.clamp_min(1e-12)).mean(-1).cpu()
        else:
            scores[name] = (hit.sum(-1) / total.sum(-1)).cpu()
    return scores


def pattern_thumbnails(patterns: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Downsample patterns to at most size x size by block max, scaled to 0..255.

    patterns: Tensor[layer, head, q_pos, k_pos] -> uint8 Tensor[layer, head, s, s], s = min(size,
    pos). Block max (not mean) keeps a sharp diagonal visible when 1,024 positions shrink to 32."""
    L, H, Q, K = patterns.shape
    s = min(size, Q)
    flat = patterns.float().reshape(L * H, 1, Q, K)
    small = F.adaptive_max_pool2d(flat, (s, s)).reshape(L, H, s, s)
    peak = small.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (small / peak * 255).round().to(torch.uint8)
