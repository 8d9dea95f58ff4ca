"""The model layer: runs equal TransformerLens's, batches equal single runs, bad input explained."""

import warnings

import pytest
import torch

import interp_widgets as iw

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The cat sat.",
    "She ate an apple and then she ate another",
]
NAMES = ["blocks.0.attn.hook_pattern", "blocks.1.mlp.hook_post", "blocks.0.hook_resid_post"]


def test_run_matches_bridge_run_with_cache(model):
    run = model.run(PROMPTS[0], names=NAMES)
    tokens = model.bridge.to_tokens(PROMPTS[0])
    assert torch.equal(run.tokens, tokens)
    with torch.no_grad():
        logits, cache = model.bridge.run_with_cache(tokens, names_filter=NAMES)
    torch.testing.assert_close(run.logits, logits)
    assert list(run.cache) == NAMES, "the cache holds exactly the hooks asked for"
    for name in NAMES:
        torch.testing.assert_close(run.cache[name], cache[name])


def test_no_names_means_empty_cache(model):
    assert model.run(PROMPTS[1]).cache == {}


def test_padded_batch_equals_one_by_one(model):
    batch = model.run(PROMPTS, names=NAMES)
    assert not batch.single and len(batch.str_tokens) == len(PROMPTS)
    lengths = batch.lengths
    assert len(set(lengths)) > 1, "prompts of different lengths exercise the padding"
    for b, prompt in enumerate(PROMPTS):
        one = model.run(prompt, names=NAMES)
        n = lengths[b]
        assert one.tokens.shape[1] == n
        assert batch.str_tokens[b] == one.str_tokens
        torch.testing.assert_close(batch.logits[b, :n], one.logits[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batch.loss[b, :n], one.loss[0], atol=1e-4, rtol=1e-4,
                                   equal_nan=True)
        assert torch.isnan(batch.loss[b, n:]).all(), "padding has no loss"
        for name in NAMES:
            got = batch.cache[name][b]
            want = one.cache[name][0]
            if name.endswith("hook_pattern"):
                got = got[:, :n, :n]
            else:
                got = got[:n]
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_loss_matches_transformer_lens(model):
    run = model.run(PROMPTS[2])
    with torch.no_grad():
        tl_loss = model.bridge(run.tokens, return_type="loss", loss_per_token=True)
    assert torch.isnan(run.loss[0, 0])
    torch.testing.assert_close(run.loss[0, 1:], tl_loss[0], atol=1e-4, rtol=1e-4)


def test_top_predictions_are_the_softmax(model):
    run = model.run(PROMPTS[0])
    preds = run.top_predictions(pos=-1, k=5)
    probs = run.logits[0, -1].softmax(-1)
    top = probs.topk(5)
    assert [p for _, p in preds] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert [s for s, _ in preds] == model.to_str_tokens(top.indices)
    assert preds == sorted(preds, key=lambda x: -x[1])
    with pytest.raises(IndexError, match="out of range"):
        run.top_predictions(pos=1000)


def test_token_ids_equal_text(model):
    by_text = model.run(PROMPTS[1])
    by_ids = model.run(by_text.tokens[0])
    by_list = model.run(by_text.tokens[0].tolist())
    torch.testing.assert_close(by_ids.logits, by_text.logits)
    torch.testing.assert_close(by_list.logits, by_text.logits)
    assert by_ids.single and by_ids.str_tokens == by_text.str_tokens
    assert by_text.str_tokens[0] == model.tokenizer.bos_token


def test_hook_name_helper_and_hook_names(model):
    assert iw.hook_name("resid_pre", 3) == "blocks.3.hook_resid_pre"
    assert iw.hook_name("pattern", 1) == "blocks.1.attn.hook_pattern"
    names = model.hook_names()
    for layer in range(model.cfg.n_layers):
        for short in ("resid_pre", "attn_out", "mlp_out", "pattern", "post"):
            assert iw.hook_name(short, layer) in names


# ---- bad input ----------------------------------------------------------------------------------


def test_empty_prompt_says_so(model):
    with pytest.raises(ValueError, match="empty"):
        model.run("")
    with pytest.raises(ValueError, match="item 1"):
        model.run(["fine", ""])
    with pytest.raises(ValueError, match="empty"):
        model.run([])


def test_too_long_input_is_truncated_with_a_warning(model):
    n_ctx = model.cfg.n_ctx
    ids = torch.randint(10, 100, (n_ctx + 37,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = model.run(ids)
    messages = [str(w.message) for w in caught]
    assert any("37 tokens were cut" in m for m in messages), messages
    assert run.tokens.shape == (1, n_ctx)


def test_unknown_hook_lists_nearest_names(model):
    with pytest.raises(iw.UnknownHookError) as err:
        model.run("hello", names=["blocks.1.mlp.hook_pst"])
    assert "blocks.1.mlp.hook_post" in str(err.value)
    assert err.value.nearest[0] == "blocks.1.mlp.hook_post"
    assert isinstance(err.value, ValueError)


def test_bad_device_and_dtype_say_what_is_available():
    missing = "cuda" if not torch.cuda.is_available() else "cuda:99"
    with pytest.raises(ValueError, match="Available devices here: .*cpu"):
        iw.load_model("demo", device=missing)
    with pytest.raises(ValueError, match="Available devices here"):
        iw.load_model("demo", device="not-a-device")
    with pytest.raises(ValueError, match="Use one of: .*float16"):
        iw.load_model("demo", dtype="float8")


def test_token_ids_out_of_vocabulary(model):
    with pytest.raises(ValueError, match="vocabulary"):
        model.run(torch.tensor([0, model.cfg.d_vocab + 5]))


def test_missing_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        iw.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        iw.load_model(tmp_path / "nope")


# ---- loading ------------------------------------------------------------------------------------


def test_load_local_hf_folder_saved_with_save_pretrained(model, tmp_path):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(iw.demo.MODEL_DIR)
    tok = AutoTokenizer.from_pretrained(iw.demo.MODEL_DIR)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    local = iw.load_model(tmp_path, device="cpu")
    assert isinstance(local, iw.Model) and local.name == str(tmp_path)
    torch.testing.assert_close(local.run(PROMPTS[0]).logits, model.run(PROMPTS[0]).logits)
    with torch.no_grad():
        hf_logits = hf(model.run(PROMPTS[0]).tokens).logits
    # LayerNorm folding recentres the unembedding: compare log-probabilities with plain HF
    torch.testing.assert_close(local.run(PROMPTS[0]).logits.log_softmax(-1),
                               hf_logits.log_softmax(-1), atol=1e-4, rtol=1e-4)


def test_fold_ln_switch_keeps_outputs(model):
    unfolded = iw.load_model("demo", device="cpu", fold_ln=False)
    a, b = unfolded.run(PROMPTS[0]).logits, model.run(PROMPTS[0]).logits
    # folding recentres the unembedding, so compare log-probabilities, not raw logits
    torch.testing.assert_close(a.log_softmax(-1), b.log_softmax(-1), atol=1e-3, rtol=1e-3)


def test_model_wraps_an_existing_bridge(model):
    wrapped = iw.Model(model.bridge)
    torch.testing.assert_close(wrapped.run(PROMPTS[1]).logits, model.run(PROMPTS[1]).logits)
    assert "layers" in repr(wrapped)
