"""Widget classes: what they sync up front, what they answer on request, and their errors.

Uses the demo model when it is there, else a tiny random GPT-2 built in a temp folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets as t

import interp_widgets as iw
from interp_widgets.analysis.attention import attention_patterns
from interp_widgets.analysis.logit_lens import logit_lens
from interp_widgets.widgets import AttentionView, LogitLens, TokenHeatmap
from interp_widgets.widgets._codec import decode_array, decode_strings, extract_buffers

PROMPT = "When Mary and John went to the store, John gave a drink to"
LONG_PROMPT = " ".join(["When Mary and John went to the store, John gave a drink to Mary."] * 4)


def tiny_gpt2(folder: Path) -> Path:
    """A random 2-layer GPT-2 with a small byte-level BPE, saved in Hugging Face format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    eot = "<|endoftext|>"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.train_from_iterator([PROMPT + " Mary.\n"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=[eot], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=eot, eos_token=eot, unk_token=eot,
                            pad_token=eot)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2,
                               n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=0)
                    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm(request, tmp_path_factory):
    if (iw.demo.MODEL_DIR / "config.json").exists():
        return request.getfixturevalue("model")
    return iw.load_model(str(tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))), device="cpu")


def synced_arrays(widget):
    """Every encoded array in the widget's synced state: [(trait, shape, nbytes)]."""
    out = []

    def walk(name, v):
        if isinstance(v, dict) and "buffer" in v and "dtype" in v:
            out.append((name, v["shape"], len(v["buffer"])))
        elif isinstance(v, dict):
            for x in v.values():
                walk(name, x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(name, x)

    for k, v in widget.get_state().items():
        walk(k, v)
    return out


def simulate_request(widget, method, args):
    """What the browser would get back: (content, buffers)."""
    sent = []
    widget.send = lambda content, buffers=None: sent.append((content, buffers))
    widget._on_msg(widget, {"kind": "request", "id": "t", "method": method, "args": args}, [])
    (reply,) = sent
    return reply


# -- TokenHeatmap ------------------------------------------------------------------------------
def test_heatmap_syncs_tokens_and_one_float32_array_per_metric():
    w = TokenHeatmap(["a", " b", "\n"], {"loss": torch.tensor([float("nan"), 1.0, 2.0]),
                                         "diff": [0.5, -1, 2]}, center=0.0)
    assert w._view == "token_heatmap"
    assert w.tokens == [["a", " b", "\n"]]
    assert [m["name"] for m in w.metrics] == ["loss", "diff"] and w.metric == "loss"
    assert [(m["values"]["dtype"], m["values"]["shape"]) for m in w.metrics] == [
        ("float32", [3]), ("float32", [3])]
    np.testing.assert_array_equal(decode_array(w.metrics[1]["values"]), [0.5, -1, 2])
    assert w.center == 0.0 and w.cmap == "auto" and not w.has_predictions
    assert w.data["tokens"] == ["a", " b", "\n"]
    np.testing.assert_array_equal(w.data["metrics"]["diff"], [0.5, -1, 2])


def test_heatmap_tokens_travel_packed_not_as_a_json_list():
    docs = [["<b>", " é", "\n", ""], ["😀", " x"]]
    w = TokenHeatmap(docs, [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]])
    state = w.get_state()
    wire = state["tokens"]
    assert wire["format"] == "strings"
    assert isinstance(wire["utf8"], memoryview)  # a binary buffer, not JSON
    assert bytes(wire["utf8"]) == "".join(t for d in docs for t in d).encode()
    assert decode_array(wire["rows"]).tolist() == [4, 2]
    assert decode_strings(wire) == docs
    assert w.tokens == docs  # the Python side keeps lists
    # what the browser would send back decodes to the same lists
    w.set_state({"tokens": wire})
    assert w.tokens == docs
    stripped, buffers = extract_buffers(state)
    assert len(json.dumps(stripped["tokens"])) < 200 and len(buffers) >= 3


def test_heatmap_several_documents_drop_padding():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, float("nan")]])  # [doc, pos], row 2 padded
    w = TokenHeatmap([["a", "b", "c"], ["d", "e"]], loss)
    assert w.metrics[0]["name"] == "value" and w.metrics[0]["values"]["shape"] == [5]
    np.testing.assert_array_equal(decode_array(w.metrics[0]["values"]), [1, 2, 3, 4, 5])
    assert [len(x) for x in w.data["metrics"]["value"]] == [3, 2]


