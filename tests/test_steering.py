"""Steering vectors, KV-cached steered generation (equal to recomputing without the cache),
KL to the baseline, layer-range errors, and perturbation flow (demo model)."""

import pytest
import torch

from interp_widgets.analysis import (
    SteeringVector,
    generate,
    kl_to_baseline,
    logit_diff,
    pca_directions,
    perturbation_flow,
    sae_direction,
    steering_effect,
    steering_vector,
)
from interp_widgets.analysis.steering import steered_logits
from interp_widgets.demo.tasks import article_prompts
from interp_widgets.sae import SAE

torch.set_num_threads(1)

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def actadd(model):
    return steering_vector(model, " love", " hate and anger", 1)


@pytest.fixture(scope="module")
def mean_diff(model):
    pos = [p for p, right, _ in article_prompts(16, seed=3) if right == " an"]
    neg = [p for p, right, _ in article_prompts(16, seed=3) if right == " a"]
    return steering_vector(model, pos, neg, 1, method="mean_diff")


def test_vectors(model, actadd, mean_diff):
    d = model.cfg.d_model
    n = max(len(model.to_tokens(" love")[0]), len(model.to_tokens(" hate and anger")[0]))
    assert actadd.vector.shape == (n, d) and actadd.method == "actadd"
    assert actadd.vector[0].abs().max() < 1e-5  # BOS is the same in both prompts
    assert mean_diff.vector.shape == (d,) and mean_diff.layer == 1
    run = model.run(["a", "an"], names=["blocks.1.hook_resid_pre"])
    assert run.cache["blocks.1.hook_resid_pre"].shape[-1] == d


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_equals_recomputed(model, actadd, mean_diff, temperature):
    steer = [(actadd, 1, 3.0), (mean_diff.vector, 0, 2.0)]
    cached = generate(model, PROMPT, steer=steer, max_new_tokens=8, seed=7,
                      temperature=temperature)
    full = generate(model, PROMPT, steer=steer, max_new_tokens=8, seed=7,
                    temperature=temperature, use_cache=False)
    assert cached.tokens.tolist() == full.tokens.tolist()
    assert torch.allclose(cached.logits, full.logits, atol=1e-4)
    # the logits each step saw equal one steered pass over the whole final sequence
    again = steered_logits(model, cached.tokens[None], steer)[0, cached.n_prompt - 1:-1]
    assert torch.allclose(cached.logits, again.float().cpu(), atol=1e-4)


