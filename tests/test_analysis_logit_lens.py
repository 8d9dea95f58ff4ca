"""The logit lens against an independent computation from the weights."""

import pytest
import torch

from interp_widgets.analysis import logit_lens

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def lens(model):
    return logit_lens(model, PROMPT, target=" Mary", k=10)


def test_last_layer_is_the_model_output(model, lens):
    run = model.run(PROMPT)
    probs = run.logits[0].softmax(-1)
    top = probs.topk(10, dim=-1)
    assert torch.equal(lens.top_ids[-1], top.indices)
    torch.testing.assert_close(lens.top_probs[-1], top.values, atol=1e-5, rtol=1e-4)
    tid = model.tokenizer(" Mary", add_special_tokens=False)["input_ids"][0]
    torch.testing.assert_close(lens.target_prob[-1], probs[:, tid], atol=1e-5, rtol=1e-4)


def test_each_layer_by_hand(model, lens):
    """LayerNorm is folded at load, so ln_final is (x - mean) / sqrt(var + eps); then W_U, b_U."""
    L = model.cfg.n_layers
    names = [f"blocks.{i}.hook_resid_pre" for i in range(L)]
    run = model.run(PROMPT, names=names)
    eps = model.cfg.eps
    for layer, name in enumerate(names):
        x = run.cache[name][0]
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        probs = (x @ model.bridge.W_U + model.bridge.b_U).softmax(-1)
        assert torch.equal(lens.top_ids[layer, :, 0], probs.argmax(-1))
        torch.testing.assert_close(lens.top_probs[layer, :, 0], probs.max(-1).values,
                                   atol=1e-4, rtol=1e-3)


def test_shapes_and_labels(model, lens):
    L, P = model.cfg.n_layers + 1, len(lens.str_tokens)
    assert lens.top_ids.shape == lens.top_probs.shape == (L, P, 10)
    assert len(lens.layer_labels) == L and lens.layer_labels[0] == "resid_pre 0"
    assert len(lens.top_strs) == L and len(lens.top_strs[0]) == P
    assert lens.top_strs[-1][-1][0] == model.tokenizer.decode([int(lens.top_ids[-1, -1, 0])])


def test_multi_token_target_is_refused(model):
    with pytest.raises(ValueError, match="not one"):
        logit_lens(model, PROMPT, target=" Maryxyzzy")
