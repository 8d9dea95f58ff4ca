"""Numbers over prompt sets with their intervals: activation patching per cell over prompt
pairs (against TransformerLens's get_act_patch_resid_pre pair by pair and our batched sweep),
direct logit attribution over prompts, and steering effects."""

import numpy as np
import pytest
import torch
from transformer_lens import patching as tlp

from interp_widgets.analysis import activation_patching, logit_diff
from interp_widgets.analysis.patching import patching_sweep

torch.set_num_threads(1)

TEMPLATE = "When {A} and {B} went to the store, {S} gave a drink to"
NAMES = [("Mary", "John"), ("John", "Mary"), ("Alex", "Eva"), ("Eva", "Alex"), ("Tom", "Anna"),
         ("Anna", "Tom")]
CLEAN = [TEMPLATE.format(A=a, B=b, S=b) for a, b in NAMES]  # the answer is a
CORRUPT = [TEMPLATE.format(A=a, B=b, S=a) for a, b in NAMES]
METRIC = logit_diff([" " + a for a, _ in NAMES], [" " + b for _, b in NAMES])


@pytest.fixture(scope="module")
def sweep(model):
    return patching_sweep(model, list(zip(CLEAN, CORRUPT)), METRIC, n_boot=1000)


def test_patching_sweep_per_pair_equals_transformer_lens(model, sweep):
    assert sweep.per_prompt.shape == (6, model.cfg.n_layers, 17) and sweep.n == 6
    for i, (a, b) in enumerate(NAMES[:2]):  # TransformerLens, one pair at a time
        clean, corrupt = model.to_tokens(CLEAN[i]), model.to_tokens(CORRUPT[i])
        with torch.no_grad():
            _, cache = model.bridge.run_with_cache(clean)
        one = logit_diff(" " + a, " " + b).bind(model)
        ref = tlp.get_act_patch_resid_pre(model.bridge, corrupt, cache, one)
        torch.testing.assert_close(sweep.per_prompt[i], ref.float().cpu(), atol=1e-4,
                                   rtol=1e-4)


def test_patching_sweep_value_is_the_batch_sweep_and_the_interval_holds_it(model, sweep):
    batch = activation_patching(model, CLEAN, CORRUPT, METRIC)
    torch.testing.assert_close(sweep.values, batch.values, atol=1e-4, rtol=1e-4)
    # the statistic by hand at one cell: (mean patched - mean corrupt) / (mean clean - corrupt)
    c, k = sweep.clean_values.double(), sweep.corrupt_values.double()
    cell = sweep.per_prompt[:, 1, 13].double()
    assert float(sweep.values[1, 13]) == pytest.approx(
        float((cell.mean() - k.mean()) / (c.mean() - k.mean())), abs=1e-5)
    # cells before the position where the names differ (11) leave every pair at its corrupt
    # value: a constant, which has no interval; the others have one around the value
    ok = torch.isfinite(sweep.low)
    assert bool(ok[:, 11].all()) and not bool(ok[:, :11].any())
    assert bool((sweep.low[ok] <= sweep.values[ok] + 1e-6).all())
    assert bool((sweep.values[ok] <= sweep.high[ok] + 1e-6).all())
    # patching the residual stream at position 0 (BOS, the same in both) changes nothing
    assert float(sweep.values[0, 0]) == pytest.approx(0.0, abs=1e-6)
    e = sweep.estimate(1, 13)
    assert e.n == 6 and e.low <= e.value <= e.high
    df = sweep.to_dataframe()
    assert {"value", "value_low", "value_high", "spread", "value_ci"} <= set(df.columns)
    assert np.isfinite(df["spread"]).any()


def test_patching_sweep_bad_input(model):
    with pytest.raises(ValueError, match="at least 2 prompt pairs"):
        patching_sweep(model, [(CLEAN[0], CORRUPT[0])], METRIC)
    with pytest.raises(ValueError, match="pairs must be"):
        patching_sweep(model, ["a", "b"], METRIC)
    with pytest.raises(ValueError, match="metric that gives one per prompt"):
        patching_sweep(model, list(zip(CLEAN[:2], CORRUPT[:2])), lambda lg: lg[:, -1, 0].mean())


