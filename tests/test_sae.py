"""SAE class, SAELens-format files and splicing.

SAELens compatibility is checked against files that sae-lens 6.54 wrote itself, with its own
encodings (tests/data/saelens_6_54). Splicing uses the demo model when it is there, else a tiny
random GPT-2."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp_widgets as iw
from interp_widgets.sae import (
    SAE,
    SAEFormatError,
    SAEShapeError,
    ablate,
    clamp,
    load_sae,
    run_with_saes,
    spliced,
    steer,
)

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "saelens_6_54"  # scripts/saelens_interop.py write
#: a virtualenv with sae-lens (scripts/saelens_interop.py says how to make it)
SAELENS_PYTHON = Path(os.environ.get("IW_SAELENS_PYTHON",
                                     Path(__file__).parents[1] / ".venv-saelens/bin/python"))
PROMPTS = ["When Mary and John went to the store, John gave a drink to", "The cat sat"]


def model_for_tests(request, tmp_path_factory) -> iw.Model:
    """The demo model (the session fixture) when it is there, else a tiny random GPT-2."""
    from test_widgets import tiny_gpt2

    if (iw.demo.MODEL_DIR / "config.json").exists():
        return request.getfixturevalue("model")
    return iw.load_model(str(tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))), device="cpu")


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    return model_for_tests(request, tmp_path_factory)


def random_sae(arch: str, d_in: int = 16, d_sae: int = 40, **kw) -> SAE:
    sae = SAE(d_in, d_sae, arch=arch, k=5 if arch == "topk" else None,
              hook_name="blocks.0.hook_resid_pre", seed=0, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return sae


# ---- SAELens format ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["standard_ln", "topk_rescale", "jumprelu", "gated"])
def test_reads_saelens_files_and_encodes_exactly_as_saelens(name):
    sae = load_sae(DATA / name)
    exp = load_file(str(DATA / name / "expected.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(exp["x"]), exp["acts"], rtol=0, atol=1e-6)
        torch.testing.assert_close(sae(exp["x"]), exp["recon"], rtol=0, atol=1e-5)
    assert sae.hook_name == "blocks.0.hook_resid_pre" and sae.model_name == "toy"


@pytest.mark.skipif(not SAELENS_PYTHON.exists(), reason=(
    f"no SAELens virtualenv at {SAELENS_PYTHON}: make one as scripts/saelens_interop.py says, "
    "or point IW_SAELENS_PYTHON at its python"))
def test_saelens_reads_what_we_save(tmp_path):
    """SAE.save's files, loaded by SAELens itself (in its own virtualenv), encode and reconstruct
    as ours do."""
    g = torch.Generator().manual_seed(3)
    ours = {}
    for arch in ("standard", "topk", "jumprelu", "gated"):
        sae, x = random_sae(arch), torch.randn(8, 16, generator=g)
        sae.save(tmp_path / arch)
        save_file({"x": x}, str(tmp_path / arch / "input.safetensors"))
        ours[arch] = sae, x
    script = Path(__file__).parents[1] / "scripts" / "saelens_interop.py"
    done = subprocess.run([str(SAELENS_PYTHON), str(script), "read", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for arch, (sae, x) in ours.items():
        theirs = load_file(str(tmp_path / arch / "saelens.safetensors"))
        with torch.no_grad():
            torch.testing.assert_close(sae.encode(x), theirs["acts"], rtol=0, atol=1e-6)
            torch.testing.assert_close(sae(x), theirs["recon"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated"])
def test_save_load_round_trip(tmp_path, arch):
    sae = random_sae(arch)
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == arch and cfg["dtype"] == "float32"
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_pre"
    assert "sae_lens_version" in cfg["metadata"]
    back = load_sae(tmp_path / "s")
    x = torch.randn(20, 16)
    with torch.no_grad():
        assert torch.equal(back.encode(x), sae.encode(x))
    assert sorted(load_file(str(tmp_path / "s" / "sae_weights.safetensors"))) == sorted(
        n for n, _ in sae.named_parameters())
    assert not list(tmp_path.glob("s/.*tmp"))  # atomic writes leave no temp files


def test_reads_pre_6_layout(tmp_path):
    """Old files: hook_point at the top level, TopK as activation_fn_kwargs, bool normalization,
    log_threshold-free standard weights; no metadata block."""
    sae = random_sae("topk")
    sae.save(tmp_path / "new")
    old = {"d_in": 16, "d_sae": 40, "dtype": "float32", "hook_point": "blocks.0.hook_resid_pre",
           "model_name": "gpt2", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5},
           "normalize_activations": False, "apply_b_dec_to_input": True,
           "sae_lens_training_version": "3.0.0"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "cfg.json").write_text(json.dumps(old))
    (tmp_path / "old" / "sae_weights.safetensors").write_bytes(
        (tmp_path / "new" / "sae_weights.safetensors").read_bytes())
    back = load_sae(tmp_path / "old")
    assert (back.arch, back.k, back.hook_name, back.model_name) == (
        "topk", 5, "blocks.0.hook_resid_pre", "gpt2")
    x = torch.randn(8, 16)
    with torch.no_grad():
        assert torch.equal(back.encode(x), sae.encode(x))


def test_log_threshold_is_read(tmp_path):
    sae = random_sae("jumprelu")
    sae.save(tmp_path)
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    w["log_threshold"] = w.pop("threshold").abs().log()
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    torch.testing.assert_close(load_sae(tmp_path).threshold, sae.threshold.abs())


def test_loading_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sae(tmp_path / "nowhere")
    random_sae("standard").save(tmp_path / "a")
    (tmp_path / "a" / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing sae_weights.safetensors"):
        load_sae(tmp_path / "a")
    random_sae("standard").save(tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "cfg.json").read_text())
    (tmp_path / "b" / "cfg.json").write_text(json.dumps({**cfg, "architecture": "matryoshka"}))
    with pytest.raises(SAEFormatError, match="unknown SAE architecture 'matryoshka'.*topk"):
        load_sae(tmp_path / "b")
    (tmp_path / "b" / "cfg.json").write_text(json.dumps({**cfg, "d_in": 17}))
    with pytest.raises(SAEFormatError, match=r"W_dec has shape \[40, 16\].*needs \[40, 17\]"):
        load_sae(tmp_path / "b")
    del cfg["dtype"]
    (tmp_path / "b" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="no 'dtype' field"):
        assert load_sae(tmp_path / "b").dtype == torch.float32


def test_topk_keeps_top_k_preactivations_then_relu():
    """SAELens's definition: top k of the pre-activations, then ReLU, so a token with fewer than
    k positive pre-activations has fewer than k active latents."""
    sae = random_sae("topk")
    with torch.no_grad():
        sae.b_enc.fill_(-3.0)
        x = torch.randn(50, 16)
        pre = sae.encode_pre(x)
        acts = sae.encode(x)
    top = pre.topk(5, dim=-1)
    expected = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    assert torch.equal(acts, expected)
    assert (acts != 0).sum(-1).min() < 5


def test_constructor_errors():
    with pytest.raises(ValueError, match="Unknown SAE architecture 'relu'"):
        SAE(4, 8, arch="relu")
    with pytest.raises(ValueError, match="needs k between 1 and d_sae = 8"):
        SAE(4, 8, arch="topk")
    with pytest.raises(SAEShapeError, match="d_in = 4.*last dim 5"):
        SAE(4, 8).encode(torch.zeros(2, 5))


# ---- splicing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hook(lm):
    return "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def sae(lm, hook):
    return SAE(lm.cfg.d_model, 4 * lm.cfg.d_model, arch="topk", k=4, hook_name=hook, seed=0)


def test_run_with_saes_equals_spliced_context(lm, sae, hook):
    clean = lm.run(PROMPTS, names=[hook])
    a = lm.run(PROMPTS, saes=[sae], names=[hook])
    with spliced(lm, [sae]):
        b = lm.run(PROMPTS, names=[hook])
    torch.testing.assert_close(a.logits, b.logits)
    assert not torch.allclose(a.logits, clean.logits)
    # the cached activation at the hook is the reconstruction
    torch.testing.assert_close(a.cache[hook], sae(clean.cache[hook]), atol=1e-5, rtol=1e-5)
    # hooks are gone afterwards
    torch.testing.assert_close(lm.run(PROMPTS).logits, clean.logits)


def test_error_term_restores_the_clean_run(lm, sae):
    clean = lm.run(PROMPTS)
    run = run_with_saes(lm, PROMPTS, [sae], use_error_term=True)
    torch.testing.assert_close(run.logits, clean.logits, atol=1e-4, rtol=1e-4)


def test_model_run_takes_the_error_term_and_edits(lm, sae, hook):
    """model.run(saes=...) splices as run_with_saes does, error term and edits included."""
    clean = lm.run(PROMPTS)
    torch.testing.assert_close(lm.run(PROMPTS, saes=[sae], use_error_term=True).logits,
                               clean.logits, atol=1e-4, rtol=1e-4)
    edits = [steer(sae, 3, 2.0, positions=[1])]
    a = lm.run(PROMPTS, saes=[sae], use_error_term=True, edits=edits, names=[hook])
    b = run_with_saes(lm, PROMPTS, [sae], use_error_term=True, edits=edits, names=[hook])
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.cache[hook], b.cache[hook])
    assert not torch.allclose(a.logits, clean.logits)
    with pytest.raises(ValueError, match="pass saes"):
        lm.run(PROMPTS, use_error_term=True)


def test_sae_hooks_are_cached(lm, sae, hook):
    names = [f"{hook}.hook_sae_acts_post", f"{hook}.hook_sae_error", hook]
    run = run_with_saes(lm, PROMPTS, [sae], names=names)
    assert list(run.cache) == names
    acts = run.cache[names[0]]
    assert acts.shape == (*run.tokens.shape, sae.d_sae)
    assert (acts != 0).sum(-1).max() <= 4
    with pytest.raises(ValueError, match="no SAE given reads"):
        run_with_saes(lm, PROMPTS, [sae], names=["blocks.0.hook_resid_pre.hook_sae_acts_post"])


def test_feature_edits(lm, sae, hook):
    clean = lm.run(PROMPTS, names=[hook])
    run = run_with_saes(lm, PROMPTS, [sae], use_error_term=True, names=[hook],
                        edits=[steer(sae, 3, 2.0, positions=[1])])
    diff = run.cache[hook] - clean.cache[hook]
    torch.testing.assert_close(diff[:, 1], (2.0 * sae.W_dec[3]).detach().expand(2, -1),
                               atol=1e-5, rtol=1e-5)
    assert diff[:, 0].abs().max() < 1e-5 and diff[:, 2:].abs().max() < 1e-5
    acts_name = f"{hook}.hook_sae_acts_post"
    clamped = run_with_saes(lm, PROMPTS, [sae], names=[acts_name], edits=[clamp(sae, 7, 5.0)])
    assert (clamped.cache[acts_name][..., 7] == 5.0).all()
    top = int(clamped.cache[acts_name][0, 2].topk(2).indices[-1])
    ablated = run_with_saes(lm, PROMPTS, [sae], names=[acts_name], edits=[ablate(sae, top)])
    assert (ablated.cache[acts_name][..., top] == 0).all()
    with pytest.raises(IndexError, match="out of range"):
        ablate(sae, sae.d_sae)


def test_splicing_errors_name_the_hook_and_both_shapes(lm, hook):
    wide = SAE(lm.cfg.d_model + 3, 8, hook_name=hook)
    with pytest.raises(SAEShapeError, match=rf"{hook}.*d_in = {lm.cfg.d_model + 3}.*"
                                            rf"last dim {lm.cfg.d_model}"):
        lm.run(PROMPTS, saes=[wide])
    with pytest.raises(iw.UnknownHookError, match="blocks.1.hook_resid_pre"):
        lm.run(PROMPTS, saes=[SAE(lm.cfg.d_model, 8, hook_name="blocks.1.hook_resid_pr")])
    with pytest.raises(ValueError, match="no hook_name"):
        lm.run(PROMPTS, saes=[SAE(lm.cfg.d_model, 8)])


# ---- feature analysis (analysis/features.py) -----------------------------------------------------

def test_feature_logit_effect_and_nearest(lm, sae):
    from interp_widgets.analysis import feature_logit_effect, nearest_features

    eff = feature_logit_effect(lm, sae, 5, k=3)
    assert eff.effect.shape == (lm.cfg.d_vocab,) and len(eff.top) == 3
    assert eff.top["effect"].iloc[0] == pytest.approx(float(eff.effect.max()))
    near = nearest_features(sae, 5, k=4)
    assert 5 not in near["feature"].tolist() and near["cosine"].is_monotonic_decreasing
    with pytest.raises(IndexError, match="out of range"):
        nearest_features(sae, sae.d_sae)


def test_active_features_and_intervention(lm, sae):
    from interp_widgets.analysis import active_features, intervene_on_feature, prompt_feature_acts

    toks, acts = prompt_feature_acts(lm, sae, PROMPTS[0])
    assert acts.shape == (len(toks), sae.d_sae) and ((acts != 0).sum(-1) <= 4).all()
    top = active_features(lm, sae, PROMPTS[0], pos=-1, k=3)
    assert top["activation"].tolist() == sorted(acts[-1][acts[-1] != 0].tolist(),
                                                reverse=True)[:3]
    by_logit = active_features(lm, sae, PROMPTS[0], pos=-1, by="logit")
    assert by_logit["logit_contribution"].abs().is_monotonic_decreasing
    f = int(top["feature"].iloc[0])
    same = intervene_on_feature(lm, sae, PROMPTS[0], f, mode="clamp",
                                value=float(top["activation"].iloc[0]), pos=-1)
    assert same.kl >= 0 and len(same.before) == len(same.after) == 5
    big = intervene_on_feature(lm, sae, PROMPTS[0], f, mode="steer", value=50.0)
    assert big.kl > same.kl
    with pytest.raises(ValueError, match="needs a value"):
        intervene_on_feature(lm, sae, PROMPTS[0], f, mode="clamp")


def test_label_selectivity(lm, sae, hook):
    from interp_widgets.analysis import label_selectivity

    labelled = [(p, lab) for p, lab in zip(PROMPTS * 3, ["a", "b"] * 3)]
    df = label_selectivity(lm, labelled, "a", sae=sae)
    assert len(df) == sae.d_sae and df["selectivity"].is_monotonic_decreasing
    top = df.iloc[0]
    assert (top["mean_in"] > top["mean_out"]) == (top["selectivity"] > 0)
    neurons = label_selectivity(lm, labelled, "b", hook="blocks.0.mlp.hook_post")
    assert len(neurons) == lm.cfg.d_mlp
    with pytest.raises(ValueError, match="exactly one of"):
        label_selectivity(lm, labelled, "a")
    with pytest.raises(ValueError, match="No document is labelled 'c'"):
        label_selectivity(lm, labelled, "c", sae=sae)


def test_load_with_model_checks_the_hook(lm, hook, tmp_path):
    SAE(lm.cfg.d_model + 1, 8, hook_name=hook).save(tmp_path / "wide")
    with pytest.raises(SAEShapeError, match=rf"{hook}.*d_in = {lm.cfg.d_model + 1}"):
        load_sae(tmp_path / "wide", model=lm)
    SAE(lm.cfg.d_model, 8, hook_name=hook).save(tmp_path / "ok")
    assert load_sae(tmp_path / "ok", model=lm).d_in == lm.cfg.d_model


def test_hook_z_sae_splices_flattened_heads(lm):
    h = "blocks.0.attn.hook_z"
    width = lm.cfg.n_heads * lm.cfg.d_head
    sae = SAE(width, 16, arch="topk", k=2, hook_name=h, reshape_activations="hook_z", seed=0)
    clean = lm.run(PROMPTS[0])
    run = run_with_saes(lm, PROMPTS[0], [sae], use_error_term=True,
                        names=[f"{h}.hook_sae_acts_post"])
    torch.testing.assert_close(run.logits, clean.logits, atol=1e-4, rtol=1e-4)
    assert run.cache[f"{h}.hook_sae_acts_post"].shape == (*run.tokens.shape, 16)


def test_demo_sae_fits_the_committed_demo_model(model):
    """The shipped SAE was trained on the shipped model: on documents it never saw it explains
    most of the variance and recovers most of the loss (an SAE left over from an earlier model
    would not). Retrain both together: scripts/train_demo_model.py, then
    scripts/train_demo_sae.py; interp_widgets/demo/sae/README.md has its full evaluation."""
    from interp_widgets.sae import evaluate_sae

    sae = iw.demo.load_sae()
    ev = evaluate_sae(model, sae, iw.demo.corpus(40, seed=4242), progress=False)
    assert ev.fve > 0.85 and ev.ce_recovered > 0.95, ev.summary()
