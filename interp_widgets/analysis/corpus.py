"""Corpus iteration for scans: documents as rows of BOS + document in padded batches
(`iter_corpus`), forward passes that stop at the scanned hook (`layer_activations`), and
`scan_neurons`, the neuron-layer name of the unit engine's scan (`interp_widgets.units.scan`).

`NeuronScan` is `interp_widgets.units.UnitScan` under its older name.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count, islice
from typing import Any

import torch
from tqdm.auto import tqdm

from ..model import Model

#: names that moved to `interp_widgets.units`, still importable from here
_MOVED = {"NeuronScan": ("scan", "UnitScan"), "Grid": ("pool", "Grid"),
          "Example": ("pool", "Example"), "Bucket": ("pool", "Bucket"),
          "_POS_BITS": ("pool", "POS_BITS"), "_mix63": ("pool", "mix63")}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        module, attr = _MOVED[name]
        return getattr(importlib.import_module(f"interp_widgets.units.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def _defer_interrupt():
    """Hold back Ctrl-C (SIGINT) until the block ends, so a batch is folded in whole or not at all.
    Only in the main thread (elsewhere signals cannot be caught and nothing is deferred)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []
    previous = signal.signal(signal.SIGINT, lambda *a: hit.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if hit:
        raise KeyboardInterrupt


@contextmanager
def _scan_progress(meta: dict, corpus: Iterable, desc: str, progress: bool):
    """The progress bar (documents) of a streaming scan over `corpus`. Ctrl-C inside the block
    ends the scan there and marks `meta["partial"]`; what was folded in stays. The bar closes."""
    total = len(corpus) if hasattr(corpus, "__len__") else None
    bar = tqdm(total=total, unit="doc", desc=desc, disable=not progress)
    try:
        yield bar
    except KeyboardInterrupt:
        meta["partial"] = True
    finally:
        bar.close()


def _doc_ids(doc: Any, index: int) -> list[int] | str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, torch.Tensor):
        return doc.reshape(-1).tolist()
    if isinstance(doc, Sequence) and all(isinstance(t, int) for t in doc):
        return list(doc)
    raise TypeError(f"Corpus item {index} is a {type(doc).__name__}: each document must be a "
                    "string or a list of token ids.")


@dataclass
class CorpusBatch:
    """`size` consecutive documents of a corpus, from index `start`; batch number `index`.
    `rows` holds (document index, BOS + token ids cut to the context) for the non-empty ones
    (None when the batch was skipped); `n_truncated` counts the documents that were cut; `bos`:
    whether each row starts with a BOS token (False on models trained without one)."""

    index: int
    start: int
    size: int
    rows: list[tuple[int, list[int]]] | None
    n_truncated: int = 0
    bos: bool = True


def iter_corpus(model: Model, corpus: Iterable[str | Sequence[int]], batch_size: int,
                keep=None, *, prepend_bos: bool | None = None) -> Iterator[CorpusBatch]:
    """The corpus in batches of `batch_size` documents, tokenized as rows of BOS + document (no
    BOS where `Model.bos_for(prepend_bos)` is None), cut to the model's context. Batches j with
    ``keep(j)`` false are passed over untokenized."""
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be an iterable of documents, not one string: wrap it in a "
                        "list ([text]).")
    bos, n_ctx = model.bos_for(prepend_bos), model.cfg.n_ctx
    first = [] if bos is None else [bos]
    it, start = iter(corpus), 0
    for j in count():
        batch = list(islice(it, batch_size))
        if not batch:
            return
        if keep is not None and not keep(j):
            yield CorpusBatch(j, start, len(batch), None, bos=bool(first))
        else:
            ids = _tokenize(model, batch, start)
            room = n_ctx - len(first)
            rows = [(start + i, first + d[:room]) for i, d in enumerate(ids) if d]
            yield CorpusBatch(j, start, len(batch), rows, sum(len(d) > room for d in ids),
                              bos=bool(first))
        start += len(batch)


class _Captured(Exception):
    """Raised by the hook of `layer_activations` once it holds the activation: nothing after it
    can change it, so the forward pass stops there."""


def layer_activations(model: Model, rows: list[list[int]],
                      name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, mask LongTensor[batch, pos], acts Tensor[batch, pos, ...] at hook `name`) for
    token-id rows, right-padded as `Model.run` pads them. The forward pass stops at the hook: the
    rest of its block, the later blocks and the unembedding cannot change the activation, and
    skipping them is most of a scan's saving. (TL's `stop_at_layer` would not do for the last
    layer: at n_layers it runs the unembedding too.)"""
    tokens = model.to_tokens(rows, prepend_bos=False)  # checked and padded by Model
    lengths = torch.tensor([len(r) for r in rows], device=tokens.device)
    mask = (torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]).long()
    kwargs = {"attention_mask": mask} if bool((mask == 0).any()) else {}
    got: list[torch.Tensor] = []

    def capture(x: torch.Tensor, hook: Any) -> None:
        got.append(x)
        raise _Captured

    with torch.no_grad():
        try:
            model.bridge.run_with_hooks(tokens, fwd_hooks=[(name, capture)], **kwargs)
        except _Captured:
            pass
    if not got:
        raise RuntimeError(f"hook {name!r} did not fire in the forward pass")
    return tokens, mask, got[0]


def _tokenize(model: Model, batch: list, start: int) -> list[list[int]]:
    """Token ids of each document in `batch` (strings tokenized together), without BOS."""
    docs = [_doc_ids(d, start + i) for i, d in enumerate(batch)]
    texts = [(i, d) for i, d in enumerate(docs) if isinstance(d, str) and d]
    if texts:
        encoded = model.tokenizer([d for _, d in texts], add_special_tokens=False)["input_ids"]
        for (i, _), ids in zip(texts, encoded):
            docs[i] = ids
    return [[] if isinstance(d, str) else d for d in docs]


def scan_neurons(model: Model, corpus: Iterable[str | Sequence[int]], layer: int, *, k: int = 20,
                 batch_size: int | None = None, hook: str = "mlp.hook_post",
                 context: tuple[int, int] = (10, 4), samples_per_bucket: int = 5,
                 correlations: bool = True, grid: Any = None, shard: int = 0,
                 n_shards: int = 1, seed: int = 0, n_random: int = 200,
                 progress: bool = True, prepend_bos: bool | None = None) -> Any:
    """`iw.scan(model, iw.neurons(model, layer, hook), corpus, ...)`: every neuron of `layer`
    in one streaming pass, as a `UnitScan` (see `interp_widgets.units.scan` for the arguments).
    hook: the MLP activation to read ("mlp.hook_post" or "mlp.hook_pre")."""
    from ..units import neurons, scan

    return scan(model, neurons(model, layer, hook), corpus, k=k,
                batch_size=32 if batch_size is None else batch_size, context=context,
                samples_per_bucket=samples_per_bucket, n_random=n_random,
                correlations=correlations, grid=grid, seed=seed, shard=shard,
                n_shards=n_shards, progress=progress, prepend_bos=prepend_bos)
