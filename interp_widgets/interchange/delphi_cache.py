"""Delphi's latent cache: write it (`write_delphi_cache`) and read it (`load_delphi_cache`).

The layout is the one EleutherAI's Delphi writes in `LatentCache.save_splits` and reads in
`latents.loader.LatentDataset` / `TensorBuffer` (seen in eai-delphi 0.1.3):

    ROOT/{hookpoint}/config.json             the cache settings (Delphi's CacheConfig fields:
                                             dataset_repo, dataset_split, dataset_name,
                                             dataset_column, batch_size, cache_ctx_len,
                                             n_tokens, n_splits) and model_name
    ROOT/{hookpoint}/{start}_{end}.safetensors   latents start..end (inclusive), split evenly:
        locations    [n, 3] (context, position, latent - start), uint16 where all fit, else uint32
        activations  [n] float16, the nonzero (|a| > 1e-5) activations at those locations
        tokens       [contexts, cache_ctx_len], the token rows (the same in every split)

Ours streams: each forward batch's nonzeros are appended to raw files per split, and the splits
are assembled at the end one at a time, so memory holds one batch, then one split, never the
whole cache. A progress file makes an interrupted write resume from its last complete batch.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._files import publish, saved_settings, write_json
from .contexts import hook_activations, packed_contexts
from .units_adapter import unit_encoder

if TYPE_CHECKING:
    from ..model import Model

THRESHOLD = 1e-5  # Delphi keeps |a| > 1e-5
_WORK = ".iw_delphi_work"


def split_bounds(n_units: int, n_splits: int) -> list[tuple[int, int]]:
    """(start, end) inclusive of each split, as Delphi draws them (evenly spaced boundaries)."""
    edges = torch.linspace(0, n_units, steps=n_splits + 1).long().tolist()
    return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def write_delphi_cache(model: Model, basis: Any, corpus: Iterable[Any], path: str | os.PathLike,
                       *, hook: str | None = None, context_size: int = 64,
                       max_tokens: int | None = None, n_splits: int = 5, batch_size: int = 16,
                       dataset: str = "interp_widgets corpus", progress: bool = True
                       ) -> DelphiCache:
    """Run `model` over `corpus`, encode `hook`'s activations with `basis` (an SAE or any unit
    basis) and write Delphi's latent cache for them under `path`/{hook}; returns it read back.

    Contexts are packed rows of `context_size` tokens (see `contexts.packed_contexts`), at most
    `max_tokens` tokens in all. `dataset` is recorded as the config's dataset_repo (Delphi's
    loader re-tokenizes from it only when it is not given the tokens, which ours always are).
    Ctrl-C stops after the last complete batch; calling again with the same arguments resumes.
    """
    from tqdm.auto import tqdm

    enc = unit_encoder(model, basis, hook)
    bounds = split_bounds(enc.n_units, n_splits)
    max_ctx = None if max_tokens is None else max_tokens // context_size
    root = Path(path).expanduser()
    folder = root / enc.hook
    work = folder / _WORK
    settings = {"model": model.name, "hook": enc.hook, "basis": enc.name,
                "n_units": enc.n_units, "context_size": context_size, "max_contexts": max_ctx,
                "n_splits": n_splits, "batch_size": batch_size}
    state = _resume_state(folder, work, settings)
    files = {name: open(work / name, "r+b" if (work / name).exists() else "w+b")
             for name in ["tokens.i32"] + [f"{s}.loc" for s in range(len(bounds))]
             + [f"{s}.act" for s in range(len(bounds))]}
    try:
        for name, f in files.items():  # drop what a kill left after the last complete batch
            f.truncate(state["bytes"].get(name, 0))
            f.seek(0, os.SEEK_END)
        rows = packed_contexts(model, corpus, context_size)
        done = state["contexts"]
        rows = islice(rows, done, max_ctx)
        bar = tqdm(total=max_ctx, initial=done, unit="ctx", desc=f"delphi cache {enc.hook}",
                   disable=not progress)
        starts = torch.tensor([a for a, _ in bounds])
        try:
            while True:
                batch = list(islice(rows, batch_size))
                if not batch:
                    break
                tokens = torch.tensor(batch, dtype=torch.long)
                units = enc.encode(hook_activations(model, tokens, [enc.hook])[enc.hook])
                loc = (units.abs() > THRESHOLD).nonzero()  # [n, 3]: context, pos, unit
                act = units[loc[:, 0], loc[:, 1], loc[:, 2]].to(torch.float16)
                loc[:, 0] += done
                split = torch.bucketize(loc[:, 2], starts, right=True) - 1
                loc[:, 2] -= starts[split]
                files["tokens.i32"].write(tokens.to(torch.int32).numpy().tobytes())
                for s in range(len(bounds)):
                    m = split == s
                    files[f"{s}.loc"].write(loc[m].to(torch.int32).numpy().tobytes())
                    files[f"{s}.act"].write(act[m].numpy().tobytes())
                done += len(batch)
                for f in files.values():
                    f.flush()
                state = {**settings, "contexts": done,
                         "bytes": {n: f.tell() for n, f in files.items()}}
                write_json(work / "progress.json", state)
                bar.update(len(batch))
        except KeyboardInterrupt:
            warnings.warn(f"Interrupted after {done:,} contexts: run the same call again to "
                          "continue.", stacklevel=2)
            raise
        finally:
            bar.close()
    finally:
        for f in files.values():
            f.close()
    if done == 0:
        raise ValueError(f"The corpus gave no complete context of {context_size} tokens: give "
                         "more text or a smaller context_size.")
    _assemble(folder, work, bounds, context_size, done)
    config = {"dataset_repo": dataset, "dataset_split": "", "dataset_name": "",
              "dataset_column": "text", "batch_size": batch_size, "cache_ctx_len": context_size,
              "n_tokens": done * context_size, "n_splits": len(bounds),
              "model_name": model.name, "basis": enc.name}
    write_json(folder / "config.json", config)
    shutil.rmtree(work)
    return load_delphi_cache(root, hooks=[enc.hook])


def _resume_state(folder: Path, work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    progress = work / "progress.json"
    if progress.exists():
        return saved_settings(progress, settings, "an unfinished Delphi cache")
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} already holds files: give another path (or delete it).")
    work.mkdir(parents=True, exist_ok=True)
    return {**settings, "contexts": 0, "bytes": {}}


def _assemble(folder: Path, work: Path, bounds: list[tuple[int, int]], ctx: int,
              n_contexts: int) -> None:
    """Write each split's safetensors from the raw files, one split in memory at a time."""
    from safetensors.numpy import save_file

    tokens = np.fromfile(work / "tokens.i32", dtype=np.int32).reshape(n_contexts, ctx)
    for s, (start, end) in enumerate(bounds):
        loc = np.fromfile(work / f"{s}.loc", dtype=np.int32).reshape(-1, 3)
        act = np.fromfile(work / f"{s}.act", dtype=np.float16)
        small = len(loc) == 0 or (loc[:, 2].max() < 2**16 and loc[:, 0].max() < 2**16)
        out = folder / f"{start}_{end}.safetensors"
        tmp = folder / f".{out.name}.tmp"
        save_file({"locations": loc.astype(np.uint16 if small else np.uint32),
                   "activations": act, "tokens": tokens}, str(tmp))
        publish(tmp, out)


