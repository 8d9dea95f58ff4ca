"""Fixed-length token contexts packed from a corpus, and the activations of hooks on them: the
input of the on-disk caches that SAELens and Delphi read (`saelens_cache`, `delphi_cache`).

Both peers cache activations over rows of `context_size` tokens cut from the concatenated
corpus, not one padded row per document: each row starts with BOS and documents inside a row are
separated by BOS (SAELens's default `begin_batch_token="bos"`, `sequence_separator_token="bos"`).
Packing is deterministic, so a resumed cache can re-pack the corpus, skip the rows it already
wrote and check by hash that they are the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..analysis.corpus import _doc_ids  # a document as token ids, checked

if TYPE_CHECKING:
    from ..model import Model


def packed_contexts(model: Model, corpus: Iterable[Any], context_size: int, *,
                    chunk_docs: int = 64) -> Iterator[list[int]]:
    """Rows of exactly `context_size` token ids: BOS, then the corpus's tokens in order, a BOS
    between documents (none doubled at a row start). A final partial row is dropped, as SAELens
    drops it. Strings are tokenized `chunk_docs` at a time."""
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be an iterable of documents, not one string: wrap it in a "
                        "list ([text]).")
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("This model's tokenizer has no BOS token, which packed contexts put "
                         "first in every row.")
    if not 2 <= context_size <= model.cfg.n_ctx:
        raise ValueError(f"context_size must be in 2 .. {model.cfg.n_ctx} (the model's context); "
                         f"got {context_size}.")
    row: list[int] = [bos]
    batch: list[Any] = []

    def flush() -> Iterator[list[int]]:
        nonlocal row
        texts = [d for d in batch if isinstance(d, str) and d]
        encoded = iter(model.tokenizer(texts, add_special_tokens=False)["input_ids"]
                       if texts else [])
        for i, d in enumerate(batch):
            ids = next(encoded) if isinstance(d, str) and d else _doc_ids(d, i)
            ids = [] if isinstance(ids, str) else ids
            if not ids:
                continue
            if len(row) > 1:
                row.append(bos)  # separator; a row that starts here already begins with BOS
                if len(row) == context_size:
                    yield row
                    row = [bos]
            while ids:
                take = context_size - len(row)
                row.extend(ids[:take])
                ids = ids[take:]
                if len(row) == context_size:
                    yield row
                    row = [bos]
        batch.clear()

    for doc in corpus:
        batch.append(doc)
        if len(batch) == chunk_docs:
            yield from flush()
    yield from flush()


def rows_digest(rows: Iterable[Sequence[int]], digest: Any = None) -> Any:
    """A running sha256 over token rows (to check that a resumed cache re-packed the same rows)."""
    digest = digest or hashlib.sha256()
    for r in rows:
        digest.update(torch.as_tensor(r, dtype=torch.int32).numpy().tobytes())
    return digest


class _AllCaptured(Exception):
    """Raised once every requested hook has fired: nothing after can change them."""


def hook_activations(model: Model, tokens: torch.Tensor, hooks: Sequence[str]
                     ) -> dict[str, torch.Tensor]:
    """{hook: Tensor[batch, pos, d]} for unpadded `tokens` [batch, pos]; [.., n_heads, d_head]
    activations come flattened to n_heads * d_head. The forward pass stops once the last of the
    hooks has fired."""
    want = set(hooks)
    got: dict[str, torch.Tensor] = {}

    def capture(name: str) -> Any:
        def fn(x: torch.Tensor, hook: Any) -> None:
            got[name] = x.detach().flatten(2)
            if want <= got.keys():
                raise _AllCaptured
        return fn

    with torch.no_grad():
        try:
            model.bridge.run_with_hooks(tokens.to(model.device),
                                        fwd_hooks=[(h, capture(h)) for h in hooks])
        except _AllCaptured:
            pass
    missing = [h for h in hooks if h not in got]
    if missing:
        raise RuntimeError(f"hooks {missing} did not fire in the forward pass")
    return {h: got[h] for h in hooks}