@pytest.mark.parametrize("tokens, metrics, message", [
    ("a b", [1.0], "not one string"),
    (["a", "b"], [1.0, 2.0, 3.0], "metric 'value' has shape \\[3\\] for document 0, which has 2"),
    ([["a"], ["b"]], {"x": [[1.0]]}, "metric 'x' has 1 rows for 2 documents"),
    (["a"], {}, "metrics is empty"),
])
def test_heatmap_errors_say_what_is_wrong(tokens, metrics, message):
    with pytest.raises(ValueError, match=message):
        TokenHeatmap(tokens, metrics)


def test_heatmap_tokens_set_later_are_checked():
    w = TokenHeatmap(["a", " b"], [1.0, 2.0])
    for bad in ([["a", 3]], ["ab"], [("a",)]):
        with pytest.raises(t.TraitError, match="a list of documents, each a list of token strings"):
            w.tokens = bad
    w.tokens = [["x", " y"]]
    assert w.tokens == [["x", " y"]]


def test_heatmap_click_calls_on_select():
    w = TokenHeatmap(["a", "b", "c"], [1.0, 2.0, 3.0])
    seen = []
    w.on_select(lambda doc, pos: seen.append((doc, pos)))
    w.set_state({"selected": [0, 2]})  # what an update from the browser does
    assert w.selected == [0, 2] and seen == [(0, 2)]


def test_heatmap_predictions_are_fetched_not_synced(lm):
    run = lm.run(PROMPT)
    n = len(run.str_tokens)
    preds = [run.top_predictions(pos=i, k=5) for i in range(n)]
    w = TokenHeatmap(run.str_tokens, {"loss": run.loss}, predictions=preds)
    assert w.has_predictions
    assert "predictions" not in w.get_state()
    content, buffers = simulate_request(w, "predictions", {"doc": 0, "pos": 3})
    assert content["ok"], content
    assert content["result"]["tokens"] == [s for s, _ in preds[3]]
    probs = decode_array({**content["result"]["probs"], "buffer": buffers[0]})
    np.testing.assert_allclose(probs, [p for _, p in preds[3]], rtol=1e-6)
    assert len(list(w.static_answers())) == n
    content, _ = simulate_request(w, "predictions", {"doc": 0, "pos": n})
    assert content == {"kind": "response", "id": "t", "ok": False,
                       "error": f"predictions: pos {n} is out of range 0..{n - 1}"}


# -- AttentionView -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def attn(lm):
    return AttentionView(lm, LONG_PROMPT)


def test_attention_syncs_thumbnails_and_scores_not_patterns(lm, attn):
    L, H = lm.cfg.n_layers, lm.cfg.n_heads
    Q = len(attn.tokens)
    assert Q > 32 and attn._view == "attention"
    assert (attn.n_layers, attn.n_heads) == (L, H)
    assert attn.thumbs["dtype"] == "uint8" and attn.thumbs["shape"] == [L, H, 32, 32]
    assert [s["name"] for s in attn.scores] == ["previous_token", "induction", "duplicate_token"]
    assert all(s["values"]["shape"] == [L, H] for s in attn.scores)
    arrays = synced_arrays(attn)
    assert not [a for a in arrays if a[1][-2:] == [Q, Q]], "a full pattern was synced"
    assert sum(nbytes for *_, nbytes in arrays) < L * H * Q * Q  # less than one byte a weight
    assert attn.can_rerun and attn.prompt == LONG_PROMPT


def test_attention_pattern_on_request(attn):
    content, buffers = simulate_request(attn, "pattern", {"layer": 1, "head": 2})
    assert content["ok"], content
    got = decode_array({**content["result"]["pattern"], "buffer": buffers[0]})
    assert got.dtype == np.float16 and content["result"]["scale"] == 1.0
    want = attn.data["patterns"][1, 2].float().numpy()
    np.testing.assert_allclose(got.astype(np.float32), want, atol=1e-3)
    content, _ = simulate_request(attn, "pattern", {"layer": 99, "head": 0})
    assert content["error"] == f"pattern: layer 99 is out of range 0..{attn.n_layers - 1}"


def test_attention_scores_are_the_analysis_functions(lm, attn):
    _, tokens, patterns = attention_patterns(lm, LONG_PROMPT)
    torch.testing.assert_close(attn.data["patterns"].float(), patterns, atol=1e-3, rtol=0)
    for s in attn.scores:
        np.testing.assert_allclose(decode_array(s["values"]), attn.data["scores"][s["name"]])


