"""Head scores against TransformerLens's head detector; thumbnails; patterns from the model."""

import pytest
import torch
from _demo_status import needs_learned
from transformer_lens.head_detector import detect_head

from interp_widgets.analysis import attention_patterns, head_scores, pattern_thumbnails
from interp_widgets.demo.tasks import repeated_tokens

TL_NAMES = {"previous_token": "previous_token_head", "induction": "induction_head",
            "duplicate_token": "duplicate_token_head"}


@pytest.fixture(scope="module")
def repeated(model):
    tokens = repeated_tokens(1, span=20, seed=3, tokenizer=model.tokenizer)[0]
    return attention_patterns(model, tokens)


def test_patterns_shape_and_rows(model, repeated):
    str_tokens, tokens, patterns = repeated
    P = len(str_tokens)
    assert patterns.shape == (model.cfg.n_layers, model.cfg.n_heads, P, P)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(patterns.shape[:-1]))
    assert torch.all(patterns.triu(1) == 0), "causal"


def test_scores_equal_transformer_lens_detect_head(model):
    # detect_head takes text, so use text with repeats (random ids need not round-trip)
    prompt = "When Mary and John went to the store, John gave a drink to Mary. " * 2
    _, tokens, patterns = attention_patterns(model, prompt)
    ours = head_scores(patterns, tokens, relevant_queries_only=False)
    for name, tl_name in TL_NAMES.items():
        theirs = detect_head(model.bridge, prompt, tl_name)
        torch.testing.assert_close(ours[name], theirs.float(), atol=1e-4, rtol=1e-4)


@needs_learned("induction")
def test_demo_model_has_an_induction_head(repeated):
    _, tokens, patterns = repeated
    scores = head_scores(patterns, tokens)
    assert set(scores) == {"previous_token", "induction", "duplicate_token"}
    assert scores["induction"].max() > 0.5
    assert scores["previous_token"].max() > 0.5
    for s in scores.values():
        assert s.min() >= 0 and s.max() <= 1


def test_relevant_queries_only_is_the_per_query_mean():
    # one head, 4 tokens "a b a b": induction targets exist for queries 2 and 3 only
    tokens = torch.tensor([5, 6, 5, 6])
    pat = torch.zeros(1, 1, 4, 4)
    pat[0, 0, :, 0] = 1.0  # all attention on position 0 ...
    pat[0, 0, 2] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # ... except query 2, a perfect induction
    pat[0, 0, 3] = torch.tensor([0.5, 0.0, 0.5, 0.0])  # and query 3, half on its target (pos 2)
    s = head_scores(pat, tokens)["induction"][0, 0]
    assert s == pytest.approx((1.0 + 0.5) / 2)
    s_tl = head_scores(pat, tokens, relevant_queries_only=False)["induction"][0, 0]
    assert s_tl == pytest.approx(1.5 / 4)


def test_thumbnails_keep_a_sharp_diagonal():
    P = 1024
    pat = torch.eye(P).expand(2, 3, P, P)
    thumbs = pattern_thumbnails(pat, size=32)
    assert thumbs.shape == (2, 3, 32, 32) and thumbs.dtype == torch.uint8
    assert torch.all(thumbs[0, 0].diagonal() == 255)
    assert thumbs[0, 0].sum() == 255 * 32, "block max keeps only the diagonal blocks"
    small = pattern_thumbnails(torch.rand(1, 1, 5, 5), size=32)
    assert small.shape == (1, 1, 5, 5) and small.max() == 255
