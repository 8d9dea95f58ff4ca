"""Activation patching against TransformerLens's get_act_patch_*, attribution patching against
its attribution_patch, metric helpers, and bad input (demo model, IOI prompts)."""

import pandas as pd
import pytest
import torch
from transformer_lens import patching as tlp
from transformer_lens.tools.analysis import attribution_patch

from interp_widgets.analysis import (
    Cell,
    Patcher,
    activation_patching,
    attribution_patching,
    kl_to,
    logit_diff,
    token_prob,
)
from interp_widgets.analysis.logit_lens import single_token_id
from interp_widgets.analysis.patching import result_dims

torch.set_num_threads(1)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"

# component, positions -> TransformerLens function and how to permute its result to ours
TL_FUNCS = {
    ("resid_pre", "each"): (tlp.get_act_patch_resid_pre, None),
    ("attn_out", "each"): (tlp.get_act_patch_attn_out, None),
    ("mlp_out", "each"): (tlp.get_act_patch_mlp_out, None),
    ("head_out", "each"): (tlp.get_act_patch_attn_head_out_by_pos, None),
    ("head_q", "each"): (tlp.get_act_patch_attn_head_q_by_pos, None),
    ("head_k", "each"): (tlp.get_act_patch_attn_head_k_by_pos, None),
    ("head_v", "each"): (tlp.get_act_patch_attn_head_v_by_pos, None),
    ("head_pattern", "each"): (tlp.get_act_patch_attn_head_pattern_by_pos, (0, 2, 1)),
    ("head_out", "all"): (tlp.get_act_patch_attn_head_out_all_pos, None),
    ("head_q", "all"): (tlp.get_act_patch_attn_head_q_all_pos, None),
    ("head_k", "all"): (tlp.get_act_patch_attn_head_k_all_pos, None),
    ("head_v", "all"): (tlp.get_act_patch_attn_head_v_all_pos, None),
    ("head_pattern", "all"): (tlp.get_act_patch_attn_head_pattern_all_pos, None),
}


@pytest.fixture(scope="module")
def patcher(model):
    return Patcher(model, CLEAN, CORRUPT, logit_diff(ANSWER, WRONG))


@pytest.fixture(scope="module")
def tl_inputs(model):
    clean, corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(clean)
    return corrupt, cache


#: per-head, per-position sweeps are checked on this many random cells (TransformerLens runs one
#: forward per cell; the whole grid would take seconds per component)
SAMPLED_CELLS = 24


@pytest.mark.parametrize("component,positions", list(TL_FUNCS))
def test_raw_values_equal_transformer_lens(model, patcher, tl_inputs, component, positions):
    fn, perm = TL_FUNCS[(component, positions)]
    corrupt, cache = tl_inputs
    ours = patcher.sweep(component, positions, normalize=False)
    assert ours.dims == result_dims(component, positions)
    if component.startswith("head_") and positions == "each":
        # TransformerLens on a random sample of cells (its index_df), in its own axis order
        axes = fn.keywords["index_axis_names"]
        sizes = {"layer": model.cfg.n_layers, "pos": patcher.n_pos,
                 "dest_pos": patcher.n_pos, "head": patcher.n_heads(component),
                 "head_index": patcher.n_heads(component)}
        gen = torch.Generator().manual_seed(0)
        idx = torch.stack([torch.randint(sizes[a], (SAMPLED_CELLS,), generator=gen)
                           for a in axes], 1)
        df = pd.DataFrame(idx.numpy(), columns=list(axes))
        with torch.no_grad():
            ref = tlp.generic_activation_patch(
                model.bridge, corrupt, cache, patcher.metric,
                patch_setter=fn.keywords["patch_setter"],
                activation_name=fn.keywords["activation_name"], index_df=df).cpu()
        ours_idx = idx[:, list(perm)] if perm else idx  # ours is [layer, pos, head]
        got = ours.values[tuple(ours_idx.T)]
    else:
        with torch.no_grad():
            ref = fn(model.bridge, corrupt, cache, patcher.metric).cpu()
        got = ours.values
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()


def test_whole_layer_patches_equal_generic_activation_patch(model, patcher, tl_inputs):
    """resid_pre/attn_out/mlp_out at all positions: TransformerLens's generic patcher with a
    setter that copies every position."""
    corrupt, cache = tl_inputs

    def whole(act, index, clean):
        act[:] = clean
        return act

    for comp, name in (("resid_pre", "resid_pre"), ("attn_out", "attn_out"),
                       ("mlp_out", "mlp_out")):
        with torch.no_grad():
            ref = tlp.generic_activation_patch(model.bridge, corrupt, cache, patcher.metric,
                                               whole, name, index_axis_names=("layer",))
        ours = patcher.sweep(comp, "all", normalize=False)
        assert ours.dims == ("layer",)
        assert torch.allclose(ours.values, ref.cpu(), atol=1e-4)


def test_batched_rows_do_not_change_the_numbers(model):
    metric = logit_diff(ANSWER, WRONG)
    small = activation_patching(model, CLEAN, CORRUPT, metric, component="attn_out",
                                normalize=False, max_rows=7)
    big = activation_patching(model, CLEAN, CORRUPT, metric, component="attn_out",
                              normalize=False)
    assert torch.allclose(small.values, big.values, atol=1e-5)


