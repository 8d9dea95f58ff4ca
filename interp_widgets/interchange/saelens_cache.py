"""SAELens's cached activations: write them (`cache_activations`) and read them
(`load_cached_activations`, and `train_sae` trains from them).

The layout is the one SAELens's `CacheActivationsRunner` writes and its `ActivationsStore` reads
with `datasets.load_from_disk` (seen with sae-lens 6.54, datasets 5.2): a Hugging Face `datasets`
folder (`dataset_info.json`, `state.json` listing Arrow files) with one row per context, a column
per hook of `Array2D(shape=(context_size, d_in), dtype)` and a `token_ids` column of
`Sequence(Value("int32"), length=context_size)`.

Ours also keeps `iw_cache.json` (the settings, and per shard its rows and a hash of its tokens)
so that an interrupted cache resumes. Shards are written one at a time through `datasets`'s
`ArrowWriter` (memory: one forward batch), each to a temporary name that is renamed once complete;
`state.json` is then rewritten atomically to list it. So at any moment the folder is a valid
dataset of the complete shards, and a rerun with the same arguments continues after the last one.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._files import publish, saved_settings, write_json
from .contexts import hook_activations, packed_contexts, rows_digest

if TYPE_CHECKING:
    from ..model import Model

MANIFEST = "iw_cache.json"
FORMAT = "interp_widgets.saelens_cache/1"
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _features(hooks: dict[str, int], context_size: int, dtype: str) -> Any:
    from datasets import Array2D, Features, Sequence, Value

    cols: dict[str, Any] = {h: Array2D(shape=(context_size, d), dtype=dtype)
                            for h, d in hooks.items()}
    cols["token_ids"] = Sequence(Value(dtype="int32"), length=context_size)
    return Features(cols)


def _state(files: list[str], fingerprint: str) -> dict[str, Any]:
    """`state.json` as `Dataset.save_to_disk` writes it."""
    return {"_data_files": [{"filename": f} for f in files], "_fingerprint": fingerprint,
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
            "_output_all_columns": False, "_split": None}


def _hook_widths(model: Model, hooks: Sequence[str]) -> dict[str, int]:
    """{hook: d} from one forward pass over two tokens."""
    bos = model.tokenizer.bos_token_id
    acts = hook_activations(model, torch.tensor([[bos, bos]]), hooks)
    return {h: int(a.shape[-1]) for h, a in acts.items()}


def cache_activations(model: Model, corpus: Iterable[Any], hooks: str | Sequence[str],
                      path: str | os.PathLike, *, context_size: int | None = None,
                      max_tokens: int | None = None, dtype: str = "float32",
                      batch_size: int = 16, shard_contexts: int | None = None,
                      resume: bool = True, progress: bool = True) -> CachedActivations:
    """Run `model` over `corpus` and write the activations of `hooks` as SAELens's cached
    activations in folder `path`; returns the cache, read back.

    corpus: strings or token-id lists, packed into rows of `context_size` tokens (default the
        model's context, at most 128) as `contexts.packed_contexts` says.
    max_tokens: stop after this many tokens (whole contexts); default the whole corpus.
    dtype: "float32" or "float16" (the Arrow array's dtype). batch_size: contexts per forward.
    shard_contexts: contexts per Arrow file (default: about 256 MB of activations each).
    resume: continue a folder that an interrupted call with the same arguments left; a folder
        written with other settings, or from another corpus, is refused, never overwritten.
    Ctrl-C stops after the last complete shard and returns the cache so far.
    """
    from datasets.arrow_writer import ArrowWriter
    from tqdm.auto import tqdm

    hooks = [hooks] if isinstance(hooks, str) else list(hooks)
    if not hooks:
        raise ValueError("Give at least one hook, e.g. hooks=['blocks.1.hook_resid_pre'].")
    if len(set(hooks)) != len(hooks) or "token_ids" in hooks:
        raise ValueError(f"hooks must be distinct hook names (and not 'token_ids'); got {hooks}.")
    model.check_hook_names(hooks)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} (Arrow has no bfloat16); "
                         f"got {dtype!r}.")
    ctx = context_size or min(128, model.cfg.n_ctx)
    widths = _hook_widths(model, hooks)
    per_ctx = ctx * sum(widths.values()) * _DTYPES[dtype].itemsize
    shard_contexts = shard_contexts or max(1, (256 << 20) // per_ctx)
    max_ctx = None if max_tokens is None else max_tokens // ctx
    settings = {"format": FORMAT, "model": model.name, "hooks": widths, "context_size": ctx,
                "dtype": dtype, "shard_contexts": shard_contexts, "max_contexts": max_ctx,
                "bos_token_id": model.tokenizer.bos_token_id}
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(folder, settings, resume)
    write_json(folder / MANIFEST, manifest)
    features = _features(widths, ctx, dtype)
    if not (folder / "dataset_info.json").exists():
        from datasets import DatasetInfo

        DatasetInfo(features=features).write_to_directory(str(folder), pretty_print=True)
    done = sum(s["contexts"] for s in manifest["shards"])
    rows = packed_contexts(model, corpus, ctx)
    digest = rows_digest(islice(rows, done))
    if done and digest.hexdigest() != manifest["digest"]:
        raise ValueError(f"The cache in {folder} was written from another corpus (its first "
                         f"{done:,} contexts differ from this corpus's). Pass the same corpus, or "
                         "another path.")
    if max_ctx is not None:
        rows = islice(rows, max(0, max_ctx - done))
    bar = tqdm(total=max_ctx, initial=done, unit="ctx", desc=f"cache {', '.join(hooks)}",
               disable=not progress)
    try:
        while True:
            shard_rows = list(islice(rows, shard_contexts))
            if not shard_rows:
                break
            i = len(manifest["shards"])
            name = f"data-{i:05d}.arrow"
            tmp = folder / f".{name}.tmp"
            try:
                writer = ArrowWriter(features=features, path=str(tmp),
                                     writer_batch_size=batch_size)
                for j in range(0, len(shard_rows), batch_size):
                    tokens = torch.tensor(shard_rows[j:j + batch_size], dtype=torch.long)
                    acts = hook_activations(model, tokens, hooks)
                    batch = {h: a.to("cpu", _DTYPES[dtype]).numpy() for h, a in acts.items()}
                    batch["token_ids"] = tokens.to(torch.int32).numpy()
                    writer.write_batch(batch)
                    bar.update(len(tokens))
                writer.finalize()
                writer.close()
                publish(tmp, folder / name)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            digest = rows_digest(shard_rows, digest)
            manifest["shards"].append({"file": name, "contexts": len(shard_rows)})
            manifest["digest"] = digest.hexdigest()
            write_json(folder / "state.json", _state([s["file"] for s in manifest["shards"]],
                                                      digest.hexdigest()[:16]))
            write_json(folder / MANIFEST, manifest)
    except KeyboardInterrupt:
        warnings.warn(f"Interrupted: {folder} holds the {len(manifest['shards'])} complete "
                      "shards; run the same call again to continue.", stacklevel=2)
    finally:
        bar.close()
    if not manifest["shards"]:
        raise ValueError(f"The corpus gave no complete context of {ctx} tokens: give more text "
                         "or a smaller context_size.")
    return load_cached_activations(folder)


def _open_manifest(folder: Path, settings: dict[str, Any], resume: bool) -> dict[str, Any]:
    """The manifest to continue from: the folder's own when it matches `settings`, a new one for
    an empty folder; anything else is refused with what differs."""
    mpath = folder / MANIFEST
    others = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    if mpath.exists():
        old = saved_settings(mpath, settings, "a cache")
        if not resume:
            raise FileExistsError(f"{folder} already holds a cache; pass resume=True to "
                                  "continue it, or another path.")
        for p in folder.glob(".data-*.arrow.tmp"):
            p.unlink()  # a shard cut short by a kill
        return old
    if others:
        raise FileExistsError(f"{folder} is not empty and holds no interp_widgets cache "
                              f"({', '.join(sorted(others)[:5])}): give an empty or new folder.")
    return {**settings, "shards": [], "digest": None}


@dataclass
class CachedActivations:
    """Cached activations in SAELens's layout (written by us or by SAELens), read lazily.

    `hooks`: {hook: d_in}; `context_size`; `dataset`: the `datasets.Dataset` (memory-mapped);
    `bos_token_id`: from our manifest, else the token at position 0 of the first context."""

    path: Path
    dataset: Any
    hooks: dict[str, int]
    context_size: int
    bos_token_id: int | None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def n_tokens(self) -> int:
        return len(self) * self.context_size

    def __repr__(self) -> str:
        hooks = ", ".join(f"{h} [{d}]" for h, d in self.hooks.items())
        return (f"CachedActivations({str(self.path)!r}: {len(self):,} contexts of "
                f"{self.context_size} tokens; {hooks})")

    def column(self, hook: str | None = None) -> str:
        """The hook column `hook` names (the only one when None), checked."""
        if hook is None:
            if len(self.hooks) != 1:
                raise ValueError(f"This cache holds several hooks ({list(self.hooks)}): say "
                                 "which with hook=...")
            return next(iter(self.hooks))
        if hook not in self.hooks:
            raise KeyError(f"No hook {hook!r} in the cache at {self.path}; it holds "
                           f"{list(self.hooks)}.")
        return hook

    def token_ids(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """LongTensor[contexts, context_size] of contexts start..stop."""
        rows = self.dataset.with_format("numpy", columns=["token_ids"])[start:stop]["token_ids"]
        return torch.from_numpy(np.asarray(rows, dtype=np.int64))

    def activations(self, hook: str | None = None, start: int = 0,
                    stop: int | None = None) -> torch.Tensor:
        """Tensor[contexts, context_size, d_in] (float32) of contexts start..stop at `hook`."""
        hook = self.column(hook)
        rows = self.dataset.with_format("numpy", columns=[hook])[start:stop][hook]
        return torch.from_numpy(np.asarray(rows, dtype=np.float32))

    def chunks(self, hook: str | None = None, *, contexts: int = 64, skip_bos: bool = False,
               generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Tensor[n, d_in] per block of `contexts` contexts, blocks in order (or in a random
        order drawn from `generator`); without the BOS positions (row starts and document
        separators) when `skip_bos`."""
        hook = self.column(hook)
        starts = torch.arange(0, len(self), contexts)
        if generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator)]
        for start in starts.tolist():
            acts = self.activations(hook, start, start + contexts)
            if skip_bos and self.bos_token_id is not None:
                keep = self.token_ids(start, start + contexts) != self.bos_token_id
                yield acts[keep]
            else:
                yield acts.flatten(0, 1)


