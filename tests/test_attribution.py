"""Direct logit attribution (sums to the logit difference; heads, neurons by hand), the
logit-difference lens, and input-token attribution (demo model)."""

import pytest
import torch

from interp_widgets.analysis import direct_logit_attribution, input_attribution, logit_diff_lens
from interp_widgets.analysis.logit_lens import single_token_id

torch.set_num_threads(1)

PROMPT = "When Mary and John went to the store, John gave a drink to"
ANSWER, WRONG = " Mary", " John"


@pytest.fixture(scope="module")
def dla(model):
    return direct_logit_attribution(model, PROMPT, ANSWER, WRONG)


@pytest.fixture(scope="module")
def direction(model):
    b = model.bridge
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)
    return (b.W_U[:, a] - b.W_U[:, w]).detach()  # [d_model]


def test_components_sum_to_the_logit_difference(model, dla):
    with torch.no_grad():
        logits = model.bridge(model.to_tokens(PROMPT))
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)
    diff = float(logits[0, -1, a] - logits[0, -1, w])
    assert dla.logit_diff == pytest.approx(diff, abs=1e-5)
    assert dla.total == pytest.approx(diff, abs=1e-4)
    parts = dla.embed + dla.pos_embed + dla.attn.sum() + dla.mlp.sum() + dla.unembed_bias
    assert float(parts) == pytest.approx(diff, abs=1e-4)
    assert dla.layers.shape == (model.cfg.n_layers,)


def test_heads_and_neurons_sum_to_their_layers(model, dla):
    L, H = model.cfg.n_layers, model.cfg.n_heads
    assert dla.heads.shape == (L, H) and dla.neurons.shape == (L, model.cfg.d_mlp)
    assert torch.allclose(dla.heads.sum(1) + dla.attn_bias, dla.attn, atol=1e-5)
    assert torch.allclose(dla.neurons.sum(1) + dla.mlp_bias, dla.mlp, atol=1e-4)
    top = dla.top_neurons(3)
    assert abs(top[0][2]) == pytest.approx(dla.neurons.abs().max().item())


def test_top_neurons_of_each_sign(dla):
    """The negative contributors are listed too: by |value| alone the top can all be positive."""
    flat = dla.neurons.reshape(-1)
    pos, neg = dla.top_neurons(5, "positive"), dla.top_neurons(5, "negative")
    assert [v for *_, v in pos] == pytest.approx(flat.topk(5).values.tolist())
    assert [v for *_, v in neg] == pytest.approx((-flat).topk(5).values.neg().tolist())
    assert all(v > 0 for *_, v in pos) and all(v < 0 for *_, v in neg)
    layer, n, v = neg[0]
    assert dla.neurons[layer, n].item() == pytest.approx(v)
    with pytest.raises(ValueError, match="sign must be"):
        dla.top_neurons(3, "both")


def test_layers_and_neurons_by_hand(model, dla, direction):
    """attn_out / mlp_out / one neuron, centred, over the final LayerNorm scale, dotted with
    W_U[:, answer] - W_U[:, wrong]."""
    L = model.cfg.n_layers
    names = ["ln_final.hook_scale"] + [f"blocks.{i}.{h}" for i in range(L)
                                       for h in ("hook_attn_out", "hook_mlp_out",
                                                 "mlp.hook_post")]
    run = model.run(PROMPT, names=names)
    scale = run.cache["ln_final.hook_scale"][0, -1]  # [1]

    def direct(x):  # x: [d_model] written at the last position
        return float(((x - x.mean()) / scale) @ direction)

    for layer in range(L):
        assert dla.attn[layer].item() == pytest.approx(
            direct(run.cache[f"blocks.{layer}.hook_attn_out"][0, -1]), abs=1e-4)
        assert dla.mlp[layer].item() == pytest.approx(
            direct(run.cache[f"blocks.{layer}.hook_mlp_out"][0, -1]), abs=1e-4)
    layer, n, _ = dla.top_neurons(1)[0]
    w_out = model.bridge.blocks[layer].mlp.W_out[n].detach()  # [d_model]
    act = run.cache[f"blocks.{layer}.mlp.hook_post"][0, -1, n]
    assert dla.neurons[layer, n].item() == pytest.approx(direct(act * w_out), abs=1e-4)