def test_token_ids_give_the_same_numbers_as_strings(model, patcher):
    """clean / corrupt as token ids ([pos] or [1, pos], BOS included) patch as their strings do."""
    clean, corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)  # [1, pos]
    metric = logit_diff(ANSWER, WRONG)
    for c, k in ((clean, corrupt), (clean[0], corrupt[0])):
        res = activation_patching(model, c, k, metric, component="resid_pre", normalize=False)
        assert torch.allclose(res.values, patcher.sweep("resid_pre", normalize=False).values,
                              atol=1e-5)


def test_any_callable_metric(model, patcher):
    """A plain function sees full logits (no last-position shortcut) and gives the same grid."""
    a, w = single_token_id(model, ANSWER), single_token_id(model, WRONG)
    res = activation_patching(model, CLEAN, CORRUPT,
                              lambda lg: (lg[:, -1, a] - lg[:, -1, w]).mean(),
                              component="mlp_out", normalize=False)
    assert res.metric == "<lambda>"
    assert torch.allclose(res.values, patcher.sweep("mlp_out", normalize=False).values, atol=1e-4)


def test_batch_of_prompt_pairs_equals_transformer_lens(model):
    flip = "When John and Mary went to the store, Mary gave a drink to"  # the answer is John
    prompts, corrupts = [CLEAN, flip], [CORRUPT, flip.replace(", Mary", ", John")]
    metric = logit_diff([ANSWER, WRONG], [WRONG, ANSWER]).bind(model)
    ours = activation_patching(model, prompts, corrupts, metric, component="attn_out",
                               normalize=False)
    clean_t, corrupt_t = model.to_tokens(prompts), model.to_tokens(corrupts)
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(clean_t)
        ref = tlp.get_act_patch_attn_out(model.bridge, corrupt_t, cache, metric)
    assert torch.allclose(ours.values, ref.cpu(), atol=1e-4)


def test_normalized_scale_and_labels(model, patcher):
    res = patcher.sweep("resid_pre", "each")
    clean_s, corrupt_s = patcher.str_tokens
    diff = [i for i, (a, b) in enumerate(zip(clean_s, corrupt_s)) if a != b]
    assert len(diff) == 1
    # the residual stream before layer 0 at the only differing token is all that differs
    raw = res.raw()
    assert raw[0, diff[0]].item() == pytest.approx(patcher.clean_value, abs=1e-4)
    others = [i for i in range(len(clean_s)) if i != diff[0]]
    assert (raw[0, others] - patcher.corrupt_value).abs().max() < 1e-4
    assert res.labels["pos"][diff[0]] == f"{clean_s[diff[0]]}/{corrupt_s[diff[0]]}"
    assert torch.allclose(res.raw(), patcher.sweep("resid_pre", normalize=False).values,
                          atol=1e-4)
    df = res.to_dataframe()
    assert len(df) == res.values.numel() and {"layer", "pos", "value"} <= set(df.columns)
    top = res.top(3)["value"].abs().tolist()
    assert top == sorted(top, reverse=True) and top[0] == pytest.approx(res.values.abs().max())


def test_interpolation_between_corrupt_and_clean(model, patcher):
    clean_s, corrupt_s = patcher.str_tokens
    pos = next(i for i, (a, b) in enumerate(zip(clean_s, corrupt_s)) if a != b)
    cell = Cell("resid_pre", 0, pos)
    assert torch.allclose(patcher.logits([cell], 0.0), patcher.corrupt_logits, atol=1e-5)
    assert torch.allclose(patcher.logits([cell], 1.0), patcher.clean_logits, atol=1e-4)
    half = patcher.run([cell], 0.5)
    assert half.value == pytest.approx(patcher.value(patcher.logits([cell], 0.5)))
    assert half.normalized == pytest.approx(patcher.normalize(half.value))
    probs = [p for _, p in half.top]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0
    # several cells in one run, across hooks and components
    two = patcher.run([cell, Cell("head_out", 1, None, 0)], 0.5)
    assert two.value != half.value


def test_alpha_curve_is_one_batched_run_per_alpha(patcher):
    """alpha_curve's row r equals run(cells, alphas[r]) run alone, with a late cell (started
    from the corrupt run's KV cache) and a whole-position head cell."""
    clean_s, corrupt_s = patcher.str_tokens
    pos = next(i for i, (a, b) in enumerate(zip(clean_s, corrupt_s)) if a != b)
    late = [Cell("resid_pre", 1, pos)]
    mixed = [Cell("head_out", 1, None, 0), Cell("attn_out", 0, pos)]
    for cells in (late, mixed):
        alphas = [0.0, 0.3, 0.7, 1.0]
        curve = patcher.alpha_curve(cells, alphas)
        want = [patcher.run(cells, a).value for a in alphas]
        assert curve.tolist() == pytest.approx(want, abs=1e-4)
    none = patcher.alpha_curve([], [0.0, 1.0])
    assert none.tolist() == pytest.approx([patcher.corrupt_value] * 2)