def test_attention_rerun_and_its_errors(lm):
    w = AttentionView(lm, PROMPT)
    rev = w._rev
    content, _ = simulate_request(w, "set_prompt", {"prompt": "Mary and John"})
    assert content["ok"], content
    assert w._rev == rev + 1 and w.prompt == "Mary and John"
    assert w.tokens == lm.run("Mary and John").str_tokens
    content, _ = simulate_request(w, "set_prompt", {"prompt": "   "})
    assert "the prompt is empty" in content["error"]
    fixed = AttentionView.from_patterns(*attention_patterns(lm, PROMPT))
    assert not fixed.can_rerun
    content, _ = simulate_request(fixed, "set_prompt", {"prompt": "x"})
    assert "no model to re-run" in content["error"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # the prompt is cut to the context length
def test_attention_on_1024_tokens(lm):
    prompt = " ".join(["the cat sat on the mat and Mary gave John a drink"] * 200)
    w = AttentionView(lm, prompt)
    Q = len(w.tokens)
    assert Q == lm.cfg.n_ctx >= 1024
    assert w.thumbs["shape"][-2:] == [32, 32]
    content, buffers = simulate_request(w, "pattern", {"layer": 0, "head": 0})
    assert content["result"]["pattern"]["shape"] == [Q, Q] and len(buffers[0]) == Q * Q * 2
    # the static export stores 1,024-token patterns as uint8 steps of 1/255
    (_, _, first), *_ = w.static_answers()
    assert first["pattern"]["dtype"] == "uint8" and first["scale"] == pytest.approx(1 / 255)


# -- LogitLens ---------------------------------------------------------------------------------
def test_logit_lens_syncs_top1_and_target(lm):
    w = LogitLens(lm, PROMPT, target=" Mary")
    r = w.data
    n_layers, P = len(r.layer_labels), len(r.str_tokens)
    assert w._view == "logit_lens" and w.tokens == r.str_tokens
    assert len(w.top_strs) == n_layers and all(len(row) == P for row in w.top_strs)
    assert w.top_strs[-1][-1] == r.top_strs[-1][-1][0]
    assert w.top_probs["shape"] == [n_layers, P] and w.target_probs["shape"] == [n_layers, P]
    np.testing.assert_allclose(decode_array(w.target_probs), r.target_prob.numpy())
    assert w.target == " Mary" and w.colour_by == "target"
    assert not [a for a in synced_arrays(w) if len(a[1]) == 3], "top-k synced up front"


def test_logit_lens_topk_on_request(lm):
    w = LogitLens(lm, PROMPT)
    assert w.target is None and w.target_probs is None and w.colour_by == "top1"
    content, buffers = simulate_request(w, "topk", {"layer": 1, "pos": 4})
    res = content["result"]
    assert res["tokens"] == w.data.top_strs[1][4] and len(res["tokens"]) == 10
    np.testing.assert_allclose(decode_array({**res["probs"], "buffer": buffers[0]}),
                               w.data.top_probs[1, 4].numpy())
    assert len(list(w.static_answers())) == len(w.layer_labels) * len(w.tokens)


def test_logit_lens_rerun_and_target_errors(lm):
    w = LogitLens(lm, PROMPT)
    content, _ = simulate_request(w, "set_prompt", {"prompt": "Mary and John", "target": ""})
    assert content["ok"] and w.tokens == lm.run("Mary and John").str_tokens
    content, _ = simulate_request(w, "set_prompt", {"prompt": "x", "target": " Mary Jane xyz"})
    assert not content["ok"] and "not one" in content["error"]
    fixed = LogitLens.from_result(logit_lens(lm, PROMPT))
    assert not fixed.can_rerun and fixed.tokens == lm.run(PROMPT).str_tokens


@pytest.mark.parametrize("vmin, vmax", [(2.0, 1.0), (1.0, 1.0)])
def test_heatmap_refuses_vmin_not_below_vmax(vmin, vmax):
    with pytest.raises(ValueError, match=r"vmin \(.*\) must be below vmax"):
        TokenHeatmap(["a", "b"], [1.0, 2.0], vmin=vmin, vmax=vmax)


def test_heatmap_keeps_nan_and_inf_for_the_view_to_draw_as_gaps():
    w = TokenHeatmap(["a", "b", "c", "d"], [float("nan"), float("inf"), -float("inf"), 1.0])
    values = w.data["metrics"]["value"]
    assert np.isnan(values[0]) and np.isposinf(values[1]) and np.isneginf(values[2])
    assert values[3] == 1.0
