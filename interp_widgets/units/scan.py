"""`scan(model, basis, corpus)`: one streaming pass over a corpus for every unit of a basis,
and its result, `UnitScan`.

Each document is its own row (BOS + document, cut to the context) in padded batches; each
forward pass stops at the basis's hook (`analysis.corpus.layer_activations`), the basis encodes
the activations, and the batch is folded into state whose size does not depend on the corpus
length. Only nonzero activations are folded in one by one, so a sparse SAE costs what its
nonzeros cost and a dense layer of neurons what its values cost. Per unit:
- top-k and bottom-k examples with contexts (bottom: the most negative values, only values < 0,
  kept for signed bases; an unsigned unit's negative tail, e.g. GELU's floor at -0.17, is noise);
- bucket samples: a uniform sample of the unit's nonzero positions in each activation bucket
  (`Grid`), and the quantiles each bucket spans among the unit's nonzero values;
- a histogram (`Grid`; of nonzero values for a sparse basis, whose zeros mean "off" and are
  only counted), sums for mean / std, and optionally sum x x^T (co-activations);
and for all units one uniform random sample of corpus positions (bottom-`n_random` by a hash of
(document, position)), each with every unit's activations over its context window, kept sparse:
`random_examples(u, n)` draws from it, so a unit fires on its random records at its corpus rate.

Density: an unsigned unit (neurons of a non-gated MLP, SAE / transcoder latents) fires where
a > 0. A signed unit (gated-MLP neurons, PCA/ICA directions, probes) fires where |a| is above
`threshold[u]`: the smallest grid edge >= `density_rel` (default 0.1) x the largest |a| the scan
saw for that unit (exactly: a > t or a <= -t, so histogram counts give it without rounding).

See `units.pool` for the orderings that make the result independent of sharding, and
`checkpoint=` / `cluster=` in `scan` for durable and distributed scans.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..analysis.corpus import _defer_interrupt, _scan_progress, iter_corpus, layer_activations
from .basis import Basis, as_basis, model_fingerprint
from .pool import POS_BITS, Bucket, Example, Grid, Pool, mix63

FORMAT = "interp_widgets.UnitScan/1"
_XTX_BLOCK = 256  # sum x x^T is kept for column blocks at or right of each row block only
_CHUNK_ROWS = 512  # bucket-sample candidates are found this many rows at a time
#: settings that must agree for scans to merge, or for a checkpoint to resume
SETTINGS = ("k", "context", "samples_per_bucket", "n_random", "grid", "seed", "batch_size",
            "correlations", "n_shards", "density_rel")


class UnitIndexError(IndexError, ValueError):
    """A unit id outside 0 .. n_units - 1."""


# ---- the random sample of positions -------------------------------------------------------------


class RandomSample:
    """Up to `cap` corpus positions, the bottom-`cap` by priority (a hash of their key), in
    priority order: key, prio [s]; ctx token ids [s, width] (-1 outside the row); and every
    unit's activations over each window, sparse: entry i is (slot[i], off[i], unit[i], val[i])."""

    def __init__(self, cap: int, width: int):
        self.cap, self.width = cap, width
        self.key = torch.zeros(0, dtype=torch.long)
        self.prio = torch.zeros(0, dtype=torch.long)
        self.ctx = torch.zeros((0, width), dtype=torch.int32)
        self.slot = torch.zeros(0, dtype=torch.long)
        self.off = torch.zeros(0, dtype=torch.long)
        self.unit = torch.zeros(0, dtype=torch.long)
        self.val = torch.zeros(0)

    @property
    def threshold(self) -> int:
        return int(self.prio[-1]) if len(self.prio) >= self.cap else torch.iinfo(torch.long).max

    def _keep(self, parts: list[RandomSample]) -> RandomSample:
        """The best `cap` slots of `parts` as one sample (parts' slots renumbered)."""
        out = RandomSample(self.cap, self.width)
        prio = torch.cat([p.prio for p in parts])
        order = torch.argsort(prio, stable=True)[: self.cap]
        base = torch.tensor([0] + [len(p.prio) for p in parts]).cumsum(0)
        new_slot = torch.full((int(base[-1]),), -1, dtype=torch.long)
        new_slot[order] = torch.arange(len(order))
        out.key = torch.cat([p.key for p in parts])[order]
        out.prio, out.ctx = prio[order], torch.cat([p.ctx for p in parts])[order]
        slot = new_slot[torch.cat([p.slot + base[i] for i, p in enumerate(parts)])]
        live = slot >= 0
        out.slot = slot[live]
        for f in ("off", "unit", "val"):
            setattr(out, f, torch.cat([getattr(p, f) for p in parts])[live])
        order = torch.argsort(out.slot * out.width + out.off, stable=True)
        for f in ("slot", "off", "unit", "val"):
            setattr(out, f, getattr(out, f)[order])
        return out

    def add(self, key: torch.Tensor, prio: torch.Tensor, windows) -> RandomSample:
        """A sample with the candidate positions key, prio [m] folded in; `windows(i)` gives
        (ctx IntTensor[len(i), width], acts Tensor[len(i), width, n_units], NaN outside)."""
        if self.cap == 0:
            return self
        cand = (prio < self.threshold).nonzero()[:, 0]
        if cand.numel() == 0:
            return self
        best = cand[torch.argsort(prio[cand], stable=True)[: self.cap]]
        new = RandomSample(self.cap, self.width)
        new.key, new.prio = key[best], prio[best]
        new.ctx, acts = windows(best)
        s, o, u = ((acts != 0) & ~acts.isnan()).nonzero(as_tuple=True)
        new.slot, new.off, new.unit, new.val = s, o, u, acts[s, o, u]
        return self._keep([self, new])

    @classmethod
    def merged(cls, parts: Sequence[RandomSample]) -> RandomSample:
        return parts[0]._keep(list(parts))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"random.{f}": getattr(self, f).contiguous()
                for f in ("key", "prio", "ctx", "slot", "off", "unit", "val")}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], cap: int) -> RandomSample:
        out = cls(cap, t["random.ctx"].shape[1])
        for f in ("key", "prio", "ctx", "slot", "off", "unit", "val"):
            setattr(out, f, t[f"random.{f}"])
        return out