@dataclass
class DelphiCache:
    """A Delphi latent cache read back: per hook its config, token rows and split files."""

    path: Path
    configs: dict[str, dict[str, Any]]
    splits: dict[str, list[tuple[int, int, Path]]]

    @property
    def hooks(self) -> list[str]:
        return list(self.configs)

    def __repr__(self) -> str:
        parts = [f"{h} ({len(s)} splits, latents 0..{s[-1][1]})" for h, s in self.splits.items()]
        return f"DelphiCache({str(self.path)!r}: {'; '.join(parts)})"

    def _hook(self, hook: str | None) -> str:
        if hook is None:
            if len(self.configs) != 1:
                raise ValueError(f"This cache holds several hooks ({self.hooks}): say which.")
            return self.hooks[0]
        if hook not in self.configs:
            raise KeyError(f"No hook {hook!r} in the Delphi cache at {self.path}; it holds "
                           f"{self.hooks}.")
        return hook

    def tokens(self, hook: str | None = None) -> torch.Tensor:
        """LongTensor[contexts, cache_ctx_len]: the token rows the cache was made from."""
        from safetensors.numpy import load_file

        path = self.splits[self._hook(hook)][0][2]
        return torch.from_numpy(load_file(str(path))["tokens"].astype(np.int64))

    def latents(self, hook: str | None = None, split: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(locations LongTensor[n, 3] with absolute latent ids, activations Tensor[n] float32)
        of one split, or of all when `split` is None."""
        from safetensors.numpy import load_file

        parts = self.splits[self._hook(hook)]
        locs, acts = [], []
        for start, _, path in parts if split is None else [parts[split]]:
            data = load_file(str(path))
            loc = torch.from_numpy(data["locations"].astype(np.int64))
            loc[:, 2] += start
            locs.append(loc)
            acts.append(torch.from_numpy(data["activations"].astype(np.float32)))
        return torch.cat(locs), torch.cat(acts)

    def dense(self, hook: str | None = None) -> torch.Tensor:
        """Tensor[contexts, cache_ctx_len, n_latents]: every latent's activation (zeros where
        the cache holds none). For checks on small caches."""
        hook = self._hook(hook)
        loc, act = self.latents(hook)
        n, ctx = self.tokens(hook).shape
        out = torch.zeros(n, ctx, self.splits[hook][-1][1] + 1)
        out[loc[:, 0], loc[:, 1], loc[:, 2]] = act
        return out


def load_delphi_cache(path: str | os.PathLike, hooks: list[str] | None = None) -> DelphiCache:
    """Read the Delphi latent cache under `path` (one folder per hookpoint, as Delphi writes)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"No Delphi cache folder at {root}.")
    names = hooks or sorted(p.name for p in root.iterdir()
                            if p.is_dir() and (p / "config.json").exists())
    if not names:
        raise FileNotFoundError(f"{root} holds no hookpoint folder with a config.json (Delphi "
                                "writes ROOT/{hookpoint}/config.json beside its splits).")
    configs, splits = {}, {}
    for name in names:
        folder = root / name
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} has no config.json, which Delphi's loader needs.")
        configs[name] = json.loads((folder / "config.json").read_text("utf-8"))
        parts = []
        for f in folder.glob("*.safetensors"):
            try:
                start, end = (int(x) for x in f.stem.split("_"))
            except ValueError:
                raise ValueError(f"{f} is not named START_END.safetensors as Delphi's splits "
                                 "are.") from None
            parts.append((start, end, f))
        if not parts:
            raise FileNotFoundError(f"{folder} holds no split files (START_END.safetensors).")
        splits[name] = sorted(parts)
    return DelphiCache(root, configs, splits)
