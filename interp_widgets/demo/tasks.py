"""Held-out evaluation prompts and metrics for the demo model (or any causal LM).

Every metric takes `logits_fn(tokens: LongTensor[batch, pos]) -> FloatTensor[batch, pos, vocab]`
and a HF tokenizer, so it works with a bare `GPT2LMHeadModel`, a TransformerBridge or an
`iw.Model`. Prompts get a BOS token prepended and are scored in right-padded batches: for a causal
model with absolute positions the real positions never see the pads, so this is exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import combinations

import torch

from .corpus import (
    ARTICLE_TEMPLATES,
    HELDOUT_ARTICLE_TEMPLATES,
    HELDOUT_IOI_TEMPLATES,
    HELDOUT_PAIRS,
    IOI_TEMPLATES,
    LEXICON,
    NAMES,
    TOPICS,
    article,
    fill,
)

LogitsFn = Callable[[torch.Tensor], torch.Tensor]

#: held-out metric of `evaluate_all` -> (target as text, test of the value): the demo model's bar
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "induction_loss_ratio": ("< 0.30", lambda v: v < 0.30),
    "ioi_logit_diff": ("> 2", lambda v: v > 2),
    "article_accuracy": (">= 0.90", lambda v: v >= 0.90),
}


def _prefix(template: str, slot: str) -> str:
    """The part of `template` before ` {slot}` (a training template cut into a prompt)."""
    return template.split(" {" + slot + "}")[0]


@lru_cache(maxsize=2)
def _pairs(heldout: bool) -> tuple[tuple[str, str], ...]:
    if heldout:
        return tuple(sorted(tuple(sorted(p)) for p in HELDOUT_PAIRS))
    return tuple(p for p in combinations(NAMES, 2) if frozenset(p) not in HELDOUT_PAIRS)


def ioi_prompts(n: int, seed: int = 0, heldout: bool = True) -> list[tuple[str, str, str]]:
    """`n` (prompt, " IO", " S") triples: the prompt ends where the indirect object comes next.

    `heldout=True` uses templates and name pairs that never occur in the training corpus;
    IO comes first in the first clause in half of the prompts (ABBA), second in the rest (BABA).
    """
    rng = random.Random(seed)
    templates = HELDOUT_IOI_TEMPLATES if heldout else [_prefix(t, "IO") for t in IOI_TEMPLATES]
    pairs = _pairs(heldout)
    out = []
    for i in range(n):
        io, s = rng.choice(pairs)[:: rng.choice((1, -1))]
        a, b = (io, s) if i % 2 == 0 else (s, io)
        prompt = fill(rng.choice(templates), rng, rng.choice(TOPICS), A=a, B=b, S=s)
        out.append((prompt, " " + io, " " + s))
    return out


def article_prompts(n: int, seed: int = 0, heldout: bool = True) -> list[tuple[str, str, str]]:
    """`n` (prompt, right article, wrong article) triples, e.g. (".. found", " an", " a").

    The noun is named earlier in the prompt with "the", so the article is predictable; half the
    prompts need " an". `heldout=True` uses templates that never occur in the training corpus.
    """
    rng = random.Random(seed)
    templates = (HELDOUT_ARTICLE_TEMPLATES if heldout
                 else [_prefix(t, "art") for t in ARTICLE_TEMPLATES])
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        want = "an" if i % 2 == 0 else "a"
        thing = rng.choice([t for t in LEXICON[topic].things if article(t) == want])
        n_name, m_name = rng.sample(NAMES, 2)
        prompt = fill(rng.choice(templates), rng, topic, thing=thing, N=n_name, M=m_name)
        out.append((prompt, " " + want, " a" if want == "an" else " an"))
    return out


def random_tokens(shape: tuple[int, ...], generator: torch.Generator, tokenizer) -> torch.Tensor:
    """LongTensor[*shape] of ids drawn uniformly from the tokenizer's non-special tokens."""
    special = set(tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    return allowed[torch.randint(len(allowed), shape, generator=generator)]


def repeated_tokens(n: int, span: int, seed: int = 0, tokenizer=None) -> torch.Tensor:
    """`n` rows `[BOS, span random tokens, the same span]` -> LongTensor[n, 1 + 2 * span].

    Tokens are drawn uniformly from the tokenizer's non-special ids (the demo tokenizer if none).
    """
    tokenizer = tokenizer or _demo_tokenizer()
    body = random_tokens((n, span), torch.Generator().manual_seed(seed), tokenizer)
    bos = torch.full((n, 1), tokenizer.bos_token_id)
    return torch.cat([bos, body, body], dim=1)


@lru_cache(maxsize=1)
def _demo_tokenizer():
    from transformers import AutoTokenizer

    from . import MODEL_DIR

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def single_token(tokenizer, text: str) -> int:
    """The id of `text`, which must be exactly one token (e.g. " Mary")."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens for this tokenizer, expected one: {ids}")
    return ids[0]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists -> (tokens LongTensor[batch, max_len], lengths LongTensor[batch])."""
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.as_tensor(s)
    return tokens, lengths


@torch.no_grad()
def last_logits(
    logits_fn: LogitsFn, tokenizer, prompts: Sequence[str], batch_size: int = 64
) -> torch.Tensor:
    """Logits after the last token of each prompt (BOS prepended) -> FloatTensor[n, vocab]."""
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    seqs = [[bos, *tokenizer.encode(p, add_special_tokens=False)] for p in prompts]
    out = []
    for start in range(0, len(seqs), batch_size):
        tokens, lengths = pad_batch(seqs[start : start + batch_size], pad)
        logits = logits_fn(tokens).float().cpu()  # [batch, pos, vocab]
        out.append(logits[torch.arange(len(lengths)), lengths - 1])
    return torch.cat(out)


def _answer_diff(logits_fn, tokenizer, triples, batch_size: int) -> torch.Tensor:
    """logit(right) - logit(wrong) for (prompt, right, wrong) triples -> FloatTensor[n]."""
    logits = last_logits(logits_fn, tokenizer, [t[0] for t in triples], batch_size)
    right = torch.tensor([single_token(tokenizer, t[1]) for t in triples])
    wrong = torch.tensor([single_token(tokenizer, t[2]) for t in triples])
    rows = torch.arange(len(triples))
    return logits[rows, right] - logits[rows, wrong]


def ioi_logit_diff(
    logits_fn: LogitsFn, tokenizer, n: int = 256, seed: int = 0, heldout: bool = True,
    batch_size: int = 64,
) -> float:
    """Mean logit(indirect object) - logit(subject) over `ioi_prompts(n, seed, heldout)`."""
    diff = _answer_diff(logits_fn, tokenizer, ioi_prompts(n, seed, heldout), batch_size)
    return diff.mean().item()


def article_accuracy(
    logits_fn: LogitsFn, tokenizer, n: int = 256, seed: int = 0, heldout: bool = True,
    batch_size: int = 64,
) -> float:
    """Fraction of `article_prompts(n, seed, heldout)` where the right article out-scores the
    wrong one."""
    diff = _answer_diff(logits_fn, tokenizer, article_prompts(n, seed, heldout), batch_size)
    return (diff > 0).float().mean().item()


@torch.no_grad()
def induction_loss_ratio(
    logits_fn: LogitsFn, tokenizer, n: int = 64, span: int = 32, seed: int = 0,
    batch_size: int = 32,
) -> float:
    """Mean loss on the second copy of a random span / mean loss on the first copy.

    Both means skip the first token of a copy (nothing predicts it), so they average the same
    `span - 1` predictions; low is good (0 = perfect copying)."""
    tokens = repeated_tokens(n, span, seed, tokenizer)  # [n, 1 + 2 * span]
    losses = []
    for start in range(0, n, batch_size):
        batch = tokens[start : start + batch_size]
        logprobs = logits_fn(batch).float().cpu().log_softmax(-1)[:, :-1]  # [b, pos - 1, vocab]
        losses.append(-logprobs.gather(-1, batch[:, 1:, None])[..., 0])  # [b, pos - 1]
    loss = torch.cat(losses)  # loss[:, i] is the loss of predicting token i + 1
    first = loss[:, 1:span].mean()  # tokens 2 .. span
    second = loss[:, span + 1 :].mean()  # tokens span + 2 .. 2 * span
    return (second / first).item()


def evaluate_all(logits_fn: LogitsFn, tokenizer, seed: int = 1234) -> dict[str, float]:
    """The three held-out metrics the demo model is held to, from fresh prompts of `seed`."""
    return {
        "induction_loss_ratio": induction_loss_ratio(logits_fn, tokenizer, seed=seed),
        "ioi_logit_diff": ioi_logit_diff(logits_fn, tokenizer, seed=seed),
        "article_accuracy": article_accuracy(logits_fn, tokenizer, seed=seed),
    }