def test_each_head_reads_its_own_output_with_its_constant_term(model, dla):
    """Per-head DLA against each head's own output, ``z_h @ W_O[h]`` (b_V included), taken with
    plain torch hooks from a fresh copy of the Hugging Face model (the input of c_proj, split by
    head), centred, over the final LayerNorm's scale, onto ln_f.weight * (W_U[a] - W_U[w]).
    With TransformerLens's default value-bias folding L2H0 read -1.309 here instead of -1.414.
    What is left in attn_bias is c_proj's own bias, which no head writes."""
    from transformers import AutoModelForCausalLM

    from interp_widgets.demo import MODEL_DIR

    hf = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)
    z, final = {}, {}
    handles = [blk.attn.c_proj.register_forward_hook(
        lambda mod, inp, out, i=i: z.__setitem__(i, inp[0])) for i, blk in
        enumerate(hf.transformer.h)]
    handles.append(hf.transformer.ln_f.register_forward_hook(
        lambda mod, inp, out: final.__setitem__("x", inp[0])))
    with torch.no_grad():
        hf(model.to_tokens(PROMPT))
        for h in handles:
            h.remove()
        x = final["x"][0, -1]
        scale = ((x - x.mean()).pow(2).mean() + hf.config.layer_norm_epsilon).sqrt()
        direction = hf.transformer.ln_f.weight * (hf.lm_head.weight[a] - hf.lm_head.weight[w])
        n_heads = hf.config.n_head
        for layer, blk in enumerate(hf.transformer.h):
            w_o = blk.attn.c_proj.weight.view(n_heads, -1, hf.config.n_embd)  # [head, d_head, d]
            out = torch.einsum("hd,hdm->hm", z[layer][0, -1].view(n_heads, -1), w_o)
            own = ((out - out.mean(-1, keepdim=True)) / scale) @ direction  # [head]
            torch.testing.assert_close(dla.heads[layer], own, atol=2e-4, rtol=1e-4)
            b_o = blk.attn.c_proj.bias
            assert dla.attn_bias[layer].item() == pytest.approx(
                float(((b_o - b_o.mean()) / scale) @ direction), abs=2e-4)
    assert dla.heads[2, 0].item() == pytest.approx(-1.414, abs=2e-3)


def test_logit_diff_lens_ends_at_the_model(model, dla):
    labels, lens = logit_diff_lens(model, PROMPT, ANSWER, WRONG)
    assert lens.shape == (model.cfg.n_layers + 1, len(dla.str_tokens))
    assert labels[-1].startswith("resid_post")
    assert lens[-1, -1].item() == pytest.approx(dla.logit_diff, abs=1e-4)


def test_integrated_gradients_is_complete(model):
    ig = input_attribution(model, PROMPT, ANSWER, WRONG, method="integrated_gradients",
                           steps=32)
    assert ig.values.shape == (len(ig.str_tokens),)
    assert ig.values[0] == 0  # BOS stays
    span = ig.target_value - ig.baseline_value
    assert abs(ig.completeness_gap) < 0.02 * max(1.0, abs(span))
    assert float(ig.values.sum()) == pytest.approx(span - ig.completeness_gap, abs=1e-5)
    lp = input_attribution(model, PROMPT, ANSWER, None, steps=32)
    assert lp.target.startswith("log p(")
    assert abs(lp.completeness_gap) < 0.02 * max(1.0, abs(lp.target_value - lp.baseline_value))


def _embed_run(model, tokens, edit):
    """Target logit difference with the token embeddings passed through `edit`."""
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)

    def hook(act, hook=None):
        return edit(act)

    logits = model.bridge.run_with_hooks(tokens, fwd_hooks=[("hook_embed", hook)])
    return logits[0, -1, a] - logits[0, -1, w]


def test_grad_x_input_by_hand(model):
    gxi = input_attribution(model, PROMPT, ANSWER, WRONG, method="grad_x_input")
    tokens = model.to_tokens(PROMPT)
    box = {}

    def keep(act):
        act = act.detach().requires_grad_(True)
        box["x"] = act
        return act

    with torch.enable_grad():
        out = _embed_run(model, tokens, keep)
        (g,) = torch.autograd.grad(out, box["x"])
    ref = (g * box["x"]).sum(-1)[0].detach()
    ref[0] = 0
    assert torch.allclose(gxi.values, ref, atol=1e-5)


def test_occlusion_by_hand(model):
    occ = input_attribution(model, PROMPT, ANSWER, WRONG, method="occlusion", baseline="zero")
    tokens = model.to_tokens(PROMPT)
    pos = int(occ.values[1:].abs().argmax()) + 1

    def zero(act):
        act = act.clone()
        act[:, pos] = 0
        return act

    with torch.no_grad():
        occluded = float(_embed_run(model, tokens, zero))
    assert occ.values[pos].item() == pytest.approx(occ.target_value - occluded, abs=1e-5)


def test_bad_input(model):
    with pytest.raises(ValueError, match="Unknown method 'shap'"):
        input_attribution(model, PROMPT, ANSWER, WRONG, method="shap")
    with pytest.raises(ValueError, match="not one"):
        direct_logit_attribution(model, PROMPT, " Maryxqzjvwk", WRONG)
    with pytest.raises(ValueError, match="out of range"):
        direct_logit_attribution(model, PROMPT, ANSWER, WRONG, pos=99)
