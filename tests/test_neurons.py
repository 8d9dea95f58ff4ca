"""Neuron analyses checked against independent computations: weights by hand, hand-written hook
runs with `bridge.run_with_hooks`, and TransformerLens's own activation patching."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import interp_widgets as iw
from interp_widgets.analysis import neurons as nr
from interp_widgets.analysis.corpus import scan_neurons
from interp_widgets.model import per_token_loss

torch.set_num_threads(1)
L, N = 1, 7
HOOK = f"blocks.{L}.mlp.hook_post"
PROMPTS = ["The chef looked at the apple for a long time, and then bought",
           "Everyone wanted the kite. In the end, the coach got"]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return iw.demo.corpus(6, seed=5)


def _zero_hook(act, hook):
    act = act.clone()
    act[..., N] = 0.0
    return act


def test_direct_logit_effect_is_w_out_times_w_u(model):
    b = model.bridge
    res = nr.direct_logit_effect(model, L, N, k=5, ln_scale=PROMPTS)
    by_hand = (b.blocks[L].mlp.W_out[N] @ b.W_U).detach()
    torch.testing.assert_close(res.effect, by_hand, atol=1e-5, rtol=1e-5)
    assert res.top["id"].tolist() == by_hand.topk(5).indices.tolist()
    assert res.bottom["id"].tolist() == by_hand.topk(5, largest=False).indices.tolist()
    run = model.run(PROMPTS, names=["ln_final.hook_scale"])
    mask = run.attention_mask.bool().clone()
    mask[:, 0] = False
    scale = run.cache["ln_final.hook_scale"][..., 0][mask].mean()
    assert res.ln_scale == pytest.approx(float(scale), rel=1e-5)
    torch.testing.assert_close(torch.tensor(res.top["effect_ln"].values, dtype=torch.float32),
                               by_hand.topk(5).values / scale, atol=1e-4, rtol=1e-4)
    assert "effect_ln" not in nr.direct_logit_effect(model, L, N).top


def test_find_neurons_ranks_direct_effects_on_one_token(model):
    b = model.bridge
    t = model.tokenizer(" an", add_special_tokens=False)["input_ids"][0]
    found = nr.find_neurons(model, " an", k=3)
    eff = torch.stack([(b.blocks[i].mlp.W_out @ b.W_U[:, t]).detach()
                       for i in range(model.cfg.n_layers)])
    best = eff.flatten().topk(3)
    assert found["effect"].tolist() == pytest.approx(best.values.tolist(), rel=1e-5)
    assert (found["layer"] * eff.shape[1] + found["neuron"]).tolist() == best.indices.tolist()


def test_find_neurons_against_a_rival_ranks_the_logit_difference(model):
    b = model.bridge
    an, a = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" an", " a"))
    found = nr.find_neurons(model, " an", against=" a", layers=[1, 2], k=4)
    eff = torch.stack([(b.blocks[i].mlp.W_out @ (b.W_U[:, an] - b.W_U[:, a])).detach()
                       for i in (1, 2)])  # [layer, d_mlp]
    best = eff.flatten().topk(4)
    assert found["effect"].tolist() == pytest.approx(best.values.tolist(), rel=1e-4)
    assert (found["layer"] - 1).tolist() == (best.indices // eff.shape[1]).tolist()
    assert found["neuron"].tolist() == (best.indices % eff.shape[1]).tolist()
    with pytest.raises(ValueError, match="rival token"):
        nr.find_neurons(model, " an", against=" an")


@pytest.mark.parametrize("layer", [0, L])
def test_input_attribution_sums_to_the_pre_activation(model, layer):
    res = nr.neuron_input_attribution(model, PROMPTS[0], layer, N, pos=-1)
    run = model.run(PROMPTS[0], names=[f"blocks.{layer}.mlp.hook_pre"])
    pre = float(run.cache[f"blocks.{layer}.mlp.hook_pre"][0, -1, N])
    assert res.pre_activation == pytest.approx(pre, abs=1e-5)
    assert res.total == pytest.approx(pre, abs=1e-4)
    if layer == 0:
        return
    assert {"embed", "pos_embed", "b_in", f"L{L}H0", "0_mlp_out"} <= set(res.labels)
    assert f"{L}_mlp_out" not in res.labels  # the layer's own MLP comes after its input
    g = res.grad_x_input
    assert g.shape == (len(res.str_tokens),)
    mid = nr.neuron_input_attribution(model, PROMPTS[0], L, N, pos=4)
    assert torch.all(mid.grad_x_input[5:] == 0)  # causal: later tokens cannot drive it


def test_grad_x_input_predicts_a_small_rescaling(model):
    res = nr.neuron_input_attribution(model, PROMPTS[0], L, N, pos=-1)
    t = int(res.grad_x_input[1:].abs().argmax()) + 1
    eps = 1e-2

    def scale_token(act, hook):
        act = act.clone()
        act[:, t] *= 1 + eps
        return act

    pre = {}

    def keep(act, hook):
        pre["v"] = act[0, -1, N]

    tokens = model.to_tokens(PROMPTS[0])
    with torch.no_grad():
        model.bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", scale_token),
                                                       (f"blocks.{L}.mlp.hook_pre", keep)])
    change = float(pre["v"]) - res.pre_activation
    assert change == pytest.approx(eps * float(res.grad_x_input[t]), rel=0.15, abs=1e-5)


def test_zero_ablation_matches_a_hand_written_hook(model):
    res = nr.ablate_neuron(model, PROMPTS, L, N, "zero", targets=[" an", " a"])
    run = model.run(PROMPTS)
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(run.tokens, attention_mask=run.attention_mask,
                                             fwd_hooks=[(HOOK, _zero_hook)])
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" an", " a")]
    real = run.attention_mask.bool()
    # a difference of two tokens' logits is the bridge's (centring cancels in it) ...
    diff = logits[..., ids[0]] - logits[..., ids[1]]
    torch.testing.assert_close((res.logit_ablated[..., 0] - res.logit_ablated[..., 1])[real],
                               diff[real], atol=1e-4, rtol=1e-5)
    loss = per_token_loss(logits, run.tokens, run.attention_mask)
    torch.testing.assert_close(res.d_loss, loss - run.loss, equal_nan=True, atol=1e-5, rtol=1e-5)
    assert torch.isnan(res.logit_clean[1, run.attention_mask[1] == 0]).all()
    # ... but the absolute logits are the Hugging Face model's own, clean and ablated: a fresh
    # copy from disk, zero-ablated with a plain torch hook on its activation function
    from transformers import AutoModelForCausalLM

    from interp_widgets.demo import MODEL_DIR

    hf = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    assert not res.logits_centred
    with torch.no_grad():
        clean = hf(run.tokens, attention_mask=run.attention_mask).logits[..., ids]

        def zero(module, inputs, out):
            out = out.clone()
            out[..., N] = 0.0
            return out

        handle = hf.transformer.h[L].mlp.act.register_forward_hook(zero)
        ablated = hf(run.tokens, attention_mask=run.attention_mask).logits[..., ids]
        handle.remove()
    torch.testing.assert_close(res.logit_clean[real], clean[real], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(res.logit_ablated[real], ablated[real], atol=1e-4, rtol=1e-5)
    # TransformerLens's centred logits are off by a per-position constant (several logits)
    assert float((run.logits[..., ids][real] - clean[real]).abs().max()) > 0.5


def test_mean_and_resample_statistics_come_from_the_corpus(model, docs):
    acts = torch.cat([a[1:] for _, _, a in nr.corpus_activations(model, docs, L, N)])
    mean = nr.ablate_neuron(model, PROMPTS[0], L, N, "mean", corpus=docs)
    assert mean.value == pytest.approx(float(acts.double().mean()), rel=1e-5)
    r1 = nr.ablate_neuron(model, PROMPTS[0], L, N, "resample", corpus=docs, seed=3)
    r2 = nr.ablate_neuron(model, PROMPTS[0], L, N, "resample", corpus=docs, seed=3)
    torch.testing.assert_close(r1.loss_ablated, r2.loss_ablated, equal_nan=True)
    scan = scan_neurons(model, docs, L, k=4, progress=False)
    from_scan = nr.ablate_neuron(model, PROMPTS[0], L, N, "mean", scan=scan)
    assert from_scan.value == pytest.approx(mean.value, rel=1e-5)
    assert nr.ablate_neuron(model, PROMPTS[0], L, N, "resample", scan=scan).value == "resample"
    with pytest.raises(ValueError, match="pass corpus=.* or scan="):
        nr.ablate_neuron(model, PROMPTS[0], L, N, "mean")


def test_modulation(model):
    res = nr.modulate_neuron(model, PROMPTS[0], L, N, [0.0, 1.0, 3.0])
    torch.testing.assert_close(res.probs[1], res.baseline, atol=1e-6, rtol=1e-5)
    run = model.run(PROMPTS[0])
    with torch.no_grad():
        zero = model.bridge.run_with_hooks(run.tokens, fwd_hooks=[(HOOK, _zero_hook)])
    torch.testing.assert_close(res.probs[0], zero[0, -1].softmax(-1), atol=1e-6, rtol=1e-5)
    one = nr.modulate_neuron(model, PROMPTS[0], L, N, 3.0)
    torch.testing.assert_close(one.probs[0], res.probs[2], atol=1e-6, rtol=1e-5)
    assert list(res.target_probs([" an", " a"]).columns) == [" an", " a"]
    assert len(res.top(0, 3)) == 3
    with pytest.raises(ValueError, match=r"-2.0 \.\. 5.0"):
        nr.modulate_neuron(model, PROMPTS[0], L, N, 6.0)


def test_patching_matches_transformer_lens(model):
    from transformer_lens.patching import generic_activation_patch

    clean = "When Mary and John went to the store, John gave a drink to"
    corrupt = "When Mary and John went to the store, Mary gave a drink to"
    res = nr.patch_neuron(model, clean, corrupt, L, N, " Mary", " John")
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Mary", " John")]
    _, clean_cache = model.bridge.run_with_cache(model.to_tokens(clean), names_filter=[HOOK])

    def setter(act, index, clean_act):
        act[:, index[1], N] = clean_act[:, index[1], N]
        return act

    def metric(logits):
        return logits[0, -1, ids[0]] - logits[0, -1, ids[1]]

    length = len(res.str_tokens)
    index = pd.DataFrame({"layer": [L] * length, "pos": list(range(length))})
    with torch.no_grad():
        ref = generic_activation_patch(model.bridge, model.to_tokens(corrupt), clean_cache, metric,
                                       setter, "post", index_df=index)
    torch.testing.assert_close(res.by_pos, ref.float().cpu(), atol=1e-4, rtol=1e-4)
    assert res.by_pos[0] == pytest.approx(res.corrupt, abs=1e-4)  # BOS is identical
    same = nr.patch_neuron(model, clean, clean, L, N, " Mary", " John")
    assert same.all_pos == pytest.approx(same.clean, abs=1e-4)
    with pytest.raises(ValueError, match="same number of tokens"):
        nr.patch_neuron(model, clean, "Mary gave", L, N, " Mary")


def test_correlated_neurons_and_selectivity(model, docs):
    scan = scan_neurons(model, docs, L, k=4, progress=False)
    top = nr.correlated_neurons(scan, N, k=5)
    acts = torch.cat([model.run(d, names=[HOOK]).cache[HOOK][0, 1:] for d in docs]).double()
    corr = torch.corrcoef(acts.T)[N]
    corr[N] = -2
    assert top["neuron"].tolist() == corr.topk(5).indices.tolist()
    assert N not in top["neuron"].tolist()

    sel = nr.neuron_selectivity(model, docs, L, N, token=" the", where="present")
    ids = [model.to_tokens(d)[0, 1:] for d in docs]
    the = model.tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    mask = torch.cat(ids) == the
    assert sel.n_in == int(mask.sum()) and sel.n_out == int((~mask).sum())
    assert sel.mean_in == pytest.approx(float(acts[mask, N].mean()), rel=1e-5)
    assert sel.mean_out == pytest.approx(float(acts[~mask, N].mean()), rel=1e-5)
    assert 0 <= sel.auroc <= 1
    with pytest.raises(ValueError, match="either token= .* or labels="):
        nr.neuron_selectivity(model, docs, L, N)


def test_bad_input(model):
    n_layers, d_mlp = model.cfg.n_layers, model.cfg.d_mlp
    with pytest.raises(ValueError, match=f"use 0 .. {n_layers - 1}"):
        nr.direct_logit_effect(model, n_layers, 0)
    with pytest.raises(ValueError, match=f"use 0 .. {d_mlp - 1}"):
        nr.ablate_neuron(model, PROMPTS[0], L, d_mlp)
    with pytest.raises(ValueError, match="Valid choices"):
        nr.neuron_activations(model, PROMPTS[0], L, N, hook="hook_resid_post")
    with pytest.raises(ValueError, match="mode must be"):
        nr.ablate_neuron(model, PROMPTS[0], L, N, "negate")
    with pytest.raises(IndexError, match="out of range"):
        nr.neuron_input_attribution(model, "Mary", L, N, pos=40)
    toks, acts = nr.neuron_activations(model, PROMPTS, L, N, hook="post")
    assert acts.shape == (2, max(len(t) for t in toks))