# ---- the scan result ----------------------------------------------------------------------------


class UnitScan:
    """What one pass over a corpus found for every unit of a basis (see `scan`).

    Per unit u: `top_values(u)`, `top_examples(u)`, `bottom_examples(u)`, `bucket_examples(u)`,
    `random_examples(u, n)`, `histogram(u)`, `correlations(u)`; for all units: `mean`, `std`,
    `density`, `threshold`, `max_values()`. `partial` is True when the scan was interrupted.
    `save(path)` / `UnitScan.load(path)`; `UnitScan.merge(shards)`."""

    def __init__(self, meta: dict[str, Any], top: Pool, bottom: Pool, samples: Pool,
                 random: RandomSample, stats: dict[str, torch.Tensor]):
        self.meta = meta
        self._top, self._bottom, self._samples, self._random = top, bottom, samples, random
        #: [unit, bin] counts: of every value (dense basis) or of nonzero values (sparse basis)
        self.hist: torch.Tensor = stats["hist"]
        #: [unit] positions left out of `hist` as 0 (sparse bases; all 0 for dense ones)
        self.zeros: torch.Tensor = stats["zeros"]
        self._sum: torch.Tensor = stats["sum"]  # [unit] float64
        self._sumsq: torch.Tensor = stats["sumsq"]
        #: [unit, unit] float64 sum of x x^T, upper block triangle only (see `_xtx_row`)
        self._xtx: torch.Tensor | None = stats.get("xtx")

    @classmethod
    def _empty(cls, meta: dict[str, Any]) -> UnitScan:
        n, k, s = meta["n_units"], meta["k"], meta["samples_per_bucket"]
        grid, width = Grid(**meta["grid"]), sum(meta["context"]) + 1
        stats = {"hist": torch.zeros((n, grid.n_bins), dtype=torch.long),
                 "zeros": torch.zeros(n, dtype=torch.long),
                 "sum": torch.zeros(n, dtype=torch.float64),
                 "sumsq": torch.zeros(n, dtype=torch.float64)}
        if meta["correlations"]:
            stats["xtx"] = torch.zeros((n, n), dtype=torch.float64)
        return cls(meta, Pool(n, k, width, True), Pool(n, k, width, True),
                   Pool(n * grid.n_buckets, s, width, False),
                   RandomSample(meta["n_random"], width), stats)

    # ---- description ----

    @property
    def basis(self) -> dict[str, Any]:
        """The basis's description (kind, hook, n_units, signed, layer, fingerprint)."""
        return self.meta["basis"]

    @property
    def hook(self) -> str:
        return self.meta["basis"]["hook"]

    @property
    def layer(self) -> int:
        return self.meta["basis"]["layer"]

    @property
    def n_units(self) -> int:
        return self.meta["n_units"]

    n_neurons = n_units  # the name NeuronScan / FeatureScan used

    @property
    def signed(self) -> bool:
        return self.meta["basis"]["signed"]

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
        return (f"UnitScan({m['basis']['kind']} at {self.hook}, {m['n_units']} units, "
                f"{m['n_docs']:,} docs ({m['n_empty']} empty), {m['n_tokens']:,} tokens, "
                f"k={m['k']}{shards}{', PARTIAL' if m['partial'] else ''})")

    def _check(self, unit: Any) -> int:
        if isinstance(unit, bool) or not hasattr(unit, "__index__"):
            raise TypeError(f"unit must be an int in 0 .. {self.n_units - 1}; got {unit!r}.")
        u = unit.__index__()
        if not 0 <= u < self.n_units:
            raise UnitIndexError(f"unit {u} is out of range: the scan has {self.n_units} units, "
                                 f"so use 0 .. {self.n_units - 1}.")
        return u

    # ---- statistics ----

    @property
    def mean(self) -> torch.Tensor:
        """Tensor[unit] float64: mean activation over all scanned positions."""
        return self._sum / max(self.n_tokens, 1)

    @property
    def std(self) -> torch.Tensor:
        """Tensor[unit] float64: standard deviation (population) over all positions."""
        var = self._sumsq / max(self.n_tokens, 1) - self.mean**2
        return var.clamp_min(0).sqrt()

    def max_values(self) -> torch.Tensor:
        """Tensor[unit]: the largest activation seen (0 for a unit never nonzero)."""
        return torch.where(self._top.doc[:, 0] >= 0, self._top.value[:, 0], torch.zeros(()))

    def top_token_ids(self) -> torch.Tensor:
        """LongTensor[unit]: the token at each unit's top example (-1 if it never fired)."""
        return self._top.ctx[:, 0, self.meta["context"][0]].long()

    @property
    def threshold(self) -> torch.Tensor:
        """Tensor[unit] float64: a signed unit fires where a > t or a <= -t (t: the smallest grid
        edge >= density_rel x the largest |a| seen); an unsigned one where a > 0 (t = 0)."""
        n = self.n_units
        if not self.signed:
            return torch.zeros(n, dtype=torch.float64)
        return self.grid.edges()[self.grid.n_bins // 2 + self._tau_index()]

    def _tau_index(self) -> torch.Tensor:
        """LongTensor[unit]: index of the threshold among the grid's edges >= 0."""
        top = torch.where(self._top.doc[:, 0] >= 0, self._top.value[:, 0].abs(), 0.0)
        bottom = torch.where(self._bottom.doc[:, 0] >= 0, self._bottom.value[:, 0], 0.0)
        scale = torch.maximum(top, bottom).double() * self.meta["density_rel"]
        edges = self.grid.edges()[self.grid.n_bins // 2:].contiguous()
        return torch.searchsorted(edges, scale, right=False).clamp(max=len(edges) - 1)

    def fires(self, unit: int, values: torch.Tensor) -> torch.Tensor:
        """BoolTensor like `values`: where `unit` counts as firing (the rule of `density`)."""
        u = self._check(unit)
        v = torch.as_tensor(values, dtype=torch.float64)
        if not self.signed:
            return v > 0
        t = float(self.threshold[u])
        return (v > t) | (v <= -t) & (t > 0)

    @property
    def density(self) -> torch.Tensor:
        """Tensor[unit] float64: fraction of positions where the unit fires (see `threshold`)."""
        mid = self.grid.n_bins // 2
        if not self.signed:  # bins are (lo, hi]: those above the middle edge hold exactly a > 0
            above = self.hist[:, mid:].sum(1)
        else:
            j = torch.arange(self.grid.n_bins)[None]
            tau = self._tau_index()[:, None]
            above = (self.hist * ((j >= mid + tau) | (j < mid - tau) & (tau > 0))).sum(1)
        return above.double() / max(self.n_tokens, 1)

    def correlations(self, unit: int) -> torch.Tensor:
        """Tensor[unit] float64: Pearson correlation of `unit` with every unit over all scanned
        positions (NaN where a unit is constant)."""
        u = self._check(unit)
        if self._xtx is None:
            raise ValueError("This scan kept no co-activation statistics: rerun the scan with "
                             "correlations=True.")
        cov = self._xtx_row(u) / max(self.n_tokens, 1) - self.mean[u] * self.mean
        std = self.std
        return cov / (std[u] * std)

    def _xtx_row(self, n: int) -> torch.Tensor:
        """Tensor[unit]: row n of the symmetric sum x x^T, of which only blocks on or above the
        block diagonal are stored (that halves the matrix product per batch)."""
        start = n // _XTX_BLOCK * _XTX_BLOCK
        row = self._xtx[n].clone()
        row[:start] = self._xtx[:start, n]
        return row

    def histogram(self, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts LongTensor[bins], edges Tensor[bins + 1]) of the unit's values (for a sparse
        basis, its nonzero values: its zeros are `zeros[unit]`); the outer bins also count
        values beyond the grid's limit."""
        u = self._check(unit)
        return self.hist[u].clone(), self.grid.edges()

    # ---- examples ----

    def top_values(self, unit: int) -> torch.Tensor:
        """Tensor[<=k]: the unit's largest nonzero activations over the corpus, descending."""
        u = self._check(unit)
        return self._top.value[u][self._top.doc[u] >= 0].clone()

    def top_examples(self, unit: int) -> list[Example]:
        """The positions of `top_values(unit)`, with their contexts, best first."""
        return self._examples(self._top, self._check(unit))

    def bottom_values(self, unit: int) -> torch.Tensor:
        """Tensor[<=k]: the unit's most negative activations, ascending (empty if never < 0, and
        for the units of an unsigned basis, which keep no bottom tail)."""
        u = self._check(unit)
        return -self._bottom.value[u][self._bottom.doc[u] >= 0]

    def bottom_examples(self, unit: int) -> list[Example]:
        """The positions of `bottom_values(unit)`, most negative first."""
        return self._examples(self._bottom, self._check(unit), sign=-1.0)

    def bucket_examples(self, unit: int) -> list[Bucket]:
        """The unit's non-empty activation buckets (of nonzero values for a sparse basis),
        highest first, each with a
        uniform sample of its positions (sorted by value) and the quantiles it spans."""
        u = self._check(unit)
        grid = self.grid
        counts = self.hist[u].view(grid.n_buckets, grid.bins_per_bucket).sum(1)
        below = torch.cumsum(counts, 0) - counts
        total, edges = max(int(counts.sum()), 1), grid.edges()
        out = []
        for b in reversed(range(grid.n_buckets)):
            if counts[b] == 0:
                continue
            ex = sorted(self._examples(self._samples, u * grid.n_buckets + b),
                        key=lambda e: -e.value)
            out.append(Bucket(
                lo=float(edges[b * grid.bins_per_bucket]),
                hi=float(edges[(b + 1) * grid.bins_per_bucket]),
                q_lo=int(below[b]) / total, q_hi=(int(below[b]) + int(counts[b])) / total,
                count=int(counts[b]), examples=ex))
        return out

    def random_examples(self, unit: int, n: int | None = None) -> list[Example]:
        """`n` (default all) positions drawn uniformly from the corpus (the same positions, in
        the same order, for every unit), with this unit's activations on their contexts: a
        unit fires on them at its corpus rate. `value` is the activation at the drawn position."""
        u, r = self._check(unit), self._random
        slots = len(r.prio) if n is None else min(int(n), len(r.prio))
        acts = torch.where(r.ctx[:slots] >= 0, 0.0, math.nan)  # [slot, width]
        hit = (r.unit == u) & (r.slot < slots)
        acts[r.slot[hit], r.off[hit]] = r.val[hit]
        before = self.meta["context"][0]
        return [self._example(int(r.key[s]) >> POS_BITS, int(r.key[s]) & ((1 << POS_BITS) - 1),
                              float(acts[s, before]), r.ctx[s], acts[s]) for s in range(slots)]

    def _examples(self, pool: Pool, group: int, sign: float = 1.0) -> list[Example]:
        return [self._example(int(pool.doc[group, c]), int(pool.pos[group, c]),
                              sign * float(pool.value[group, c]), pool.ctx[group, c],
                              pool.ctx_act[group, c])
                for c in range(pool.cap) if pool.doc[group, c] >= 0]

    def _example(self, doc: int, pos: int, value: float, ctx: torch.Tensor,
                 act: torch.Tensor) -> Example:
        vocab, before = self.meta["vocab"], self.meta["context"][0]
        ids, acts = ctx.tolist(), act.tolist()
        keep = [i for i, t in enumerate(ids) if t >= 0]
        return Example(doc=doc, pos=pos, value=value,
                       tokens=[vocab.get(str(ids[i]), f"<{ids[i]}>") for i in keep],
                       acts=[acts[i] for i in keep], center=keep.index(before))

    # ---- persistence ----

    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {**self._top.tensors("top"), **self._bottom.tensors("bottom"),
             **self._samples.tensors("samples"), **self._random.tensors(),
             "hist": self.hist, "zeros": self.zeros, "sum": self._sum, "sumsq": self._sumsq}
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
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> UnitScan:
        """Read a scan written by `save`; a missing, truncated or foreign file is refused with
        its path."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No unit scan at {path} (write one with scan.save(path)).")
        try:
            with safe_open(str(path), "pt") as f:
                header = f.metadata() or {}
        except Exception as err:  # safetensors raises its own error type for a bad header
            raise ValueError(f"{path} is not a safetensors file or is truncated ({err}); a "
                             "UnitScan file is written by scan.save(path).") from err
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a UnitScan file (format {header.get('format')!r}, "
                             f"expected {FORMAT!r}).")
        try:
            t = load_file(str(path))
            meta = json.loads(header["meta"])
        except Exception as err:
            raise ValueError(f"{path} is corrupt or truncated ({err}).") from err
        stats = {k: t[k] for k in ("hist", "zeros", "sum", "sumsq", "xtx") if k in t}
        return cls(meta, Pool.from_tensors(t, "top", True), Pool.from_tensors(t, "bottom", True),
                   Pool.from_tensors(t, "samples", False),
                   RandomSample.from_tensors(t, meta["n_random"]), stats)

    # ---- sharding ----

    @classmethod
    def merge(cls, scans: Sequence[UnitScan]) -> UnitScan:
        """One scan from the scans of disjoint shards of the same corpus (same model, basis and
        settings); refused, saying what differs, otherwise."""
        scans = sorted(scans, key=lambda s: s.meta["shards"])
        if not scans:
            raise ValueError("UnitScan.merge needs at least one scan.")
        m0 = scans[0].meta
        for s in scans[1:]:
            diff = [f for f in ("model", "model_fingerprint", "basis", *SETTINGS)
                    if s.meta[f] != m0[f]]
            if diff:
                raise ValueError("These scans differ in " + ", ".join(
                    f"{f} ({m0[f]!r} vs {s.meta[f]!r})" for f in diff) + ": only scans of one "
                    "corpus with the same model, basis and settings (and shard=i of the same "
                    "n_shards) can merge.")
        shards = [i for s in scans for i in s.meta["shards"]]
        if len(set(shards)) != len(shards):
            raise ValueError(f"Shards {sorted(shards)} overlap: each shard may be merged once.")
        done = {(s.meta["corpus_docs"], s.meta["corpus_hash"]) for s in scans if not s.partial}
        if len(done) > 1:
            raise ValueError(f"The shards saw different corpora (documents, hash: "
                             f"{sorted(done)}): scan the same corpus in every shard.")
        meta = dict(m0, shards=sorted(shards), partial=any(s.partial for s in scans),
                    vocab={k: v for s in scans for k, v in s.meta["vocab"].items()})
        for f in ("n_docs", "n_empty", "n_tokens", "n_truncated"):
            meta[f] = sum(s.meta[f] for s in scans)
        stats = {f: sum(getattr(s, a) for s in scans[1:]) + getattr(scans[0], a)
                 for f, a in (("hist", "hist"), ("zeros", "zeros"), ("sum", "_sum"),
                              ("sumsq", "_sumsq"))}
        if scans[0]._xtx is not None:
            stats["xtx"] = sum(s._xtx for s in scans[1:]) + scans[0]._xtx
        out = cls(meta, Pool.merged([s._top for s in scans]),
                  Pool.merged([s._bottom for s in scans]),
                  Pool.merged([s._samples for s in scans]),
                  RandomSample.merged([s._random for s in scans]), stats)
        out.meta["vocab"] = {str(i): meta["vocab"][str(i)] for i in out._used_ids()}
        return out

    # ---- one batch ----

    def _add_batch(self, tokens: torch.Tensor, mask: torch.Tensor, acts: torch.Tensor,
                   docs: torch.Tensor, bos: bool = True) -> None:
        """Fold one batch in. tokens, mask: [batch, pos]; acts: [batch, pos, unit] float32;
        docs: [batch] corpus index of each row. Position 0 (a BOS, when `bos`) and padding are
        left out.
        Work is on the matrix x [row, unit] of the valid positions; only candidates for the
        pools become (row, unit) entries. A sparse basis's zeros are left out of the
        histogram, the buckets and the pools."""
        valid = mask.bool().clone()
        first = 1 if bos else 0
        valid[:, :first] = False  # BOS
        rb, rp = valid.nonzero(as_tuple=True)  # [row]
        if rb.numel() == 0:
            return
        n_rows, n_units, k, grid = rb.numel(), acts.shape[-1], self.k, self.grid
        sparse = self.basis["sparse"]
        self.meta["n_tokens"] += n_rows
        x = acts[rb, rp]  # [row, unit]
        keys = (docs[rb] << POS_BITS) | rp  # [row]
        live = x != 0 if sparse else None  # [row, unit]
        if live is not None:
            self.zeros += n_rows - live.sum(0)
        if self._xtx is not None:  # float32 within a batch (half the time), float64 across
            for s in range(0, n_units, _XTX_BLOCK):
                block = x[:, s: s + _XTX_BLOCK].T @ x[:, s:]  # [block, unit - s]
                self._xtx[s: s + _XTX_BLOCK, s:] += block  # promoted to float64 in place
                self._sumsq[s: s + _XTX_BLOCK] += block.diagonal()
        else:
            self._sumsq += (x * x).sum(0, dtype=torch.float64)
        self._sum += x.sum(0, dtype=torch.float64)
        bins = grid.index(x.clone(), torch.arange(n_units))  # [row, unit], flat over all bins
        counted = bins[live] if live is not None else bins.view(-1)
        self.hist += torch.bincount(counted, minlength=n_units * grid.n_bins).view(n_units, -1)

        lengths = mask.sum(1)
        before, after = self.meta["context"]
        window = torch.arange(-before, after + 1)

        def place(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """(batch rows [m, 1], positions [m, width] clamped into the row, inside mask)."""
            b = rb[rows][:, None]
            at = rp[rows][:, None] + window
            ok = (at >= first) & (at < lengths[b])
            return b, at.clamp(0, tokens.shape[1] - 1), ok

        def contexts(r: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(ids IntTensor[entry, width], acts Tensor[entry, width]) around rows r, unit u."""
            b, at, ok = place(r)
            ids = torch.where(ok, tokens[b, at], -1).int()
            vals = torch.where(ok, acts[b, at, u[:, None]], math.nan)
            return ids, vals

        def fold(pool: Pool, sx: torch.Tensor, cand: torch.Tensor) -> None:
            """Top-k of sx [row, unit] (x or -x) among `cand` into `pool`."""
            cand &= sx > pool.value[:, -1]
            if int(torch.count_nonzero(cand)) > 4 * k * n_units:  # this batch's top k only
                cand &= sx >= sx.topk(min(k, n_rows), dim=0).values[-1]
            r, u = cand.nonzero(as_tuple=True)
            if r.numel():
                pool.add({"group": u, "value": sx[r, u], "doc": docs[rb[r]], "pos": rp[r],
                          "prio": keys[r]}, lambda i: contexts(r[i], u[i]))

        fold(self._top, x, live.clone() if live is not None else
             torch.ones_like(x, dtype=torch.bool))
        if self.signed:  # an unsigned unit's negative tail (GELU's -0.17 floor) is noise
            fold(self._bottom, -x, x < 0)

        # bucket samples: a chunk of rows at a time against the current thresholds (the s-th
        # smallest priority kept per bucket), which fall as the pool fills
        prio = mix63(keys, self.meta["seed"])  # [row]
        groups = grid.bucket(bins)  # [row, unit]: unit * n_buckets + bucket
        for start in range(0, n_rows, _CHUNK_ROWS):
            g = groups[start: start + _CHUNK_ROWS]
            thr = self._samples.prio[:, -1].index_select(0, g.reshape(-1)).view_as(g)
            hit = prio[start: start + _CHUNK_ROWS, None] < thr
            if live is not None:
                hit &= live[start: start + _CHUNK_ROWS]
            r, u = hit.nonzero(as_tuple=True)
            if r.numel() == 0:
                continue
            r = r + start
            self._samples.add({"group": groups[r, u], "value": x[r, u], "doc": docs[rb[r]],
                               "pos": rp[r], "prio": prio[r]},
                              lambda i, r=r, u=u: contexts(r[i], u[i]))

        # the random sample of positions, with every unit's activations over each window
        def windows(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b, at, ok = place(r)
            ids = torch.where(ok, tokens[b, at], -1).int()
            return ids, torch.where(ok[..., None], acts[b, at], math.nan)

        self._random = self._random.add(keys, mix63(keys, self.meta["seed"] + 1), windows)

    def _used_ids(self) -> list[int]:
        ids = torch.cat([self._top.ctx.view(-1), self._bottom.ctx.view(-1),
                         self._samples.ctx.view(-1), self._random.ctx.view(-1)]).unique()
        return [i for i in ids.tolist() if i >= 0]

    def _finish(self, model: Any) -> None:
        """Record the strings of exactly the tokens that the stored contexts use."""
        old = self.meta["vocab"]
        self.meta["vocab"] = {str(i): old[str(i)] if str(i) in old
                              else model.tokenizer.decode([i]) for i in self._used_ids()}


# ---- the scan -----------------------------------------------------------------------------------


def _doc_bytes(doc: Any) -> bytes:
    if isinstance(doc, str):
        return b"s" + doc.encode("utf-8", "surrogatepass")
    if isinstance(doc, torch.Tensor):
        return b"t" + doc.reshape(-1).long().numpy().tobytes()
    try:
        return b"i" + torch.tensor(list(doc), dtype=torch.long).numpy().tobytes()
    except (TypeError, ValueError, RuntimeError):
        return b"?" + repr(doc).encode()


class _HashedCorpus:
    """Iterates `corpus`, hashing each document it hands out; `chain()` folds the documents
    handed out since the last call into a running chain hash (one link per batch)."""

    def __init__(self, corpus: Iterable):
        self._it, self._h, self.value = iter(corpus), hashlib.sha256(), ""

    def __iter__(self) -> Iterator:
        for doc in self._it:
            d = _doc_bytes(doc)
            self._h.update(len(d).to_bytes(8, "little") + d)
            yield doc

    def chain(self) -> str:
        self.value = hashlib.sha256((self.value + self._h.hexdigest()).encode()).hexdigest()
        self._h = hashlib.sha256()
        return self.value


def _check_args(k, batch_size, n_shards, shard, samples_per_bucket, n_random, context,
                checkpoint_every, density_rel) -> None:
    for label, v, lo in (("k", k, 1), ("batch_size", batch_size, 1), ("n_shards", n_shards, 1),
                         ("samples_per_bucket", samples_per_bucket, 1), ("n_random", n_random, 0),
                         ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{label} must be an int >= {lo}; got {v!r}.")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0 .. {n_shards - 1} (n_shards={n_shards}); "
                         f"got {shard!r}.")
    if len(context) != 2 or min(context) < 0:
        raise ValueError(f"context must be (tokens before, tokens after), both >= 0; got "
                         f"{context!r}.")
    if not 0 < density_rel < 1:
        raise ValueError(f"density_rel must be in (0, 1); got {density_rel!r}.")


def scan(model: Any, basis: Any, corpus: Iterable[str | Sequence[int]], *, k: int = 20,
         batch_size: int = 32, context: tuple[int, int] = (10, 4), samples_per_bucket: int = 5,
         n_random: int = 200, correlations: bool | None = None, grid: Grid | None = None,
         seed: int = 0, density_rel: float = 0.1, shard: int = 0, n_shards: int = 1,
         checkpoint: str | Path | None = None, checkpoint_every: int = 10,
         cluster: str | None = None, n_workers: int | None = None,
         progress: bool = True, prepend_bos: bool | None = None) -> UnitScan:
    """Scan every unit of `basis` over `corpus` in one streaming pass (see the module docstring).

    basis: `iw.neurons(model, layer)`, an SAE, a LinearDictionary, `iw.TranscoderBasis(tcs, l)`,
        `iw.ProbeBasis(...)` or any `Basis`.
    corpus: an iterable of strings or token-id lists; each document is its own row (BOS, then the
        document, cut to the model's context; no BOS on a model without one, `Model.bos`, or
        with prepend_bos=False). Empty documents are skipped and counted; a BOS is never a
        scanned position.
    k: top (and bottom) examples kept per unit. batch_size: documents per forward pass.
    context: (tokens before, tokens after) kept around each example.
    samples_per_bucket: sampled positions kept per activation bucket (see `Grid`).
    n_random: corpus positions in the shared uniform sample (`UnitScan.random_examples`).
    correlations: keep sum x x^T (float64 [unit, unit]) for `UnitScan.correlations`; default
        on for up to 4,096 units.
    density_rel: a signed unit fires where |a| is above this fraction of its largest |a|.
    shard, n_shards: scan only batches j with j % n_shards == shard; `UnitScan.merge` joins them.
    checkpoint: a folder; the scan's state is written there atomically every `checkpoint_every`
        batches, and a scan started again with the same arguments continues from it (a
        checkpoint of a different scan is refused, saying what differs, and left alone).
    cluster: "ray" (the running Ray cluster, or a local one), a Ray address ("ray://host:10001",
        "host:6379"), or None; then `n_workers` shards run as Ray tasks, one model per worker,
        merged (`units.distributed`).
    Ctrl-C (KeyboardInterrupt) stops the scan and returns what it found, marked `partial`.
    """
    if cluster is not None:
        from .distributed import scan_on_cluster

        if prepend_bos is not None:
            raise ValueError("prepend_bos is not passed to Ray workers: leave it None (each "
                             "worker uses the model's own, Model.bos) or scan without cluster=.")
        return scan_on_cluster(model, basis, corpus, cluster=cluster, n_workers=n_workers,
                               k=k, batch_size=batch_size, context=context,
                               samples_per_bucket=samples_per_bucket, n_random=n_random,
                               correlations=correlations, grid=grid, seed=seed,
                               density_rel=density_rel, checkpoint=checkpoint,
                               checkpoint_every=checkpoint_every, progress=progress)
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be an iterable of documents, not one string: wrap it in a "
                        "list ([text]).")
    basis = as_basis(basis, model)
    _check_args(k, batch_size, n_shards, shard, samples_per_bucket, n_random, context,
                checkpoint_every, density_rel)
    model.check_hook_names([basis.hook])
    if model.cfg.n_ctx >= 1 << POS_BITS:
        raise ValueError(f"Contexts longer than {1 << POS_BITS} tokens are not supported.")
    if correlations is None:
        correlations = basis.n_units <= 4096
    grid = grid or Grid()
    meta = {
        "format": FORMAT, "model": model.name, "model_fingerprint": model_fingerprint(model),
        "basis": basis.describe(), "hook": basis.hook, "layer": basis.describe()["layer"],
        "n_units": int(basis.n_units), "k": k,
        "context": list(context), "samples_per_bucket": samples_per_bucket,
        "n_random": n_random, "grid": asdict(grid), "seed": seed, "batch_size": batch_size,
        "correlations": bool(correlations), "density_rel": float(density_rel),
        "shards": [shard], "n_shards": n_shards,
        "n_docs": 0, "n_empty": 0, "n_tokens": 0, "n_truncated": 0, "corpus_docs": 0,
        "corpus_hash": "", "next_batch": 0, "partial": False, "vocab": {},
        "prepend_bos": prepend_bos,
    }
    ckpt = None
    if checkpoint is not None:
        from .checkpoint import Checkpoint

        ckpt = Checkpoint(checkpoint, meta)
        result = ckpt.resume()
    else:
        result = None
    result = result or UnitScan._empty(meta)
    return _run(model, basis, corpus, result, ckpt, checkpoint_every, progress)


def _run(model: Any, basis: Basis, corpus: Iterable, result: UnitScan, ckpt: Any,
         every: int, progress: bool) -> UnitScan:
    """Fold the batches of `corpus` from `result.meta["next_batch"]` on into `result`."""
    meta = result.meta
    start, shard, n_shards = meta["next_batch"], meta["shards"][0], meta["n_shards"]
    resumed = meta["corpus_hash"]
    meta["partial"], since = False, 0
    hashed = _HashedCorpus(corpus)
    with _scan_progress(meta, corpus, f"scan {basis.kind} at {basis.hook}", progress) as bar:
        for batch in iter_corpus(model, hashed, meta["batch_size"],
                                 keep=lambda j: j >= start and j % n_shards == shard,
                                 prepend_bos=meta.get("prepend_bos")):
            link = hashed.chain()
            if batch.index < start:
                if batch.index == start - 1 and link != resumed:
                    raise ValueError(
                        f"The corpus differs from the one checkpointed at {ckpt.path}: its "
                        f"first {batch.start + batch.size} documents hash differently. Pass the "
                        "same corpus to resume, or another checkpoint folder.")
                bar.update(batch.size)
                continue
            if batch.rows is not None and batch.rows:
                tokens, mask, acts = layer_activations(model, [r for _, r in batch.rows],
                                                       basis.hook)
                with torch.no_grad():
                    units = basis.encode(acts)
                if units.layout != torch.strided:
                    units = units.to_dense()
                units = units.float().cpu()  # [batch, pos, unit]
                del acts
                docs = torch.tensor([i for i, _ in batch.rows])
            with _defer_interrupt():
                if batch.rows is not None:
                    if batch.rows:
                        result._add_batch(tokens.cpu(), mask.cpu(), units, docs, batch.bos)
                        del units  # before the next forward, so two batches never coexist
                    meta["n_docs"] += batch.size
                    meta["n_empty"] += batch.size - len(batch.rows)
                    meta["n_truncated"] += batch.n_truncated
                meta["corpus_docs"] = batch.start + batch.size
                meta["corpus_hash"], meta["next_batch"] = link, batch.index + 1
                since += batch.rows is not None
                if ckpt is not None and since >= every:
                    result._finish(model)
                    ckpt.write(result)
                    since = 0
            bar.update(batch.size)
    if meta["next_batch"] < start:
        raise ValueError(f"The corpus has fewer batches ({meta['next_batch']}) than the "
                         f"checkpoint at {ckpt.path} already covers ({start}): pass the same "
                         "corpus to resume.")
    result._finish(model)
    if ckpt is not None:
        ckpt.write(result, final=not meta["partial"])
    return result


def warn_in_process(reason: str) -> None:
    warnings.warn(reason, stacklevel=3)
