"""Metrics of a model's output logits, for patching, attribution and steering.

A metric maps logits ``Tensor[batch, pos, vocab]`` to a scalar (the mean over the batch). The
helpers name answer tokens as text (``" Mary"``); `bind(model)` turns the text into token ids,
checking that each is one token. Any plain callable ``logits -> scalar`` works wherever a
metric is taken; `as_metric` accepts both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..model import Model
from .logit_lens import single_token_id

Tokens = str | int | Sequence[str] | Sequence[int]


def _token_ids(model: Model | None, tokens: Tokens, what: str) -> torch.Tensor:
    """LongTensor[n]: ids of one or several single tokens given as text or ids."""
    items = [tokens] if isinstance(tokens, (str, int)) else list(tokens)
    if not items:
        raise ValueError(f"{what} is empty: give a token such as ' Mary' (or one per prompt).")
    ids = []
    for t in items:
        if isinstance(t, str):
            if model is None:
                raise ValueError(f"{what} {t!r} is text: bind the metric to a model first "
                                 "(metric.bind(model)), or give token ids.")
            ids.append(single_token_id(model, t))
        else:
            ids.append(int(t))
    return torch.tensor(ids, dtype=torch.long)


def _per_row(ids: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """ids LongTensor[1 or batch] -> LongTensor[batch]."""
    if len(ids) not in (1, batch):
        raise ValueError(f"{what} has {len(ids)} tokens but the batch has {batch} prompts: "
                         "give one token, or one per prompt.")
    return ids.expand(batch) if len(ids) == 1 else ids


class Metric:
    """A named metric of logits ``[batch, pos, vocab] -> scalar``, read at position `pos`
    (-1: the last token). Subclasses implement `per_row` -> ``Tensor[batch]``."""

    name = "metric"

    def __init__(self, pos: int = -1):
        self.pos = pos
        self.model: Model | None = None

    def bind(self, model: Model) -> Metric:
        """Resolve token text to ids for `model` (raises if a token is not exactly one token)."""
        self.model = model
        self._resolve()
        return self

    def _resolve(self) -> None:
        pass

    def per_row(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Scalar tensor: `per_row` averaged over the batch."""
        return self.per_row(logits).mean()

    def __repr__(self) -> str:
        return self.name


class _LogitDiff(Metric):
    def __init__(self, answer: Tokens, wrong: Tokens, pos: int = -1):
        super().__init__(pos)
        self.answer, self.wrong = answer, wrong
        self.name = f"logit({_show(answer)}) - logit({_show(wrong)})"
        self._ids: tuple[torch.Tensor, torch.Tensor] | None = None
        if _all_ids(answer) and _all_ids(wrong):
            self._resolve()

    def _resolve(self) -> None:
        self._ids = (_token_ids(self.model, self.answer, "answer"),
                     _token_ids(self.model, self.wrong, "wrong"))

    def per_row(self, logits: torch.Tensor) -> torch.Tensor:
        if self._ids is None:
            self._resolve()
        rows = torch.arange(logits.shape[0], device=logits.device)
        last = logits[:, self.pos]  # [batch, vocab]
        a = _per_row(self._ids[0], len(rows), "answer").to(logits.device)
        w = _per_row(self._ids[1], len(rows), "wrong").to(logits.device)
        return last[rows, a] - last[rows, w]


class _TokenProb(Metric):
    def __init__(self, token: Tokens, pos: int = -1):
        super().__init__(pos)
        self.token = token
        self.name = f"p({_show(token)})"
        self._ids: torch.Tensor | None = None
        if _all_ids(token):
            self._resolve()

    def _resolve(self) -> None:
        self._ids = _token_ids(self.model, self.token, "token")

    def per_row(self, logits: torch.Tensor) -> torch.Tensor:
        if self._ids is None:
            self._resolve()
        rows = torch.arange(logits.shape[0], device=logits.device)
        probs = logits[:, self.pos].float().softmax(-1)  # [batch, vocab]
        return probs[rows, _per_row(self._ids, len(rows), "token").to(logits.device)]


class _KLTo(Metric):
    def __init__(self, reference_logits: torch.Tensor, pos: int | None = -1):
        super().__init__(pos)  # type: ignore[arg-type]
        self.reference = reference_logits.detach()
        self.name = "KL(reference || model)"

    def per_row(self, logits: torch.Tensor) -> torch.Tensor:
        ref = self.reference.to(logits.device)
        if ref.ndim == 1:
            ref = ref[None, None]  # [vocab] -> [1, 1, vocab]
        elif ref.ndim == 2:
            ref = ref[:, None]  # [batch, vocab] -> [batch, 1, vocab]
        if self.pos is None:
            kl = kl_div(ref.expand_as(logits), logits)  # [batch, pos]
            return kl.mean(-1)
        model_last = logits[:, self.pos]  # [batch, vocab]
        ref_last = ref[:, -1] if ref.shape[1] == 1 else ref[:, self.pos]
        return kl_div(ref_last.expand_as(model_last), model_last)


def _all_ids(tokens: Tokens) -> bool:
    items = [tokens] if isinstance(tokens, (str, int)) else list(tokens)
    return bool(items) and all(isinstance(t, int) for t in items)


def _show(tokens: Tokens) -> str:
    if isinstance(tokens, (str, int)):
        return repr(tokens)
    items = list(tokens)
    return repr(items[0]) + ("..." if len(items) > 1 else "") if items else "[]"


def logit_diff(answer: Tokens, wrong: Tokens, *, pos: int = -1) -> Metric:
    """logit(answer) - logit(wrong) at `pos`, averaged over the batch.

    `answer`, `wrong`: a single token each (``" Mary"`` or an id), or one per prompt."""
    return _LogitDiff(answer, wrong, pos)


def token_prob(token: Tokens, *, pos: int = -1) -> Metric:
    """The probability of `token` (one token, or one per prompt) at `pos`, batch mean."""
    return _TokenProb(token, pos)


def kl_to(reference_logits: torch.Tensor, *, pos: int | None = -1) -> Metric:
    """KL(reference || model) in nats at `pos` (None: mean over positions), batch mean.

    reference_logits: Tensor[batch, pos, vocab], [batch, vocab] or [vocab]."""
    return _KLTo(reference_logits, pos)


def kl_div(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Tensor[...]: KL(softmax(ref) || softmax(logits)) in nats over the last axis."""
    ref_logp = ref_logits.float().log_softmax(-1)
    logp = logits.float().log_softmax(-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def as_metric(metric: Metric | Callable[[torch.Tensor], Any], model: Model) -> Callable:
    """A metric ready for `model`: helpers are bound; other callables are checked to be callable."""
    if isinstance(metric, Metric):
        return metric.bind(model)
    if not callable(metric):
        raise TypeError("metric must be a callable logits [batch, pos, vocab] -> scalar, e.g. "
                        f"iw.logit_diff(' Mary', ' John'); got {type(metric).__name__}.")
    return metric


def metric_name(metric: Any) -> str:
    """A label for `metric`: its `name`, or the function's name."""
    return getattr(metric, "name", None) or getattr(metric, "__name__", None) or "metric"