def test_dla_over_prompts_is_the_mean_of_single_prompts_with_an_interval(model):
    from interp_widgets.analysis.attribution import (
        direct_logit_attribution,
        direct_logit_attribution_set,
    )

    triples = [(c, " " + a, " " + b) for c, (a, b) in zip(CLEAN, NAMES)]
    s = direct_logit_attribution_set(model, triples, n_boot=500)
    singles = [direct_logit_attribution(model, *t) for t in triples]
    heads = torch.stack([r.heads for r in singles]).double()  # [prompt, layer, head]
    torch.testing.assert_close(s.mean["heads"].double(), heads.mean(0), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(s.spread["heads"].double(), heads.std(0), atol=1e-6, rtol=1e-6)
    ld = torch.tensor([r.logit_diff for r in singles], dtype=torch.float64)
    e = s.estimate("logit_diff")
    assert e.value == pytest.approx(float(ld.mean())) and e.low < e.value < e.high and e.n == 6
    # the mean still decomposes: components sum to the mean logit difference
    parts = sum(float(s.mean[k].sum()) for k in ("embed", "pos_embed", "attn", "mlp",
                                                 "unembed_bias"))
    assert parts == pytest.approx(e.value, abs=1e-3)
    df = s.frame()
    row = df[df.component == "L2H0"].iloc[0]
    assert row.value_low <= row.value <= row.value_high
    assert not df.component.str.contains("N").any()  # neurons only when asked
    with pytest.raises(ValueError, match="at least 2 prompts"):
        direct_logit_attribution_set(model, triples[:1])
    with pytest.raises(ValueError, match="Give answers= and wrongs="):
        direct_logit_attribution_set(model, CLEAN)


def test_steering_shift_is_the_paired_mean_with_an_interval(model):
    from interp_widgets.analysis.steering import (
        steered_logits,
        steering_shift,
        steering_vector,
    )
    from interp_widgets.demo.tasks import article_prompts

    pos = [p for p, right, _ in article_prompts(16, seed=3) if right == " an"]
    neg = [p for p, right, _ in article_prompts(16, seed=3) if right == " a"]
    vec = steering_vector(model, pos, neg, 1, method="mean_diff")
    prompts = [p for p, _, _ in article_prompts(8, seed=5)]
    metric = logit_diff(" an", " a").bind(model)
    steer = [(vec, 1, 2.0)]
    est = steering_shift(model, prompts, metric, steer, n_boot=500)
    by_hand = [metric(steered_logits(model, model.to_tokens(p), steer)).item()
               - metric(steered_logits(model, model.to_tokens(p), None)).item() for p in prompts]
    assert est.value == pytest.approx(float(np.mean(by_hand)), abs=1e-4)
    assert est.n == 8 and est.low < est.value < est.high


def test_patching_view_with_a_prompt_set_syncs_intervals(model, sweep):
    from interp_widgets.widgets import PatchingView
    from interp_widgets.widgets._codec import decode_array

    view = PatchingView(model, CLEAN, CORRUPT, metric=METRIC, grids=(("resid_pre", "each"),))
    g = view.grids[0]
    assert g["n_pairs"] == 6
    np.testing.assert_allclose(decode_array(g["values"]), sweep.values.numpy(), atol=1e-5)
    same = patching_sweep(model, list(zip(CLEAN, CORRUPT)), METRIC)  # the view's n_boot
    np.testing.assert_allclose(decode_array(g["low"]), same.low.numpy(), atol=1e-5)
    np.testing.assert_allclose(decode_array(g["high"]), same.high.numpy(), atol=1e-5)
    one = PatchingView(model, CLEAN[0], CORRUPT[0], metric=logit_diff(" Mary", " John"),
                       grids=(("resid_pre", "each"),))
    assert "low" not in one.grids[0]  # one pair: no interval to show