def load_cached_activations(path: str | os.PathLike) -> CachedActivations:
    """Read a folder of SAELens cached activations (ours, or `CacheActivationsRunner`'s)."""
    import datasets
    from datasets import Array2D

    folder = Path(path).expanduser()
    if not (folder / "state.json").exists() or not (folder / "dataset_info.json").exists():
        raise FileNotFoundError(f"{folder} is not a cached-activations folder: it needs "
                                "state.json and dataset_info.json (as datasets' save_to_disk "
                                "and SAELens's CacheActivationsRunner write them).")
    ds = datasets.load_from_disk(str(folder))
    hooks, ctx = {}, None
    for name, feat in ds.features.items():
        if isinstance(feat, Array2D):
            hooks[name] = int(feat.shape[1])
            if ctx not in (None, feat.shape[0]):
                raise ValueError(f"Hooks of {folder} have different context sizes.")
            ctx = int(feat.shape[0])
    if not hooks:
        raise ValueError(f"{folder} holds no [context, d_in] activation column (Array2D); "
                         f"its columns are {ds.column_names}.")
    bos = None
    if (folder / MANIFEST).exists():
        bos = json.loads((folder / MANIFEST).read_text("utf-8")).get("bos_token_id")
    elif "token_ids" in ds.column_names and len(ds):
        bos = int(ds.with_format("numpy", columns=["token_ids"])[0]["token_ids"][0])
    return CachedActivations(folder, ds, hooks, int(ctx), bos)
