"""`attribution_graph`: the direct linear effects between the nodes of a prompt's local
replacement model (Ameisen et al. 2025, "Circuit Tracing"), by batched backward passes.

Nodes, in adjacency order: active transcoder features (layer, pos, feature), one error node per
(layer, pos), one token-embedding node per position, bias nodes (one per layer: the attention
biases with the frozen patterns, the transcoders' b_dec and the encoder biases of that layer's
features; then the positional embeddings and the unembedding bias), and the top output logits
covering `desired_logit_prob` of the next-token probability (at most `max_n_logits`).

Edges: adjacency[t, s] = the direct effect of source s on target t's value through the frozen
model (attention patterns and norm scales fixed, no path through another feature). Target
values: a feature's pre-activation (= its activation where active), a logit minus the mean
logit (circuit-tracer's demeaned logit). Rows of sources (errors, embeddings, biases) are zero.
One forward runs `batch_size` copies of the prompt and keeps its autograd graph; each backward
pass then serves `batch_size` targets, row b backpropagating only target b's value.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .replacement import ReplacementRun

if TYPE_CHECKING:
    from ..model import Model
    from ..sae.transcoder import Transcoders
    from .graph import AttributionGraph


class GraphTooLargeError(MemoryError):
    """The graph of this prompt would not fit the memory budget."""


def _target_tokens(model: Model, logits: torch.Tensor, target: Any, desired_logit_prob: float,
                   max_n_logits: int) -> tuple[list[int], list[float]]:
    probs = logits.softmax(-1)
    top_p, top_i = probs.topk(min(max_n_logits, len(probs)))
    cut = int(torch.searchsorted(top_p.cumsum(0), torch.tensor(desired_logit_prob))) + 1
    ids = top_i[:cut].tolist()
    if target is not None:
        tid = target if isinstance(target, int) else _single_token(model, target)
        ids = [tid] + [i for i in ids if i != tid]
        ids = ids[:max(max_n_logits, 1)]
    return ids, [float(probs[i]) for i in ids]


def _single_token(model: Model, text: str) -> int:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"target {text!r} is {len(ids)} tokens ({ids}); give a string that is "
                         "one token (often with a leading space, e.g. ' Mary') or a token id.")
    return ids[0]


def estimate_memory(n_nodes: int, n_pos: int, d_model: int, n_layers: int, vocab: int,
                    batch_size: int) -> int:
    """Bytes: the dense float32 adjacency plus one batched forward/backward (activations of
    ~24 tensors of [batch, pos, d_model] per layer and the logits)."""
    return 4 * n_nodes * n_nodes + 4 * batch_size * n_pos * (24 * n_layers * d_model + 2 * vocab)


def attribution_graph(model: Model, transcoders: Transcoders, prompt: str | torch.Tensor, *,
                      target: str | int | None = None, desired_logit_prob: float = 0.95,
                      max_n_logits: int = 10, batch_size: int = 256,
                      max_memory: float = 4 * 2**30, prepend_bos: bool | None = None
                      ) -> AttributionGraph:
    """The attribution graph of `prompt` (see the module docstring) -> `AttributionGraph`.

    target: a token (string or id) whose logit node comes first and is always kept.
    max_memory: bytes allowed; a prompt whose graph would need more is refused before the
    attribution starts, with the estimate and the longest prompt that would fit."""
    from .graph import AttributionGraph

    t0 = time.perf_counter()
    transcoders.check_model(model)
    tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)[0] if isinstance(prompt, str) \
        else torch.as_tensor(prompt).reshape(-1)
    if len(tokens) == 0:
        raise ValueError("The prompt is empty: give at least one token.")
    rr = ReplacementRun(model, transcoders, tokens)
    L, n, d = transcoders.n_layers, rr.n_pos, model.cfg.d_model
    logit_ids, logit_probs = _target_tokens(model, rr.logits[-1], target, desired_logit_prob,
                                            max_n_logits)
    feats = [torch.nonzero(a) for a in rr.acts]  # per layer [n_active, 2] (pos, feature)
    n_feat = sum(len(f) for f in feats)
    n_bias = L + 2
    n_nodes = n_feat + L * n + n + n_bias + len(logit_ids)
    need = estimate_memory(n_nodes, n, d, L, model.cfg.d_vocab, batch_size)
    if need > max_memory:
        per_tok = n_nodes / n
        # solve 4 (per_tok m)^2 + c m <= budget for the length m
        c = 4 * batch_size * (24 * L * d + 2 * model.cfg.d_vocab)
        a = 4 * per_tok ** 2
        m = int((-c + math.sqrt(c * c + 4 * a * max_memory)) / (2 * a))
        raise GraphTooLargeError(
            f"This prompt's graph needs about {need / 2**30:.2f} GiB ({n} tokens, {n_nodes:,} "
            f"nodes: {n_feat:,} active features) but max_memory is "
            f"{max_memory / 2**30:.2f} GiB. "
            + (f"The longest prompt that fits is about {m} tokens at this density; shorten the "
               "prompt, lower batch_size, or raise max_memory." if m >= 1 else
               f"Not even a 1-token prompt fits with batch_size {batch_size}: lower batch_size "
               "or raise max_memory."))
    # ---- node table ---------------------------------------------------------------------------
    f_layer = torch.cat([torch.full((len(f),), i) for i, f in enumerate(feats)]).long()
    f_pos = torch.cat([f[:, 0] for f in feats]).long()
    f_id = torch.cat([f[:, 1] for f in feats]).long()
    f_val = torch.cat([rr.acts[i][f[:, 0], f[:, 1]] for i, f in enumerate(feats)])
    e0 = n_feat
    t0_ = e0 + L * n
    b0 = t0_ + n
    l0 = b0 + n_bias
    A = torch.zeros(n_nodes, n_nodes)
    # target list: features then logits (rows of A)
    targets = [("feature", i) for i in range(n_feat)] + [("logit", j)
                                                          for j in range(len(logit_ids))]
    enc = transcoders.W_enc.detach().float()
    starts = np.cumsum([0] + [len(f) for f in feats])
    with torch.no_grad():
        b_enc = transcoders.b_enc.detach().float()
        b_dec = transcoders.b_dec.detach().float()
        decs = [[transcoders.decoder(s, t).detach().float()[feats[s][:, 1]]
                 if s in transcoders.sources(t) else None for t in range(L)] for s in range(L)]
    # one forward of `batch_size` copies serves every batch of targets: each backward keeps
    # the graph (circuit-tracer's scheme) and row b carries only its target's value
    n_rows = min(batch_size, len(targets))
    logits, lv = rr.forward(n_rows)
    leaves = [lv.embed, lv.pos_embed, *lv.attn_out, *lv.mlp_out]
    t_idx = torch.tensor([i for _, i in targets])
    t_layer = torch.tensor([int(f_layer[i]) if k == "feature" else -1 for k, i in targets])
    for b0_ in range(0, len(targets), batch_size):
        chunk = targets[b0_:b0_ + batch_size]
        B = len(chunk)
        for leaf in leaves:
            if leaf is not None:
                leaf.grad = None
        idx, layer_of = t_idx[b0_:b0_ + B], t_layer[b0_:b0_ + B]
        value = torch.zeros(B)
        for lyr in range(L):  # feature targets: pre-activation = MLP input @ encoder column
            sel = torch.nonzero(layer_of == lyr)[:, 0]
            if len(sel):
                fi = idx[sel]
                x = lv.mlp_in[lyr][sel, f_pos[fi]].float()          # [k, d_in]
                value = value.index_add(0, sel, (x * enc[lyr][:, f_id[fi]].T).sum(-1))
        sel = torch.nonzero(layer_of < 0)[:, 0]
        if len(sel):  # logit targets: the logit minus the mean logit
            last = logits[sel, -1].float()                             # [k, vocab]
            tok = torch.tensor([logit_ids[int(i)] for i in idx[sel]])
            value = value.index_add(0, sel, last.gather(1, tok[:, None])[:, 0]
                                    - last.mean(-1))
        value.sum().backward(retain_graph=b0_ + batch_size < len(targets))
        rows = torch.tensor([i if k == "feature" else l0 + i for k, i in chunk])
        with torch.no_grad():
            G = [_grad(lv.mlp_out[t])[:B] for t in range(L)]  # [B, n, d]
            block = torch.zeros(B, n_nodes)
            for s in range(L):
                if not len(feats[s]):
                    continue
                acc = torch.zeros(B, len(feats[s]))
                for t in range(L):
                    if decs[s][t] is not None:
                        acc += torch.einsum("bnd,nd->bn", G[t][:, feats[s][:, 0]], decs[s][t])
                block[:, starts[s]:starts[s + 1]] = acc * rr.acts[s][feats[s][:, 0],
                                                                     feats[s][:, 1]]
            for t in range(L):
                block[:, e0 + t * n:e0 + (t + 1) * n] = torch.einsum("bnd,nd->bn", G[t],
                                                                     rr.errors[t])
            block[:, t0_:b0] = torch.einsum("bnd,nd->bn", _grad(lv.embed)[:B], rr.embed)
            for t in range(L):
                bias = torch.einsum("bnd,nd->b", _grad(lv.attn_out[t])[:B], rr.attn_bias[t])
                bias += torch.einsum("bnd,d->b", G[t], b_dec[t])
                block[:, b0 + t] = bias
            if lv.pos_embed is not None:
                block[:, b0 + L] = torch.einsum("bnd,nd->b", _grad(lv.pos_embed)[:B],
                                                rr.pos_embed)
            for row, (kind, i) in enumerate(chunk):  # the target's own bias
                if kind == "feature":
                    block[row, b0 + int(f_layer[i])] += b_enc[int(f_layer[i]), int(f_id[i])]
                else:
                    ub = rr.unembed_bias
                    block[row, b0 + L + 1] = ub[logit_ids[i]] - ub.mean()
            A[rows] = block
    # ---- values and the node table ------------------------------------------------------------
    demeaned = rr.logits[-1] - rr.logits[-1].mean()
    err_norm = torch.stack([e.norm(dim=-1) for e in rr.errors]).reshape(-1)
    values = torch.cat([f_val, err_norm, rr.embed.norm(dim=-1), torch.full((n_bias,), math.nan),
                        demeaned[logit_ids]])
    str_toks = model.to_str_tokens(tokens)
    nodes = pd.DataFrame({
        "kind": (["feature"] * n_feat + ["error"] * (L * n) + ["embedding"] * n
                 + ["bias"] * n_bias + ["logit"] * len(logit_ids)),
        "layer": torch.cat([f_layer, torch.arange(L).repeat_interleave(n),
                            torch.full((n,), -1), torch.arange(L), torch.tensor([-1, L]),
                            torch.full((len(logit_ids),), L)]).numpy(),
        "pos": torch.cat([f_pos, torch.arange(n).repeat(L), torch.arange(n),
                          torch.full((n_bias,), -1),
                          torch.full((len(logit_ids),), n - 1)]).numpy(),
        "feature": torch.cat([f_id, torch.full((L * n,), -1), tokens.cpu(),
                              torch.full((n_bias,), -1), torch.tensor(logit_ids)]).numpy(),
        "value": values.numpy(),
    })
    nodes.insert(0, "node_id", _node_ids(nodes, L))
    nodes["token"] = [str_toks[p] if k in ("embedding", "feature", "error") else
                      (model.tokenizer.decode([int(f)]) if k == "logit" else "")
                      for k, p, f in zip(nodes["kind"], nodes["pos"], nodes["feature"])]
    nodes["prob"] = 0.0
    nodes.loc[nodes.kind == "logit", "prob"] = logit_probs
    replacement_logits = rr.forward(1)[0][0].detach().float()
    g = AttributionGraph(
        nodes=nodes, adjacency=A.numpy(), tokens=tokens.cpu().tolist(), str_tokens=str_toks,
        prompt=prompt if isinstance(prompt, str) else "".join(str_toks),
        logit_ids=logit_ids, logit_probs=logit_probs, n_layers=L,
        model_name=model.name, transcoder_kind=transcoders.kind,
        real_logits=rr.logits[-1].numpy(), replacement_logits=replacement_logits[-1].numpy(),
        seconds=time.perf_counter() - t0, model=model, transcoders=transcoders)
    g.compute_influence()
    return g


def _grad(leaf: torch.Tensor) -> torch.Tensor:
    """The leaf's gradient as float32 (zeros where no target of the batch reached it)."""
    return torch.zeros_like(leaf, dtype=torch.float32) if leaf.grad is None else \
        leaf.grad.float()


def _node_ids(nodes: pd.DataFrame, n_layers: int) -> list[str]:
    """circuit-tracer's node ids (features `{layer}_{feature}_{pos}`, tokens `E_{id}_{pos}`,
    logits `{n_layers + 1}_{id}_{pos}`), with errors as `err_{layer}_{pos}` and biases as
    `bias_{layer}` (circuit-tracer's error id `0_{layer}_{pos}` can equal a layer-0 feature's)."""
    out = []
    for k, lyr, p, f in zip(nodes["kind"], nodes["layer"], nodes["pos"], nodes["feature"]):
        if k == "feature":
            out.append(f"{lyr}_{f}_{p}")
        elif k == "error":
            out.append(f"err_{lyr}_{p}")
        elif k == "embedding":
            out.append(f"E_{f}_{p}")
        elif k == "bias":
            out.append({-1: "bias_pos_embed", n_layers: "bias_unembed"}.get(int(lyr),
                                                                         f"bias_{lyr}"))
        else:
            out.append(f"{n_layers + 1}_{f}_{p}")
    return out
