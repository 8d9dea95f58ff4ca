"""train_sae: ground-truth recovery on planted features, Gao et al.'s pieces, checkpoints, sources.

Toy ground truth (Sharkey et al. style): 256 unit-norm features in 64 dimensions, about 4 active
per sample. Sample budget: 100,000 samples (98 steps of 1,024), a TopK SAE with 512 latents and
k = 4 must reach a mean best cosine >= 0.95 with the planted features (it reaches about 0.997 in
a few seconds on one CPU thread)."""

import pytest
import torch

from interp_widgets.sae import SAE, load_sae, train_sae
from interp_widgets.sae.activations import shuffled
from interp_widgets.sae.toy import planted_activations, planted_features, recovery
from interp_widgets.sae.train import STATE_FILE, TrainConfig, _Trainer, geometric_median

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():
    feats = planted_features(256, 64, seed=0)
    return feats, planted_activations(feats, 60_000, active=4, seed=0)


def test_topk_recovers_planted_features_within_budget(toy):
    feats, x = toy
    sae = train_sae(x, arch="topk", d_sae=512, k=4, total_samples=100_000, batch_size=1024,
                    progress=False)
    assert recovery(sae.W_dec.detach(), feats) >= 0.95
    norms = sae.W_dec.detach().norm(dim=-1)  # unit rows, divided by the folded input scale
    assert float(norms.std() / norms.mean()) < 1e-4
    with torch.no_grad():
        assert (sae.encode(x[:100]) != 0).sum(-1).max() <= 4


def test_geometric_median_resists_outliers():
    x = torch.randn(500, 3) * 0.1
    x[:100] += 50.0  # a fifth of the points far away
    assert geometric_median(x).norm() < 0.5 < x.mean(0).norm()


def test_auxk_trains_only_dead_latents():
    cfg = TrainConfig(arch="topk", d_in=8, d_sae=32, k=2, l1_coefficient=None,
                      total_samples=1000, batch_size=64, lr=1e-3, seed=0,
                      auxk_coefficient=1 / 32, dead_after=10)
    trainer = _Trainer(cfg, torch.device("cpu"))
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:5] = True
    x = torch.randn(64, 8)
    aux = trainer._auxk(trainer.sae.encode_pre(x), dead, torch.randn(64, 8))
    aux.backward()
    grad_rows = trainer.sae.W_dec.grad.norm(dim=-1)
    assert aux > 0 and (grad_rows[:5] > 0).any() and (grad_rows[5:] == 0).all()


def test_encoder_starts_as_the_decoders_transpose():
    cfg = TrainConfig(arch="topk", d_in=8, d_sae=32, k=2, l1_coefficient=None,
                      total_samples=1000, batch_size=64, lr=1e-3, seed=0,
                      auxk_coefficient=1 / 32, dead_after=10)
    sae = _Trainer(cfg, torch.device("cpu")).sae
    assert torch.equal(sae.W_enc.detach(), sae.W_dec.detach().T)
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=-1), torch.ones(32))


def test_decoder_gradient_loses_its_component_along_each_row():
    """Gao et al.: with unit-norm decoder rows, the gradient parallel to a row would only change
    its norm (undone by the renormalisation), so it is projected out before the step."""
    from interp_widgets.sae.train import _remove_parallel_grad

    w = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(16, 8), dim=-1))
    g = torch.randn(16, 8)
    w.grad = g.clone()
    _remove_parallel_grad(w)
    rows = w.detach()
    assert (w.grad * rows).sum(-1).abs().max() < 1e-6  # nothing left along each row
    # what is left is the gradient minus its projection on each row, computed independently
    want = torch.stack([gi - (gi @ ri) * ri for gi, ri in zip(g, rows)])
    torch.testing.assert_close(w.grad, want)


def test_checkpoint_and_resume(tmp_path, toy):
    _, x = toy
    kw = dict(arch="topk", d_sae=64, k=4, batch_size=256, progress=False, checkpoint_dir=tmp_path)
    first = train_sae(x, total_samples=2048, **kw)
    assert {p.name for p in tmp_path.iterdir()} >= {"cfg.json", "sae_weights.safetensors",
                                                     STATE_FILE}
    torch.testing.assert_close(load_sae(tmp_path).W_enc, first.W_enc)
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["samples"] == 2048
    longer = train_sae(x, total_samples=4096, **kw)  # resumes at 2048
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["samples"] == 4096
    assert not torch.equal(longer.W_enc, first.W_enc)
    with pytest.raises(ValueError, match="k: checkpoint 4, now 8"):
        train_sae(x, total_samples=4096, **{**kw, "k": 8})


def test_standard_sae_trains_and_is_sparse(toy):
    feats, x = toy
    sae = train_sae(x, arch="standard", d_sae=256, l1_coefficient=2.0, total_samples=40_000,
                    batch_size=1024, progress=False)
    assert sae.arch == "standard"
    with torch.no_grad():
        l0 = float((sae.encode(x[:1000]) > 0).sum(-1).float().mean())
    assert l0 < 256 / 2


def test_iterable_source_and_shuffle_buffer(toy):
    _, x = toy
    rows = torch.arange(1000.0)[:, None].repeat(1, 3)
    out = torch.cat(list(shuffled(rows.split(100), 50, 400, generator=torch.Generator())))
    assert len(out) == 1000 and sorted(out[:, 0].tolist()) == rows[:, 0].tolist()
    assert not torch.equal(out, rows)  # mixed across chunks
    sae = train_sae([x[:5000], x[5000:10000]], d_sae=64, k=4, total_samples=4096,
                    batch_size=512, progress=False)
    assert isinstance(sae, SAE) and sae.d_in == 64


def test_model_corpus_source(tmp_path):
    from test_widgets import tiny_gpt2

    import interp_widgets as iw

    model = iw.load_model(str(tiny_gpt2(tmp_path / "m")), device="cpu")
    hook = "blocks.0.hook_resid_post"
    docs = ["When Mary and John went to the store, John gave a drink to Mary."] * 20
    sae = train_sae((model, docs), hook=hook, d_sae=64, k=4, total_samples=1024,
                    batch_size=128, progress=False)
    assert sae.hook_name == hook and sae.d_in == model.cfg.d_model and sae.model_name
    with pytest.raises(ValueError, match="needs hook="):
        train_sae((model, docs), d_sae=64, k=4, total_samples=1024, batch_size=128)


def test_training_errors(toy):
    _, x = toy
    with pytest.raises(ValueError, match="needs k"):
        train_sae(x, d_sae=64, total_samples=1024, batch_size=256)
    with pytest.raises(ValueError, match="'topk', 'standard' or 'jumprelu', not 'gated'"):
        train_sae(x, arch="gated", d_sae=64, total_samples=1024, batch_size=256)
    with pytest.raises(TypeError, match="source must be"):
        train_sae("acts", d_sae=64, k=4, total_samples=1024, batch_size=256)
