"""Corpus-scale neuron scans: one streaming pass over a corpus for every neuron of a layer.

`scan_neurons` runs each document as its own row (BOS + document, cut to the context) in padded
batches, stopping each forward pass at the scanned hook (`layer_activations`), and folds each
batch into running state whose size does not depend on the corpus length: O(neurons x k) for
examples, O(neurons x bins) for histograms and O(neurons^2) for the correlation statistics.
Written by hand because no kept library streams top-k examples with contexts per neuron.

Two orderings make the result independent of how the corpus is split (so `NeuronScan.merge` of
shards is the same as one scan):
- Top-k: entries are ranked by (value descending, document ascending, position ascending).
- Bucket samples: each position gets a priority, a fixed bijective hash of (document, position,
  seed); a bucket keeps the `samples_per_bucket` entries of smallest priority. This is bottom-k
  ("priority") reservoir sampling: a uniform sample without replacement that merges exactly.
  Buckets are fixed intervals of activation on a signed log scale (`Grid`), so no second pass is
  needed; each bucket reports which quantiles of the neuron's distribution it spans.
Sharding assigns whole batches (batch j of `batch_size` documents goes to shard j % n_shards),
so each batch is computed exactly as in a single scan. Integer statistics (counts, histograms)
and the examples are then bit-identical to one scan; the float64 sums (mean, variance,
cross-products) are added in a different order and agree to float64 rounding.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import count, islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model import Model
from ._checks import check_neuron, d_mlp, mlp_hook

FORMAT = "interp_widgets.NeuronScan/1"
_POS_BITS = 20  # a (document, position) key is doc << 20 | pos
_EMPTY_PRIO = torch.iinfo(torch.int64).max
_CHUNK_ROWS = 512  # bucket-sample candidates are found this many rows at a time
_XTX_BLOCK = 256  # sum x x^T is kept for column blocks at or right of each row block only


@dataclass(frozen=True)
class Grid:
    """Fixed histogram bins on a signed log scale, shared by every neuron.

    A value x sits at t = sign(x) * log1p(|x| / linear); bins are evenly spaced in t
    (`bins_per_unit` per unit), so they are ~`linear` wide near 0 and a constant ratio apart for
    large values; the outermost bins also hold anything beyond ``+-limit``. Bins are (lo, hi], so
    0 falls just below the middle edge and the bins above it count exactly the values > 0.
    Bucket samples use coarser buckets of `bins_per_bucket` bins (a power of two)."""

    linear: float = 0.01
    limit: float = 1000.0
    bins_per_unit: int = 16
    bins_per_bucket: int = 16

    def __post_init__(self):
        if self.bins_per_bucket & (self.bins_per_bucket - 1) or self.bins_per_bucket < 1:
            raise ValueError(f"bins_per_bucket must be a power of two; got {self.bins_per_bucket}.")

    @property
    def units(self) -> int:
        return math.ceil(math.log1p(self.limit / self.linear))

    @property
    def n_bins(self) -> int:
        return 2 * self.units * self.bins_per_unit

    @property
    def n_buckets(self) -> int:
        return self.n_bins // self.bins_per_bucket

    def edges(self) -> torch.Tensor:
        """Tensor[n_bins + 1] float64: bin edges in activation units."""
        t = torch.linspace(-self.units, self.units, self.n_bins + 1, dtype=torch.float64)
        return self.linear * torch.expm1(t.abs()) * t.sign()

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """LongTensor like `x` [row, neuron]: the bin of each value plus neuron * n_bins (one
        flat index over every neuron's histogram)."""
        t = torch.log1p(x.abs().mul_(1 / self.linear)).copysign_(x)
        t = t.add_(self.units).mul_(self.bins_per_unit).ceil_().sub_(1)  # (lo, hi] bins
        offsets = torch.arange(x.shape[-1], dtype=t.dtype) * self.n_bins  # exact below 2^24
        return t.clamp_(0, self.n_bins - 1).add_(offsets).long()

    def bucket(self, flat_bins: torch.Tensor) -> torch.Tensor:
        """LongTensor like `flat_bins`: neuron * n_buckets + the sample bucket of each bin."""
        return flat_bins >> (self.bins_per_bucket.bit_length() - 1)


@dataclass
class Example:
    """One token position: `doc` (index in the corpus), `pos` (in the row, BOS = 0), `value`,
    and its context: `tokens` (strings), `acts` (this neuron's activation on each), `center`
    (the index of `pos` in `tokens`)."""

    doc: int
    pos: int
    value: float
    tokens: list[str]
    acts: list[float]
    center: int


@dataclass
class Bucket:
    """Activation interval (lo, hi] with `count` positions, spanning quantiles [q_lo, q_hi] of
    the neuron's distribution, and a uniform sample of its positions (`examples`)."""

    lo: float
    hi: float
    q_lo: float
    q_hi: float
    count: int
    examples: list[Example]


# ---- example pools ----------------------------------------------------------------------------


def _select(group: torch.Tensor, keys: list[tuple[torch.Tensor, bool]],
            cap: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first `cap` entries of each group when sorted by `keys` (most significant first;
    each (tensor, descending)). Returns (entry indices, their group, their rank in the group)."""
    order = torch.arange(group.numel())
    for key, desc in reversed(keys):
        order = order[torch.sort(key[order], descending=desc, stable=True).indices]
    order = order[torch.sort(group[order], stable=True).indices]
    g = group[order]
    i = torch.arange(g.numel())
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    rank = i - torch.where(first, i, torch.zeros_like(i)).cummax(0).values
    keep = rank < cap
    return order[keep], g[keep], rank[keep]


_FIELDS = ("value", "doc", "pos", "prio", "ctx", "ctx_act")


class _Pool:
    """Up to `cap` examples for each of `groups` groups, best first. Ranked by value (descending)
    then prio (ascending) when `by_value`, else by prio alone. `prio` is the (doc, pos) key for
    the top-k pool and its hash for the sample pool. Empty slots have doc -1."""

    def __init__(self, groups: int, cap: int, width: int, by_value: bool):
        self.groups, self.cap, self.width, self.by_value = groups, cap, width, by_value
        self.value = torch.full((groups, cap), -math.inf)  # [group, cap]
        self.doc = torch.full((groups, cap), -1, dtype=torch.long)
        self.pos = torch.full((groups, cap), -1, dtype=torch.long)
        self.prio = torch.full((groups, cap), _EMPTY_PRIO, dtype=torch.long)
        self.ctx = torch.full((groups, cap, width), -1, dtype=torch.int32)  # token ids
        self.ctx_act = torch.full((groups, cap, width), math.nan)  # [group, cap, width]

    def _keys(self, e: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, bool]]:
        return [(e["value"], True), (e["prio"], False)] if self.by_value else [(e["prio"], False)]

    def entries(self, groups: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The filled slots (of `groups` only, a bool mask, if given) as flat tensors."""
        filled = self.doc >= 0
        if groups is not None:
            filled &= groups[:, None]
        g, c = filled.nonzero(as_tuple=True)
        out = {f: getattr(self, f)[g, c] for f in _FIELDS}
        out["group"] = g
        return out

    def add(self, new: dict[str, torch.Tensor], contexts) -> None:
        """Merge `new` entries (group, value, doc, pos, prio) into the pool; `contexts(i)` gives
        (ctx, ctx_act) for the new entries `i` that are kept."""
        touched = torch.zeros(self.groups, dtype=torch.bool)
        touched[new["group"]] = True
        old = self.entries(touched)
        n_old = old["group"].numel()
        both = {f: torch.cat([old[f], new[f]]) for f in ("group", "value", "doc", "pos", "prio")}
        idx, g, rank = _select(both["group"], self._keys(both), self.cap)
        is_new = idx >= n_old
        ctx = torch.empty((idx.numel(), self.width), dtype=torch.int32)
        act = torch.empty((idx.numel(), self.width))
        ctx[~is_new], act[~is_new] = old["ctx"][idx[~is_new]], old["ctx_act"][idx[~is_new]]
        if is_new.any():
            ctx[is_new], act[is_new] = contexts(idx[is_new] - n_old)
        # no clearing needed: a touched group keeps all its old entries, so its new ranks
        # 0 .. count-1 overwrite every slot that was filled
        for f in ("value", "doc", "pos", "prio"):
            getattr(self, f)[g, rank] = both[f][idx]
        self.ctx[g, rank], self.ctx_act[g, rank] = ctx, act

    @classmethod
    def merged(cls, pools: Sequence[_Pool]) -> _Pool:
        """One pool holding the best entries of all `pools` (same shape and ordering)."""
        p0 = pools[0]
        out = cls(p0.groups, p0.cap, p0.width, p0.by_value)
        parts = [p.entries() for p in pools]
        e = {f: torch.cat([p[f] for p in parts]) for f in (*_FIELDS, "group")}
        idx, g, rank = _select(e["group"], out._keys(e), out.cap)
        for f in _FIELDS:
            getattr(out, f)[g, rank] = e[f][idx]
        return out

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{f}": getattr(self, f).contiguous() for f in _FIELDS}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str, by_value: bool) -> _Pool:
        groups, cap, width = t[f"{prefix}.ctx"].shape
        out = cls(groups, cap, width, by_value)
        for f in _FIELDS:
            setattr(out, f, t[f"{prefix}.{f}"])
        return out


def _mix63(keys: torch.Tensor, seed: int) -> torch.Tensor:
    """LongTensor like `keys`: a bijective hash of non-negative 63-bit keys (splitmix-style
    multiply / xor-shift steps, each invertible mod 2^63), so priorities never tie."""
    m63 = np.uint64((1 << 63) - 1)
    x = keys.cpu().numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ np.uint64((seed * 0x2545F4914F6CDD1D) & ((1 << 63) - 1))) & m63
        x = (x * np.uint64(0x9E3779B97F4A7C15)) & m63
        x ^= x >> np.uint64(29)
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & m63
        x ^= x >> np.uint64(32)
    return torch.from_numpy(x.astype(np.int64))


# ---- the scan result --------------------------------------------------------------------------


class NeuronScan:
    """What one pass over a corpus found for every neuron of one layer (see `scan_neurons`).

    Per neuron n: `top_values(n)`, `top_examples(n)`, `bucket_examples(n)`, `histogram(n)`,
    `correlations(n)`; for all neurons: `mean`, `std`, `density` (Tensor[neurons]). `partial`
    is True when the scan was interrupted (it then covers the first `n_docs` documents of its
    share). `save(path)` / `NeuronScan.load(path)`; `NeuronScan.merge(shards)`."""

    def __init__(self, meta: dict[str, Any], top: _Pool, samples: _Pool,
                 stats: dict[str, torch.Tensor]):
        self.meta = meta
        self._top, self._samples = top, samples
        self.hist: torch.Tensor = stats["hist"]  # [neuron, bin] counts
        self._sum: torch.Tensor = stats["sum"]  # [neuron] float64
        self._sumsq: torch.Tensor = stats["sumsq"]
        #: [neuron, neuron] float64 sum of x x^T, upper block triangle only (see `_xtx_row`)
        self._xtx: torch.Tensor | None = stats.get("xtx")

    # ---- construction ----

    @classmethod
    def _empty(cls, meta: dict[str, Any], grid: Grid, correlations: bool) -> NeuronScan:
        n, k, s = meta["n_neurons"], meta["k"], meta["samples_per_bucket"]
        width = sum(meta["context"]) + 1
        stats = {
            "hist": torch.zeros((n, grid.n_bins), dtype=torch.long),
            "sum": torch.zeros(n, dtype=torch.float64),
            "sumsq": torch.zeros(n, dtype=torch.float64),
        }
        if correlations:
            stats["xtx"] = torch.zeros((n, n), dtype=torch.float64)
        return cls(meta, _Pool(n, k, width, True), _Pool(n * grid.n_buckets, s, width, False),
                   stats)

    # ---- description ----

    @property
    def layer(self) -> int:
        return self.meta["layer"]

    @property
    def hook(self) -> str:
        return self.meta["hook"]

    @property
    def n_neurons(self) -> int:
        return self.meta["n_neurons"]

    @property
    def k(self) -> int:
        return self.meta["k"]

    @property
    def n_tokens(self) -> int:
        """Token positions scanned (BOS and padding excluded)."""
        return self.meta["n_tokens"]

    @property
    def n_docs(self) -> int:
        """Documents covered, empty ones included."""
        return self.meta["n_docs"]

    @property
    def n_empty(self) -> int:
        """Empty documents, skipped."""
        return self.meta["n_empty"]

    @property
    def partial(self) -> bool:
        return self.meta["partial"]

    @property
    def grid(self) -> Grid:
        return Grid(**self.meta["grid"])

    def __repr__(self) -> str:
        m = self.meta
        shards = "" if m["n_shards"] == 1 else f", shards {m['shards']} of {m['n_shards']}"
        return (f"NeuronScan({m['hook']}, {m['n_neurons']} neurons, {m['n_docs']:,} docs "
                f"({m['n_empty']} empty), {m['n_tokens']:,} tokens, k={m['k']}{shards}"
                f"{', PARTIAL' if m['partial'] else ''})")

    # ---- statistics ----

    @property
    def mean(self) -> torch.Tensor:
        """Tensor[neuron] float64: mean activation over all scanned positions."""
        return self._sum / max(self.n_tokens, 1)

    @property
    def std(self) -> torch.Tensor:
        """Tensor[neuron] float64: standard deviation (population) over all positions."""
        var = self._sumsq / max(self.n_tokens, 1) - self.mean**2
        return var.clamp_min(0).sqrt()

    @property
    def density(self) -> torch.Tensor:
        """Tensor[neuron] float64: fraction of positions where the activation is above 0."""
        above = self.hist[:, self.grid.n_bins // 2:].sum(1)  # bins are (lo, hi]: exactly x > 0
        return above.double() / max(self.n_tokens, 1)

    def correlations(self, neuron: int) -> torch.Tensor:
        """Tensor[neuron] float64: Pearson correlation of `neuron` with every neuron of the layer
        over all scanned positions (NaN where a neuron is constant)."""
        n = check_neuron(neuron, self.n_neurons)
        if self._xtx is None:
            raise ValueError("This scan kept no correlation statistics: rerun scan_neurons with "
                             "correlations=True.")
        cov = self._xtx_row(n) / max(self.n_tokens, 1) - self.mean[n] * self.mean
        std = self.std
        with torch.no_grad():
            return cov / (std[n] * std)

    def _xtx_row(self, n: int) -> torch.Tensor:
        """Tensor[neuron]: row n of the symmetric sum x x^T, of which only blocks on or above the
        block diagonal are stored (that halves the matrix product per batch)."""
        start = n // _XTX_BLOCK * _XTX_BLOCK
        row = self._xtx[n].clone()
        row[:start] = self._xtx[:start, n]
        return row

    def histogram(self, neuron: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts LongTensor[bins], edges Tensor[bins + 1]) for `neuron`; the outer bins also
        count values beyond the grid's limit."""
        n = check_neuron(neuron, self.n_neurons)
        return self.hist[n].clone(), self.grid.edges()

    # ---- examples ----

    def top_values(self, neuron: int) -> torch.Tensor:
        """Tensor[<=k]: the neuron's top activations over the corpus, descending."""
        n = check_neuron(neuron, self.n_neurons)
        return self._top.value[n][self._top.doc[n] >= 0].clone()

    def top_examples(self, neuron: int) -> list[Example]:
        """The positions of `top_values(neuron)`, with their contexts, best first."""
        n = check_neuron(neuron, self.n_neurons)
        return self._examples(self._top, n, range(self.k))

    def bucket_examples(self, neuron: int) -> list[Bucket]:
        """The non-empty activation buckets of `neuron`, highest first, each with a uniform
        sample of its positions (sorted by value) and the quantiles it spans."""
        n = check_neuron(neuron, self.n_neurons)
        grid, s = self.grid, self.meta["samples_per_bucket"]
        counts = self.hist[n].view(grid.n_buckets, grid.bins_per_bucket).sum(1)
        below = torch.cumsum(counts, 0) - counts
        total, edges = max(int(counts.sum()), 1), grid.edges()
        out = []
        for b in reversed(range(grid.n_buckets)):
            if counts[b] == 0:
                continue
            g = n * grid.n_buckets + b
            ex = sorted(self._examples(self._samples, g, range(s)), key=lambda e: -e.value)
            out.append(Bucket(
                lo=float(edges[b * grid.bins_per_bucket]),
                hi=float(edges[(b + 1) * grid.bins_per_bucket]),
                q_lo=int(below[b]) / total, q_hi=(int(below[b]) + int(counts[b])) / total,
                count=int(counts[b]), examples=ex))
        return out

    def _examples(self, pool: _Pool, group: int, slots: Iterable[int]) -> list[Example]:
        vocab, before = self.meta["vocab"], self.meta["context"][0]
        out = []
        for c in slots:
            if pool.doc[group, c] < 0:
                break
            ids = pool.ctx[group, c].tolist()
            acts = pool.ctx_act[group, c].tolist()
            keep = [i for i, t in enumerate(ids) if t >= 0]
            out.append(Example(
                doc=int(pool.doc[group, c]), pos=int(pool.pos[group, c]),
                value=float(pool.value[group, c]),
                tokens=[vocab.get(str(ids[i]), f"<{ids[i]}>") for i in keep],
                acts=[acts[i] for i in keep], center=keep.index(before)))
        return out

    # ---- persistence ----

    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {**self._top.tensors("top"), **self._samples.tensors("samples"),
             "hist": self.hist, "sum": self._sum, "sumsq": self._sumsq}
        if self._xtx is not None:
            t["xtx"] = self._xtx
        return {k: v.contiguous() for k, v in t.items()}

    def save(self, path: str | Path) -> Path:
        """Write the scan to one safetensors file (metadata as JSON in its header), atomically:
        a temporary file in the same folder, then a rename. Returns the path."""
        from safetensors.torch import save_file

        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            save_file(self._tensors(), tmp, metadata={"format": FORMAT,
                                                      "meta": json.dumps(self.meta)})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeuronScan:
        """Read a scan written by `save`."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No neuron scan at {path} (write one with scan.save(path)).")
        try:
            with safe_open(str(path), "pt") as f:
                header = f.metadata() or {}
        except Exception as err:  # safetensors raises its own error type for a bad header
            raise ValueError(f"{path} is not a safetensors file ({err}); a NeuronScan file is "
                             "written by scan.save(path).") from err
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a NeuronScan file (format {header.get('format')!r}, "
                             f"expected {FORMAT!r}).")
        t = load_file(str(path))
        stats = {k: t[k] for k in ("hist", "sum", "sumsq", "xtx") if k in t}
        return cls(json.loads(header["meta"]), _Pool.from_tensors(t, "top", True),
                   _Pool.from_tensors(t, "samples", False), stats)

    # ---- sharding ----

    _SAME = ("model", "layer", "hook", "n_neurons", "k", "context", "samples_per_bucket", "grid",
             "seed", "n_shards", "batch_size")

    @classmethod
    def merge(cls, scans: Sequence[NeuronScan]) -> NeuronScan:
        """One scan from the scans of disjoint shards of the same corpus (same settings)."""
        scans = sorted(scans, key=lambda s: s.meta["shards"])
        if not scans:
            raise ValueError("NeuronScan.merge needs at least one scan.")
        m0 = scans[0].meta
        for s in scans[1:]:
            diff = [f for f in cls._SAME if s.meta[f] != m0[f]]
            if diff:
                raise ValueError("These scans differ in " + ", ".join(
                    f"{f} ({m0[f]!r} vs {s.meta[f]!r})" for f in diff) + ": only scans of one "
                    "corpus with the same settings (and shard=i of the same n_shards) can merge.")
        shards = [i for s in scans for i in s.meta["shards"]]
        if len(set(shards)) != len(shards):
            raise ValueError(f"Shards {sorted(shards)} overlap: each shard may be merged once.")
        if len({s._xtx is None for s in scans}) > 1:
            raise ValueError("Some scans kept correlation statistics and some did not.")
        totals = {s.meta["corpus_docs"] for s in scans if not s.partial}
        if len(totals) > 1:
            raise ValueError(f"The shards saw corpora of different lengths {sorted(totals)}: "
                             "scan the same corpus in every shard.")
        meta = dict(m0, shards=sorted(shards), partial=any(s.partial for s in scans),
                    vocab={k: v for s in scans for k, v in s.meta["vocab"].items()})
        for f in ("n_docs", "n_empty", "n_tokens", "n_truncated"):
            meta[f] = sum(s.meta[f] for s in scans)
        stats = {f: sum(getattr(s, a) for s in scans[1:]) + getattr(scans[0], a)
                 for f, a in (("hist", "hist"), ("sum", "_sum"), ("sumsq", "_sumsq"))}
        if scans[0]._xtx is not None:
            stats["xtx"] = sum(s._xtx for s in scans[1:]) + scans[0]._xtx
        return cls(meta, _Pool.merged([s._top for s in scans]),
                   _Pool.merged([s._samples for s in scans]), stats)

    # ---- one batch ----

    def _add_batch(self, tokens: torch.Tensor, mask: torch.Tensor, acts: torch.Tensor,
                   docs: torch.Tensor) -> None:
        """Fold one batch in. tokens, mask: [batch, pos]; acts: [batch, pos, neuron] float32;
        docs: [batch] corpus index of each row."""
        valid = mask.bool().clone()
        valid[:, 0] = False  # BOS
        rb, rp = valid.nonzero(as_tuple=True)  # [row]
        if rb.numel() == 0:
            return
        x = acts[valid]  # [row, neuron], rows in (rb, rp) order
        keys = (docs[rb] << _POS_BITS) | rp  # [row]
        if self._xtx is not None:  # float32 within a batch (half the time), float64 across
            for s in range(0, x.shape[1], _XTX_BLOCK):
                block = x[:, s: s + _XTX_BLOCK].T @ x[:, s:]  # [block, neuron - s]
                self._xtx[s: s + _XTX_BLOCK, s:] += block  # promoted to float64 in place
                self._sumsq[s: s + _XTX_BLOCK] += block.diagonal()
        else:
            self._sumsq += (x * x).sum(0, dtype=torch.float64)
        self._sum += x.sum(0, dtype=torch.float64)
        grid = self.grid
        n_neurons = x.shape[1]
        bins = grid.index(x)  # [row, neuron], flat over all neurons' bins
        self.hist += torch.bincount(bins.view(-1),
                                    minlength=n_neurons * grid.n_bins).view(n_neurons, -1)
        self.meta["n_tokens"] += int(rb.numel())

        lengths = mask.sum(1)
        before, after = self.meta["context"]
        window = torch.arange(-before, after + 1)

        def contexts(r: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(ids IntTensor[entry, width], acts Tensor[entry, width]) around rows r, neuron n."""
            b = rb[r][:, None]
            at = rp[r][:, None] + window  # [entry, width]
            ok = (at >= 1) & (at < lengths[b])
            at = at.clamp(0, tokens.shape[1] - 1)
            ids = torch.where(ok, tokens[b, at], -1).int()
            vals = torch.where(ok, acts[b, at, n[:, None]], math.nan)
            return ids, vals

        # top-k: only values above the pool's k-th (and, when that lets many through, within
        # this batch's top k) can enter
        above = x > self._top.value[:, -1]  # [row, neuron]
        if int(torch.count_nonzero(above)) > 4 * self.k * n_neurons:
            above &= x >= x.topk(min(self.k, x.shape[0]), dim=0).values[-1]
        r, n = above.nonzero(as_tuple=True)
        if r.numel():
            self._top.add({"group": n, "value": x[r, n], "doc": docs[rb[r]], "pos": rp[r],
                           "prio": keys[r]}, lambda i: contexts(r[i], n[i]))

        # bucket samples: a chunk of rows at a time against the current thresholds (the s-th
        # smallest priority kept per bucket), which fall as the pool fills
        prio = _mix63(keys, self.meta["seed"])
        groups = grid.bucket(bins)  # [row, neuron]: neuron * n_buckets + bucket
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            g = groups[start: start + _CHUNK_ROWS]
            thr = self._samples.prio[:, -1]  # [neuron * bucket]
            thr = thr.index_select(0, g.reshape(-1)).view_as(g)  # 30x faster than thr[g]
            r, n = (prio[start: start + _CHUNK_ROWS, None] < thr).nonzero(as_tuple=True)
            if r.numel() == 0:
                continue
            r = r + start
            self._samples.add({"group": groups[r, n], "value": x[r, n], "doc": docs[rb[r]],
                               "pos": rp[r], "prio": prio[r]},
                              lambda i, r=r, n=n: contexts(r[i], n[i]))

    def _finish(self, model: Model) -> None:
        """Record the strings of the tokens that the stored contexts use."""
        ids = torch.cat([self._top.ctx.view(-1), self._samples.ctx.view(-1)]).unique()
        ids = [i for i in ids.tolist() if i >= 0 and str(i) not in self.meta["vocab"]]
        self.meta["vocab"].update({str(i): model.tokenizer.decode([i]) for i in ids})


# ---- the scan -----------------------------------------------------------------------------------


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
    (None when the batch was skipped); `n_truncated` counts the documents that were cut."""

    index: int
    start: int
    size: int
    rows: list[tuple[int, list[int]]] | None
    n_truncated: int = 0


def iter_corpus(model: Model, corpus: Iterable[str | Sequence[int]], batch_size: int,
                keep=None) -> Iterator[CorpusBatch]:
    """The corpus in batches of `batch_size` documents, tokenized as rows of BOS + document, cut
    to the model's context. Batches j with ``keep(j)`` false are passed over untokenized."""
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be an iterable of documents, not one string: wrap it in a "
                        "list ([text]).")
    bos, n_ctx = model.tokenizer.bos_token_id, model.cfg.n_ctx
    if bos is None:
        raise ValueError("This model's tokenizer has no BOS token, which corpus scans put first "
                         "in every row.")
    it, start = iter(corpus), 0
    for j in count():
        batch = list(islice(it, batch_size))
        if not batch:
            return
        if keep is not None and not keep(j):
            yield CorpusBatch(j, start, len(batch), None)
        else:
            ids = _tokenize(model, batch, start)
            rows = [(start + i, [bos] + d[: n_ctx - 1]) for i, d in enumerate(ids) if d]
            yield CorpusBatch(j, start, len(batch), rows, sum(len(d) > n_ctx - 1 for d in ids))
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
                 correlations: bool = True, grid: Grid | None = None, shard: int = 0,
                 n_shards: int = 1, seed: int = 0, progress: bool = True) -> NeuronScan:
    """Scan every neuron of `layer` over `corpus` in one streaming pass (see the module docstring).

    corpus: an iterable of strings or token-id lists; each document is its own row (BOS, then the
        document, cut to the model's context). Empty documents are skipped and counted.
    k: top examples kept per neuron. batch_size: documents per forward pass (default 32).
    hook: the MLP activation to read ("mlp.hook_post" or "mlp.hook_pre").
    context: (tokens before, tokens after) kept around each example.
    samples_per_bucket: sampled positions kept per activation bucket (see `Grid`).
    correlations: keep sum x x^T (float64 [neuron, neuron]; each batch's product is taken in
        float32, which is accurate to ~1e-6 relative and takes half the time) for
        `NeuronScan.correlations`.
    shard, n_shards: scan only batches j with j % n_shards == shard; `NeuronScan.merge` joins them.
    Ctrl-C (KeyboardInterrupt) stops the scan and returns what it found, marked `partial`.
    """
    name = mlp_hook(model, layer, hook)
    batch_size = 32 if batch_size is None else batch_size
    for label, v, lo in (("k", k, 1), ("batch_size", batch_size, 1), ("n_shards", n_shards, 1),
                         ("samples_per_bucket", samples_per_bucket, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{label} must be an int >= {lo}; got {v!r}.")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0 .. {n_shards - 1} (n_shards={n_shards}); "
                         f"got {shard!r}.")
    if len(context) != 2 or min(context) < 0:
        raise ValueError(f"context must be (tokens before, tokens after), both >= 0; got "
                         f"{context!r}.")
    n_ctx = model.cfg.n_ctx
    if n_ctx >= 1 << _POS_BITS:
        raise ValueError(f"Contexts longer than {1 << _POS_BITS} tokens are not supported.")
    grid = grid or Grid()
    meta = {
        "format": FORMAT, "model": model.name, "layer": layer, "hook": name,
        "n_neurons": d_mlp(model), "k": k, "context": list(context),
        "samples_per_bucket": samples_per_bucket, "grid": asdict(grid), "seed": seed,
        "batch_size": batch_size, "shards": [shard], "n_shards": n_shards,
        "n_docs": 0, "n_empty": 0, "n_tokens": 0, "n_truncated": 0, "corpus_docs": 0,
        "partial": False, "vocab": {},
    }
    scan = NeuronScan._empty(meta, grid, correlations)
    with _scan_progress(meta, corpus, f"scan {name}", progress) as bar:
        for batch in iter_corpus(model, corpus, batch_size, keep=lambda j: j % n_shards == shard):
            meta["corpus_docs"] = batch.start + batch.size
            if batch.rows is not None:
                if batch.rows:
                    tokens, mask, acts = layer_activations(model, [r for _, r in batch.rows],
                                                           name)
                    acts = acts.float().cpu()  # [batch, pos, neuron]
                    docs = torch.tensor([i for i, _ in batch.rows])
                with _defer_interrupt():
                    if batch.rows:
                        scan._add_batch(tokens.cpu(), mask.cpu(), acts, docs)
                        del acts  # before the next forward, so two batches never coexist
                    meta["n_docs"] += batch.size
                    meta["n_empty"] += batch.size - len(batch.rows)
                    meta["n_truncated"] += batch.n_truncated
            bar.update(batch.size)
    scan._finish(model)
    return scan
