"""Transcoders: circuit-tracer's file layout, training, and evaluation checked against plain
PyTorch hooks on the Hugging Face model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import interp_widgets as iw
from interp_widgets.sae import SAEFormatError


@pytest.fixture(scope="module")
def demo_tcs():
    return iw.demo.load_transcoders("per_layer")


@pytest.fixture(scope="module")
def hf_model():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(iw.demo.MODEL_DIR).eval()


def test_per_layer_files_follow_circuit_tracers_layout(tmp_path, demo_tcs):
    demo_tcs.save(tmp_path)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set"
    assert (cfg["feature_input_hook"], cfg["feature_output_hook"]) == ("ln2.hook_normalized",
                                                                       "hook_mlp_out")
    w = load_file(str(tmp_path / "layer_1.safetensors"))
    assert set(w) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    assert w["W_enc"].shape == (512, 128) and w["W_dec"].shape == (512, 128)
    # circuit-tracer encodes with F.linear(x, W_enc, b_enc), decodes acts @ W_dec + b_dec
    x = torch.randn(7, 128)
    pre = torch.nn.functional.linear(x, w["W_enc"], w["b_enc"])
    assert torch.allclose(pre, demo_tcs.encode_pre(1, x), atol=1e-5)
    acts = demo_tcs.encode(1, x)
    assert torch.allclose(acts @ w["W_dec"] + w["b_dec"], demo_tcs.decode(1, [None, acts, None]),
                          atol=1e-5)


def test_clt_and_skip_and_jumprelu_files_round_trip(tmp_path):
    tcs = iw.Transcoders(3, 16, 16, 32, kind="clt", activation="jumprelu", skip=True, seed=1)
    with torch.no_grad():
        tcs.threshold.fill_(0.05)
        tcs.W_skip.normal_()
        tcs.b_enc.normal_()
    tcs.save(tmp_path)
    enc = load_file(str(tmp_path / "W_enc_0.safetensors"))
    assert {"W_enc_0", "b_enc_0", "b_dec_0", "threshold_0"} <= set(enc)
    assert load_file(str(tmp_path / "W_dec_0.safetensors"))["W_dec_0"].shape == (32, 3, 16)
    assert load_file(str(tmp_path / "W_dec_2.safetensors"))["W_dec_2"].shape == (32, 1, 16)
    back = iw.load_transcoders(tmp_path)
    x = [torch.randn(5, 16) for _ in range(3)]
    for a, b in zip(tcs.reconstruct(x), back.reconstruct(x)):
        assert torch.allclose(a, b, atol=1e-6)
    # a layer-0 CLT feature writes to MLP outputs 0, 1 and 2; a layer-2 one to MLP 2 only
    assert list(back.sources(2)) == [0, 1, 2] and list(back.sources(0)) == [0]


def test_folder_without_config_reads_as_circuit_tracer_does(tmp_path, demo_tcs):
    demo_tcs.save(tmp_path)
    (tmp_path / "config.yaml").unlink()
    back = iw.load_transcoders(tmp_path, input_hook="ln2.hook_normalized")
    assert back.activation == "relu" and back.output_hook == "hook_mlp_out"


def test_load_errors_say_what_is_wrong(tmp_path, model, demo_tcs):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        iw.load_transcoders(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no transcoder weights"):
        iw.load_transcoders(tmp_path)
    demo_tcs.save(tmp_path / "a")
    (tmp_path / "a" / "layer_1.safetensors").rename(tmp_path / "a" / "layer_5.safetensors")
    with pytest.raises(FileNotFoundError, match="layer_1.safetensors"):
        iw.load_transcoders(tmp_path / "a")
    small = iw.Transcoders(3, 64, 64, 32, k=4)
    with pytest.raises(ValueError, match=r"blocks.0.ln2.hook_normalized.*\[1, 1, 128\]"):
        small.check_model(model)
    two = iw.Transcoders(2, 128, 128, 32, k=4)
    with pytest.raises(ValueError, match="cover 2 layers but the model has 3"):
        two.check_model(model)
    (tmp_path / "b").mkdir()
    demo_tcs.save(tmp_path / "b")
    (tmp_path / "b" / "config.yaml").write_text("model_kind: weird\n")
    with pytest.raises(SAEFormatError, match="unknown model_kind"):
        iw.load_transcoders(tmp_path / "b")


def _hf_spliced_loss(hf, tcs, docs, layers, tok):
    """Mean next-token loss of the HF model with MLP `layers` replaced by the transcoders,
    through plain forward hooks (the transcoder reads ln_2's normalized input, i.e. ln_2's
    output with its weight and bias taken off; BOS position left alone)."""
    handles = []
    for layer in layers:
        block = hf.transformer.h[layer]

        def hook(mod, args, out, block=block, layer=layer):
            u = args[0]
            x = (u - block.ln_2.bias) / block.ln_2.weight
            acts = [None] * tcs.n_layers
            acts[layer] = tcs.encode(layer, x)
            new = tcs.decode(layer, acts)
            new[:, 0] = out[:, 0]
            return new
        handles.append(block.mlp.register_forward_hook(hook))
    losses = []
    try:
        with torch.no_grad():
            for d in docs:
                ids = tok(d, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([[tok.bos_token_id] + ids])
                logits = hf(ids).logits
                losses.append(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:],
                                                                reduction="none"))
    finally:
        for h in handles:
            h.remove()
    return float(torch.cat(losses).mean())


def test_evaluation_matches_plain_hooks_on_the_hf_model(model, demo_tcs, hf_model):
    docs = iw.demo.corpus(6, seed=77)
    ev = iw.evaluate_transcoders(model, demo_tcs, docs, progress=False)
    tok = model.tokenizer
    assert ev["layer 1"].ce_clean == pytest.approx(_hf_spliced_loss(hf_model, demo_tcs, docs,
                                                                    [], tok), abs=1e-4)
    assert ev["layer 1"].ce_spliced == pytest.approx(
        _hf_spliced_loss(hf_model, demo_tcs, docs, [1], tok), abs=1e-3)
    assert ev["all"].ce_spliced == pytest.approx(
        _hf_spliced_loss(hf_model, demo_tcs, docs, [0, 1, 2], tok), abs=1e-3)
    # FVE of MLP 2's output, pooled, from the HF model's own MLP input and output
    xs, ys = [], []
    block = hf_model.transformer.h[2]

    def grab(mod, args, out):
        xs.append(args[0])
        ys.append(out)

    h = block.mlp.register_forward_hook(grab)
    with torch.no_grad():
        for d in docs:
            ids = tok(d, add_special_tokens=False)["input_ids"]
            hf_model(torch.tensor([[tok.bos_token_id] + ids]))
    h.remove()
    x = torch.cat([(u[0, 1:] - block.ln_2.bias) / block.ln_2.weight for u in xs])
    y = torch.cat([o[0, 1:] for o in ys]).double()
    y = y - y.mean(-1, keepdim=True)  # the folded model's W_out is centred (DESIGN.md)
    with torch.no_grad():
        acts = demo_tcs.encode(2, x)
        r = demo_tcs.decode(2, [None, None, acts]).double()
    fve = 1 - ((y - r) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert ev["layer 2"].fve == pytest.approx(float(fve), abs=1e-4)
    assert ev["layer 2"].l0 == pytest.approx(float((acts > 0).sum(-1).float().mean()), abs=1e-3)
    # the demo set is good: every MLP replaced at once recovers most of the CE loss
    assert ev["all"].ce_recovered > 0.9


@pytest.mark.parametrize("kind,arch", [("per_layer", "topk"), ("clt", "jumprelu")])
def test_training_learns_the_mlps(model, kind, arch, tmp_path):
    docs = iw.demo.corpus(120, seed=11)
    tcs = iw.train_transcoders(model, docs, kind=kind, arch=arch, d_transcoder=128, k=8,
                               total_samples=40_000, batch_size=512, progress=False,
                               device="cpu", skip=arch == "jumprelu", checkpoint_dir=tmp_path)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "trainer_state.pt").exists()
    ev = iw.evaluate_transcoders(model, tcs, iw.demo.corpus(8, seed=12), progress=False)
    assert ev["all"].fve > 0.6
    assert ev["all"].ce_spliced < ev["all"].ce_zero
    if arch == "topk":
        assert ev["layer 0"].l0 <= 8 + 1e-6
    # the checkpoint on disk is the exported set
    back = iw.load_transcoders(tmp_path)
    x = torch.randn(4, 128)
    assert torch.allclose(back.encode(1, x), tcs.encode(1, x), atol=1e-5)


def test_training_errors(model):
    docs = ["a b c"]
    with pytest.raises(ValueError, match="need k"):
        iw.train_transcoders(model, docs, d_transcoder=8, total_samples=10, batch_size=4)
    with pytest.raises(ValueError, match="kind must be"):
        iw.train_transcoders(model, docs, kind="x", d_transcoder=8, k=2, total_samples=10)
    with pytest.raises(ValueError, match="corpus is empty"):
        iw.train_transcoders(model, [], d_transcoder=8, k=2, total_samples=10, batch_size=4)


def test_demo_transcoders_are_small_and_documented():
    root = iw.demo.TRANSCODERS_DIR
    size = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
    assert size < 6 * 2**20
    text = (root / "README.md").read_text()
    assert "| all |" in text and "ce_recovered" in text
    assert np.isfinite(iw.demo.load_transcoders("clt").W_dec[0].detach().numpy()).all()