def test_actadd_rows_land_on_their_positions(model):
    """A position-aligned vector longer than the prompt steers generated tokens at those
    positions too, in cached and uncached decoding alike."""
    vec = torch.randn(6, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    steer = [(vec, 0, 1.0)]
    cached = generate(model, "When", steer=steer, max_new_tokens=5, seed=1)
    full = generate(model, "When", steer=steer, max_new_tokens=5, seed=1, use_cache=False)
    assert cached.tokens.tolist() == full.tokens.tolist()
    assert torch.allclose(cached.logits, full.logits, atol=1e-4)


def test_steering_changes_generation_and_zero_does_not(model, mean_diff):
    base = generate(model, PROMPT, max_new_tokens=6, seed=0)
    zero = generate(model, PROMPT, steer=[(mean_diff, 1, 0.0)], max_new_tokens=6, seed=0)
    assert zero.tokens.tolist() == base.tokens.tolist()
    big = generate(model, PROMPT, steer=[(mean_diff, 1, 40.0)], max_new_tokens=6, seed=0)
    assert not torch.allclose(big.logits, base.logits)
    kl = kl_to_baseline(model, big.tokens, [(mean_diff, 1, 40.0)])
    assert kl.shape == (len(big.tokens),) and kl.min() >= -1e-6 and kl.max() > 0
    assert kl_to_baseline(model, big.tokens, None).abs().max() < 1e-6


def test_steering_effect_matches_single_runs(model, mean_diff):
    prompts = [p for p, _, _ in article_prompts(4, seed=5)]  # of different lengths
    metric = logit_diff(" an", " a").bind(model)
    steer = [(mean_diff, 1, 5.0)]
    effect = steering_effect(model, prompts, metric, steer)
    for i, p in enumerate(prompts):
        one = metric(steered_logits(model, model.to_tokens(p), steer)).item()
        assert effect[i].item() == pytest.approx(one, abs=1e-4)
    plain = steering_effect(model, prompts, lambda lg: lg[0, -1, 0])
    assert plain.shape == (4,)


def test_mean_difference_steers_toward_an(model):
    """The steering notebook's measured effect: the mean difference (" an" prompts minus " a"
    prompts, at the last block's input) raises logit(" an") - logit(" a") on held-out prompts
    that need " a", and more with a larger coefficient."""
    layer = model.cfg.n_layers - 1
    train = article_prompts(64, seed=11)
    vec = steering_vector(model, [p for p, r, _ in train if r == " an"],
                          [p for p, r, _ in train if r == " a"], layer, method="mean_diff")
    test = [p for p, r, _ in article_prompts(64, seed=12) if r == " a"]
    metric = logit_diff(" an", " a")
    effect = [steering_effect(model, test, metric, [(vec, layer, c)]).mean().item()
              for c in (0.0, 1.0, 2.0)]
    assert effect[0] < 0 < effect[2]  # unsteered the model prefers " a"; steered, " an"
    assert effect[0] < effect[1] < effect[2]


def test_layer_and_shape_errors(model, mean_diff):
    L = model.cfg.n_layers
    with pytest.raises(ValueError, match=f"use 0 .. {L - 1}"):
        generate(model, PROMPT, steer=[(mean_diff, L, 1.0)], max_new_tokens=1)
    with pytest.raises(ValueError, match=f"use 0 .. {L - 1}"):
        steering_vector(model, "a", "b", -1)
    with pytest.raises(ValueError, match="residual stream is"):
        generate(model, PROMPT, steer=[(torch.zeros(3), 0, 1.0)], max_new_tokens=1)
    with pytest.raises(ValueError, match="mean_diff"):
        steering_vector(model, ["a", "b"], ["c", "d"], 0)
    with pytest.raises(ValueError, match="paired"):
        steering_vector(model, ["a", "b"], ["c"], 0, method="mean_diff")


def test_pca_directions(model):
    prompts = [p for p, _, _ in article_prompts(8, seed=1)]
    d = pca_directions(model, prompts, 1, n=3)
    gram = d.vectors @ d.vectors.T
    assert torch.allclose(gram, torch.eye(3), atol=1e-4)
    ratios = d.explained_variance_ratio.tolist()
    assert ratios == sorted(ratios, reverse=True) and sum(ratios) <= 1
    sv = d.steering_vector(0)
    assert sv.vector.norm().item() == pytest.approx(d.std[0].item(), rel=1e-4)
    with pytest.raises(ValueError, match="more than"):
        pca_directions(model, ["a"], 0, n=5)


def test_sae_decoder_direction(model):
    sae = SAE(model.cfg.d_model, 16, hook_name="blocks.1.hook_resid_post", seed=0)
    sv = sae_direction(sae, 3)
    assert isinstance(sv, SteeringVector) and sv.layer == 1 and sv.hook == "hook_resid_post"
    assert torch.equal(sv.vector, sae.W_dec[3].detach())
    g = generate(model, PROMPT, steer=[(sv, 1, 5.0)], max_new_tokens=3, seed=0)
    assert len(g.new_tokens) == 3
    with pytest.raises(ValueError, match="0 .. 15"):
        sae_direction(sae, 16)
    with pytest.raises(ValueError, match="residual stream"):
        sae_direction(SAE(4, 8, hook_name="blocks.0.mlp.hook_post"), 0)


def test_perturbation_flow(model):
    text = "Mary went to the store. John went home. Then Mary gave a drink to"
    flow = perturbation_flow(model, text, "John went home. ")
    n = len(flow.str_tokens)
    assert flow.diff.shape == (model.cfg.n_layers + 1, n) and len(flow.removed) == n
    removed = torch.tensor(flow.removed)
    assert removed.any() and torch.isnan(flow.diff[:, removed]).all()
    first = int(removed.nonzero()[0])
    # a causal model: nothing before the cut changes
    assert flow.diff[:, :first].abs().max() < 1e-4
    assert flow.kl[:first].abs().max() < 1e-5
    # positions kept: after the cut, the layer-0 input is unchanged; the change comes later
    after = ~removed
    after[:first] = False
    assert flow.diff[0, after].abs().max() < 1e-4
    assert flow.diff[-1, after].max() > 0
    assert "".join(flow.edited_tokens).count("John") == 0
    shifted = perturbation_flow(model, text, "John went home. ", keep_positions=False)
    assert shifted.diff[0, after].max() > 0
    # the predictions after the last token, against plain runs of both texts
    edited = text.replace("John went home. ", "")
    for top, run in ((flow.top_before, model.run(text)), (shifted.top_after, model.run(edited))):
        want = run.top_predictions(pos=-1, k=5)
        assert [t for t, _ in top] == [t for t, _ in want]
        assert [p for _, p in top] == pytest.approx([p for _, p in want], abs=1e-5)
    assert flow.kl[-1] > 0 and flow.top_before != flow.top_after
    with pytest.raises(ValueError, match="does not occur"):
        perturbation_flow(model, text, "Bob")


def test_generation_recomputes_when_the_cache_is_not_filled(model, actadd, monkeypatch):
    """A bridge that returns an unfilled KV cache (transformers 5.24) gets the recomputed
    path: the same tokens and logits as with a working cache."""
    from interp_widgets import model as model_module

    steer = [(actadd, 1, 3.0)]
    cached = generate(model, PROMPT, steer=steer, max_new_tokens=6, seed=3)
    monkeypatch.setattr(model_module, "cache_holds", lambda past, n_pos: False)
    fallback = generate(model, PROMPT, steer=steer, max_new_tokens=6, seed=3)
    assert fallback.tokens.tolist() == cached.tokens.tolist()
    assert torch.allclose(fallback.logits, cached.logits, atol=1e-4)


def test_continuation_loss_matches_the_hf_models_own_cross_entropy(model, mean_diff):
    """The coherence measure is the unsteered model's loss on the generated tokens: checked
    against HF GPT2LMHeadModel's `labels=` loss on the same ids (prompt tokens masked out)."""
    from transformers import GPT2LMHeadModel

    import interp_widgets as iw
    from interp_widgets.analysis import continuation_loss

    g = generate(model, PROMPT, steer=[(mean_diff, 1, 4.0)], max_new_tokens=8, seed=3)
    loss = continuation_loss(model, g)  # [new]
    assert loss.shape == (8,) and bool((loss >= 0).all())
    hf = GPT2LMHeadModel.from_pretrained(iw.demo.MODEL_DIR).eval()
    ids = g.tokens[None]
    labels = ids.clone()
    labels[:, :g.n_prompt] = -100
    with torch.no_grad():
        want = hf(ids, labels=labels).loss
    assert float(loss.mean()) == pytest.approx(float(want), abs=1e-4)


def test_compare_strengths_rows(model, mean_diff):
    """Coefficient 0 is the baseline (no KL); each row's metric is steering_effect's; the
    generation is generate's with the same seed."""
    from interp_widgets.analysis import compare_strengths, continuation_loss

    metric = logit_diff(" an", " a")
    prompts = [p for p, right, _ in article_prompts(8, seed=5) if right == " a"]
    rows = compare_strengths(model, PROMPT, mean_diff, 1, (0, 2, 8), metric=metric,
                             metric_prompts=prompts, seed=1, max_new_tokens=6)
    assert [r.coeff for r in rows] == [0.0, 2.0, 8.0]
    assert rows[0].mean_kl == pytest.approx(0.0, abs=1e-5)
    base = generate(model, PROMPT, max_new_tokens=6, seed=1)
    assert rows[0].generation.new_tokens == base.new_tokens
    assert rows[0].loss == pytest.approx(float(continuation_loss(model, base).mean()))
    for r in rows:
        want = steering_effect(model, prompts, metric, [(mean_diff, 1, r.coeff)]).mean()
        assert r.metric == pytest.approx(float(want), abs=1e-5)
    assert rows[2].metric > rows[0].metric and rows[2].mean_kl > rows[1].mean_kl
    with pytest.raises(ValueError, match="coeffs is empty"):
        compare_strengths(model, PROMPT, mean_diff, 1, ())
