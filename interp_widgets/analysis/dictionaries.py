"""PCA and ICA dictionaries: baselines with an SAE's interface. `fit_pca` / `fit_ica` fit
in-memory activations with scikit-learn; `fit_dictionary` streams any number of tokens into
streaming PCA, torch FastICA or overcomplete ICA (`streaming_pca`, `fastica`,
`overcomplete_ica`).

A `LinearDictionary` has `encode`, `decode`, `forward`, `W_dec`, `d_in`, `d_sae` and `hook_name`,
so `evaluate_sae`, splicing and the feature views take it like an SAE, and "sparse coding beats
PCA/ICA" is one table (`interp_widgets.sae.evaluate.evaluation_table`). With `k`, only the k
codes of largest magnitude are kept per token, which compares the baselines at the SAE's L0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ..model import Model


class LinearDictionary(nn.Module):
    """codes = (x - b_dec) @ W_enc (the top k by |code| |W_dec row| if `k`), and
    x_hat = codes @ W_dec + b_dec.

    W_enc: [d_in, d_sae]; W_dec: [d_sae, d_in]; b_dec: [d_in] (the data mean)."""

    def __init__(self, W_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor, *,
                 kind: str, k: int | None = None, hook_name: str | None = None):
        super().__init__()
        self.W_enc = nn.Parameter(W_enc.float(), requires_grad=False)
        self.W_dec = nn.Parameter(W_dec.float(), requires_grad=False)
        self.b_dec = nn.Parameter(b_dec.float(), requires_grad=False)
        self.d_in, self.d_sae = W_dec.shape[1], W_dec.shape[0]
        self.kind, self.k, self.hook_name = kind, k, hook_name
        self.arch, self.reshape_activations = kind, "none"

    @property
    def name(self) -> str:
        """What the basis is, e.g. "ica 128 @ blocks.1.hook_resid_pre"."""
        return f"{self.kind} {self.d_sae}" + (f" @ {self.hook_name}" if self.hook_name else "")

    @property
    def directions(self) -> torch.Tensor:
        """Tensor[n_units, d_in]: each unit's output direction (W_dec's rows)."""
        return self.W_dec

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, d_in={self.d_in}, d_sae={self.d_sae}, k={self.k}"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[..., d_sae]: codes of x [..., d_in]."""
        x = x.flatten(-2) if x.shape[-1] != self.d_in and x.ndim >= 2 else x
        codes = (x.to(self.W_enc.device, self.W_enc.dtype) - self.b_dec) @ self.W_enc
        if self.k is not None and self.k < self.d_sae:
            size = codes.abs() * self.W_dec.norm(dim=-1)  # each code's share of the output
            idx = size.topk(self.k, dim=-1, sorted=False).indices
            codes = torch.zeros_like(codes).scatter_(-1, idx, codes.gather(-1, idx))
        return codes

    encode_pre = encode

    def decode(self, codes: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor[..., d_in]: reconstruction from codes [..., d_sae]."""
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).reshape(x.shape).to(x.device, x.dtype)

    def feature_directions(self) -> torch.Tensor:
        """Tensor[d_sae, d_in]: what one unit of each code adds to the reconstruction."""
        return self.W_dec


def _as_numpy(acts: torch.Tensor | np.ndarray) -> np.ndarray:
    a = acts.detach().float().cpu().numpy() if isinstance(acts, torch.Tensor) else acts
    if a.ndim != 2:
        raise ValueError(f"Activations must be [n, d_in]; got shape {list(a.shape)}.")
    return a


def fit_pca(acts: torch.Tensor | np.ndarray, n_components: int, *, k: int | None = None,
            hook_name: str | None = None, seed: int = 0) -> LinearDictionary:
    """PCA dictionary of activations [n, d_in]: the top `n_components` principal directions
    (sklearn `PCA`); codes are projections onto them."""
    from sklearn.decomposition import PCA

    a = _as_numpy(acts)
    if not 0 < n_components <= min(a.shape):
        raise ValueError(f"n_components must be between 1 and min(n, d_in) = {min(a.shape)}; "
                         f"got {n_components}.")
    pca = PCA(n_components=n_components, random_state=seed).fit(a)
    comps = torch.from_numpy(pca.components_)  # [n_components, d_in], orthonormal rows
    return LinearDictionary(comps.T, comps, torch.from_numpy(pca.mean_), kind="pca", k=k,
                            hook_name=hook_name)


def fit_ica(acts: torch.Tensor | np.ndarray, n_components: int, *, k: int | None = None,
            hook_name: str | None = None, seed: int = 0, max_iter: int = 400) -> LinearDictionary:
    """ICA dictionary of activations [n, d_in] (sklearn `FastICA`, unit-variance sources):
    `W_enc` unmixes, `W_dec` is the mixing matrix."""
    import warnings

    from sklearn.decomposition import FastICA

    a = _as_numpy(acts).astype(np.float64)  # whitening near-null directions needs float64
    if not 0 < n_components <= a.shape[1]:
        raise ValueError(f"ICA finds at most d_in = {a.shape[1]} components; got {n_components}.")
    sv = np.linalg.svd(a - a.mean(0), compute_uv=False)
    rank = int((sv > sv[0] * 1e-4).sum())
    if n_components > rank:  # e.g. a residual stream with LayerNorm folded loses one dimension
        warnings.warn(f"The activations span only {rank} of {a.shape[1]} dimensions: fitting "
                      f"{rank} ICA components instead of {n_components}.", stacklevel=2)
        n_components = rank
    ica = FastICA(n_components=n_components, whiten="unit-variance", random_state=seed,
                  max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        ica.fit(a)
    return LinearDictionary(torch.from_numpy(ica.components_.T.copy()),
                            torch.from_numpy(ica.mixing_.T.copy()), torch.from_numpy(ica.mean_),
                            kind="ica", k=k, hook_name=hook_name)


KINDS = ("pca", "ica", "overcomplete_ica")


def fit_dictionary(model: Model, corpus: Any, hook: str, kind: str, n_components: int, *,
                   k: int | None = None, max_tokens: int | None = None, seed: int = 0,
                   skip_bos: bool = True, batch_size: int = 16,
                   device: str | torch.device | None = None, spill_dir: str | None = None,
                   progress: bool = False, **options: Any) -> LinearDictionary:
    """Fit a PCA, ICA or overcomplete-ICA dictionary (`kind`) on `hook`'s activations over the
    first `max_tokens` tokens (default 50,000) of a corpus, streamed in constant memory, so any
    token budget (an SAE's) fits:

    - "pca": one pass, the float64 covariance summed batch by batch (`fit_streaming_pca`);
    - "ica": torch FastICA (`fit_fastica`), one pass per iteration; activations from the model
      are spilled once to a temporary folder of float32 .npy chunks (in `spill_dir`, default
      the system's temp; max_tokens x d x 4 bytes) and read back chunk by chunk;
    - "overcomplete_ica": RICA (`fit_rica`, `n_components` >= d): one pass for the whitening,
      then one epoch of minibatch training over the same tokens.

    corpus: documents (run through `model`, BOS left out with `skip_bos`, as `train_sae` and
        `evaluate_sae` read them); SAELens cached activations (`iw.cache_activations`'s
        folder or the `CachedActivations`), read from disk instead; or activations
        Tensor[n, d] already collected (e.g. the very tokens an SAE was trained on).
    options: passed to the fitter (e.g. fun=, max_iter=, tol= for ICA; sparsity=, lr=,
        batch_size= as train_batch_size for overcomplete ICA)."""
    from .fastica import fit_fastica
    from .overcomplete_ica import fit_rica
    from .streaming_pca import fit_streaming_pca

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}; got {kind!r}.")
    max_tokens = 50_000 if max_tokens is None else max_tokens
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2; got {max_tokens}.")
    read, cached = _reader(model, corpus, hook, max_tokens, batch_size, skip_bos)
    if kind == "pca":
        return fit_streaming_pca(read(), n_components, k=k, hook_name=hook,
                                 device=device or "cpu")
    if kind == "overcomplete_ica":
        train_batch = options.pop("train_batch_size", 4096)
        return fit_rica(_Reiterable(read), n_components, total_samples=max_tokens,
                        whiten_samples=max_tokens, batch_size=min(train_batch, max_tokens),
                        hook=hook, k=k, seed=seed, device=device, progress=progress,
                        **options)
    if cached:
        return fit_fastica(read, n_components, k=k, hook_name=hook, seed=seed, device=device,
                           progress=progress, **options)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="iw-ica-", dir=spill_dir) as tmp:
        files = _spill(read(), Path(tmp))
        return fit_fastica(lambda: (torch.from_numpy(np.load(f)) for f in files), n_components,
                           k=k, hook_name=hook, seed=seed, device=device, progress=progress,
                           **options)


class _Reiterable:
    """An iterable that calls `read()` for a fresh pass each time it is iterated."""

    def __init__(self, read: Callable[[], Iterator[torch.Tensor]]):
        self.read = read

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.read()


def _reader(model: Model, corpus: Any, hook: str, max_tokens: int, batch_size: int,
            skip_bos: bool) -> tuple[Callable[[], Iterator[torch.Tensor]], bool]:
    """(a function giving a fresh pass over the first `max_tokens` activations [n_i, d] each
    call, whether they come from cached activations)."""
    import os

    from ..sae.activations import limited_activations

    is_folder = isinstance(corpus, (str, os.PathLike)) and Path(corpus).expanduser().is_dir()
    if is_folder or type(corpus).__name__ == "CachedActivations" or \
            isinstance(corpus, torch.Tensor):
        from .fastica import passes

        whole = passes(corpus, hook=hook, skip_bos=skip_bos)

        def cut() -> Iterator[torch.Tensor]:
            n = 0
            for chunk in whole():
                yield chunk[:max_tokens - n]
                n += len(chunk)
                if n >= max_tokens:
                    return

        return cut, True
    if isinstance(corpus, str):
        raise TypeError("corpus must be a list of documents (or cached activations), not one "
                        "string: wrap it in a list.")
    model.check_hook_names([hook])
    docs = list(corpus)
    return (lambda: limited_activations(model, docs, hook, max_tokens=max_tokens,
                                        batch_size=batch_size, skip_bos=skip_bos)), False


def _spill(chunks: Iterable[torch.Tensor], folder: Path, rows: int = 65536) -> list[Path]:
    """Write a stream of Tensor[n_i, d] to float32 .npy files of about `rows` rows each (NaN/inf
    refused with the batch and row where it is); returns the files in order."""
    from .streaming_pca import check_finite

    files: list[Path] = []
    pending: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        f = folder / f"{len(files):06d}.npy"
        np.save(f, torch.cat(pending).float().cpu().numpy())
        files.append(f)
        pending.clear()

    for i, c in enumerate(chunks):
        c = c.flatten(0, -2)
        check_finite(c, i)
        pending.append(c)
        size += len(c)
        if size >= rows:
            flush()
            size = 0
    if pending:
        flush()
    return files