def test_attribution_patching_matches_transformer_lens_nodes(model, patcher):
    """head_out / mlp_out estimates per position equal TL's attribution_patch node scores."""
    clean, corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    tl = attribution_patch(model.bridge, clean, corrupt, patcher.metric).node_scores
    heads = patcher.attribution("head_out", normalize=False).values - patcher.corrupt_value
    mlp = patcher.attribution("mlp_out", normalize=False).values - patcher.corrupt_value
    for node, score in tl.items():
        if node.kind == "attn_head_out":
            assert heads[node.layer, node.position, node.head].item() == pytest.approx(
                score, abs=1e-4)
        elif node.kind == "mlp_out":
            assert mlp[node.layer, node.position].item() == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "head_out"])
def test_attribution_patching_correlates_with_real_patching(model, patcher, component):
    positions = "all" if component == "head_out" else "each"
    exact = patcher.sweep(component, positions)
    est = attribution_patching(model, CLEAN, CORRUPT, logit_diff(ANSWER, WRONG),
                               component=component, positions=positions)
    assert est.method == "attribution patching" and est.values.shape == exact.values.shape
    r = est.correlation(exact)
    print(f"{component}: attribution vs activation patching r = {r:.3f}")
    assert r > 0.5


def test_metric_helpers(model):
    logits = torch.zeros(2, 3, model.cfg.d_vocab)
    a = single_token_id(model, ANSWER)
    w = single_token_id(model, WRONG)
    logits[0, -1, a], logits[1, -1, a], logits[1, -1, w] = 2.0, 1.0, 3.0
    assert logit_diff(ANSWER, WRONG).bind(model)(logits).item() == pytest.approx(0.0)
    assert logit_diff(a, w)(logits).item() == pytest.approx(0.0)  # ids need no model
    assert logit_diff([ANSWER, WRONG], [WRONG, ANSWER]).bind(model).per_row(logits).tolist() \
        == pytest.approx([2.0, 3.0 - 1.0])
    p = token_prob(ANSWER).bind(model)(logits[:1]).item()
    assert p == pytest.approx(torch.softmax(logits[0, -1], -1)[a].item())
    assert kl_to(logits)(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to(logits[0, -1])(logits[:1]).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to(torch.zeros(model.cfg.d_vocab))(logits).item() > 0
    with pytest.raises(ValueError, match="bind the metric"):
        logit_diff(ANSWER, WRONG)(logits)


def test_different_token_lengths_show_both_tokenizations(model):
    longer = CORRUPT.replace("Mary gave", "Mary then gave")
    with pytest.raises(ValueError) as err:
        activation_patching(model, CLEAN, longer, logit_diff(ANSWER, WRONG))
    msg = str(err.value)
    assert "same number of tokens" in msg
    assert f"clean:   {model.to_str_tokens(CLEAN)}" in msg
    assert f"corrupt: {model.to_str_tokens(longer)}" in msg


def test_multi_token_answer_is_refused(model):
    word = " Maryxqzjvwk"
    with pytest.raises(ValueError, match="tokens .*not one"):
        activation_patching(model, CLEAN, CORRUPT, logit_diff(word, WRONG))


def test_bad_component_positions_and_cells(model, patcher):
    with pytest.raises(ValueError, match="Unknown component 'resid'. Use one of"):
        activation_patching(model, CLEAN, CORRUPT, logit_diff(ANSWER, WRONG), component="resid")
    with pytest.raises(ValueError, match="positions must be 'each' or 'all'"):
        patcher.sweep("resid_pre", "some")
    L = model.cfg.n_layers
    with pytest.raises(ValueError, match=f"use 0 .. {L - 1}"):
        patcher.logits([Cell("resid_pre", L, 0)])
    with pytest.raises(ValueError, match="needs a head"):
        patcher.logits([Cell("head_out", 0, 0)])
    with pytest.raises(ValueError, match="same on both|no 0..1 scale|both the clean"):
        activation_patching(model, CLEAN, CLEAN, logit_diff(ANSWER, WRONG))


def test_a_cache_the_bridge_never_filled_means_full_runs(model, patcher, monkeypatch):
    """Under transformers 5.24 the bridge hands back an empty KV cache; patching must then run
    every position rather than continue from a prefix it does not have."""
    from transformers import DynamicCache

    from interp_widgets import model as model_module
    from interp_widgets.model import cache_holds

    past = DynamicCache()
    keys = torch.zeros(1, 2, 5, 4)  # [batch, heads, pos, d_head]
    past.update(keys, keys, 0)
    assert cache_holds(past, 5) and not cache_holds(past, 6)
    assert not cache_holds(DynamicCache(), 5) and not cache_holds(None, 3)

    cached = patcher.sweep("resid_pre", normalize=False)
    monkeypatch.setattr(model_module, "cache_holds", lambda past, n_pos: False)
    fresh = Patcher(model, CLEAN, CORRUPT, logit_diff(ANSWER, WRONG))
    full = fresh.sweep("resid_pre", normalize=False)
    assert fresh._past is False
    torch.testing.assert_close(full.values, cached.values, atol=1e-4, rtol=1e-4)
