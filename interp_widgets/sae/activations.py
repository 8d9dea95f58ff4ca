"""Activations for SAE training and evaluation: streamed from a model over a corpus, mixed
through a shuffling buffer so that a batch holds tokens from many documents."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..model import Model


def model_activations(model: Model, corpus: Iterable[str], hook: str, *, batch_size: int = 16,
                      skip_bos: bool = True) -> Iterator[torch.Tensor]:
    """Yield Tensor[n_tokens, d] of `hook`'s activation for each batch of `batch_size` documents:
    real tokens only (no padding; documents cut to the model's context), and without position 0
    (the BOS token) when `skip_bos`.
    hook_z-style activations [.., n_heads, d_head] come flattened to n_heads * d_head."""
    model.check_hook_names([hook])
    docs: list[str] = []
    for doc in corpus:
        docs.append(doc)
        if len(docs) == batch_size:
            yield _acts(model, docs, hook, skip_bos)
            docs = []
    if docs:
        yield _acts(model, docs, hook, skip_bos)


@contextmanager
def quiet_truncation() -> Iterator[None]:
    """Silence `Model.run`'s warning that a document was cut to the context: corpus scans cut
    long documents on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*the model's context is.*")
        yield


def _acts(model: Model, docs: Sequence[str], hook: str, skip_bos: bool) -> torch.Tensor:
    with quiet_truncation():
        run = model.run(list(docs), names=[hook])
    keep = run.attention_mask.bool()
    if skip_bos:
        keep &= ~model.bos_mask(run.tokens)
    acts = run.cache[hook]  # [batch, pos, ...]
    return acts[keep].flatten(1)  # [n_tokens, d]


def limited_activations(model: Model, corpus: Iterable[str], hook: str, *,
                        max_tokens: int | None = None, batch_size: int = 16,
                        skip_bos: bool = True) -> Iterator[torch.Tensor]:
    """`model_activations`, stopped after `max_tokens` rows in all (the last chunk cut);
    an empty corpus is refused."""
    n = 0
    for acts in model_activations(model, corpus, hook, batch_size=batch_size, skip_bos=skip_bos):
        if max_tokens is not None and n + len(acts) >= max_tokens:
            yield acts[:max_tokens - n]
            return
        n += len(acts)
        yield acts
    if n == 0:
        raise ValueError("The corpus is empty: give at least one document.")


def collect_activations(model: Model, corpus: Iterable[str], hook: str, *,
                        max_tokens: int | None = None, batch_size: int = 16,
                        skip_bos: bool = True) -> torch.Tensor:
    """Tensor[n, d]: `hook`'s activations over the corpus (at most `max_tokens` rows)."""
    return torch.cat(list(limited_activations(model, corpus, hook, max_tokens=max_tokens,
                                              batch_size=batch_size, skip_bos=skip_bos)))


def shuffled(chunks: Iterable[torch.Tensor], batch_size: int, buffer_size: int, *,
             generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Re-batch a stream of Tensor[n_i, d] chunks into shuffled Tensor[batch_size, d] batches.

    Rows collect in a buffer of about `buffer_size` rows; when it is full it is shuffled and its
    first half goes out in batches, so consecutive rows of one chunk end up spread apart (the
    scheme SAELens's mixing buffer uses). A final partial batch is dropped."""
    buf: torch.Tensor | None = None
    for chunk in chunks:
        buf = chunk if buf is None else torch.cat([buf, chunk.to(buf.device, buf.dtype)])
        while len(buf) >= max(buffer_size, 2 * batch_size):
            buf = buf[torch.randperm(len(buf), generator=generator).to(buf.device)]
            n_out = (len(buf) // 2) // batch_size * batch_size
            yield from buf[:n_out].split(batch_size)
            buf = buf[n_out:]
    if buf is not None and len(buf) >= batch_size:
        buf = buf[torch.randperm(len(buf), generator=generator).to(buf.device)]
        n_out = len(buf) // batch_size * batch_size
        yield from buf[:n_out].split(batch_size)
