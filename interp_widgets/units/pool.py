"""The scan's building blocks: the histogram grid, the example pool, the position hash and the
two record types (`Example`, `Bucket`) that every scan returns.

Written by hand because no kept library streams top-k examples with contexts per unit and
merges shards exactly. Two orderings make a scan independent of how its corpus is split:
- Top-k (and bottom-k): entries are ranked by (value descending, document ascending, position
  ascending).
- Samples: each position gets a priority, a fixed bijective hash of (document, position, seed);
  a sample keeps the entries of smallest priority. This is bottom-k ("priority") reservoir
  sampling: a uniform sample without replacement that merges exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

POS_BITS = 20  # a (document, position) key is doc << 20 | pos
EMPTY_PRIO = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class Grid:
    """Fixed histogram bins on a signed log scale, shared by every unit.

    A value x sits at t = sign(x) * log1p(|x| / linear); bins are evenly spaced in t
    (`bins_per_unit` per unit), so they are ~`linear` wide near 0 and a constant ratio apart for
    large values; the outermost bins also hold anything beyond ``+-limit``. Bins are (lo, hi], so
    the bins above the middle edge count exactly the values > 0. Bucket samples use coarser
    buckets of `bins_per_bucket` bins (a power of two)."""

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

    def index(self, x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """LongTensor like x: the bin of each value plus its unit * n_bins (one flat index over
        every unit's histogram); `unit` broadcasts against x (e.g. arange(n) for x [row, n])."""
        t = torch.log1p(x.abs().mul_(1 / self.linear)).copysign_(x)
        t = t.add_(self.units).mul_(self.bins_per_unit).ceil_().sub_(1)  # (lo, hi] bins
        return t.clamp_(0, self.n_bins - 1).long().add_(unit * self.n_bins)

    def bucket(self, flat_bins: torch.Tensor) -> torch.Tensor:
        """LongTensor like `flat_bins`: unit * n_buckets + the sample bucket of each bin."""
        return flat_bins >> (self.bins_per_bucket.bit_length() - 1)


@dataclass
class Example:
    """One token position: `doc` (index in the corpus), `pos` (in the row, BOS = 0), `value`,
    and its context: `tokens` (strings), `acts` (this unit's activation on each), `center`
    (the index of `pos` in `tokens`)."""

    doc: int
    pos: int
    value: float
    tokens: list[str]
    acts: list[float]
    center: int


@dataclass
class Bucket:
    """Activation interval (lo, hi] with `count` nonzero positions, spanning quantiles
    [q_lo, q_hi] of the unit's nonzero values, and a uniform sample of its positions
    (`examples`)."""

    lo: float
    hi: float
    q_lo: float
    q_hi: float
    count: int
    examples: list[Example]


def select(group: torch.Tensor, keys: list[tuple[torch.Tensor, bool]],
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


FIELDS = ("value", "doc", "pos", "prio", "ctx", "ctx_act")


class Pool:
    """Up to `cap` examples for each of `groups` groups, best first. Ranked by value (descending)
    then prio (ascending) when `by_value`, else by prio alone. `prio` is the (doc, pos) key for
    value pools and its hash for sample pools. Empty slots have doc -1. ctx: token ids
    [group, cap, width] (-1 outside the row); ctx_act: the unit's activations on them."""

    def __init__(self, groups: int, cap: int, width: int, by_value: bool):
        self.groups, self.cap, self.width, self.by_value = groups, cap, width, by_value
        self.value = torch.full((groups, cap), -math.inf)  # [group, cap]
        self.doc = torch.full((groups, cap), -1, dtype=torch.long)
        self.pos = torch.full((groups, cap), -1, dtype=torch.long)
        self.prio = torch.full((groups, cap), EMPTY_PRIO, dtype=torch.long)
        self.ctx = torch.full((groups, cap, width), -1, dtype=torch.int32)
        self.ctx_act = torch.full((groups, cap, width), math.nan)

    def _keys(self, e: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, bool]]:
        return [(e["value"], True), (e["prio"], False)] if self.by_value else [(e["prio"], False)]

    def entries(self, groups: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The filled slots (of `groups` only, a bool mask, if given) as flat tensors."""
        filled = self.doc >= 0
        if groups is not None:
            filled &= groups[:, None]
        g, c = filled.nonzero(as_tuple=True)
        out = {f: getattr(self, f)[g, c] for f in FIELDS}
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
        idx, g, rank = select(both["group"], self._keys(both), self.cap)
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
    def merged(cls, pools: Sequence[Pool]) -> Pool:
        """One pool holding the best entries of all `pools` (same shape and ordering)."""
        p0 = pools[0]
        out = cls(p0.groups, p0.cap, p0.width, p0.by_value)
        parts = [p.entries() for p in pools]
        e = {f: torch.cat([p[f] for p in parts]) for f in (*FIELDS, "group")}
        idx, g, rank = select(e["group"], out._keys(e), out.cap)
        for f in FIELDS:
            getattr(out, f)[g, rank] = e[f][idx]
        return out

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{f}": getattr(self, f).contiguous() for f in FIELDS}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str, by_value: bool) -> Pool:
        groups, cap, width = t[f"{prefix}.ctx"].shape
        out = cls(groups, cap, width, by_value)
        for f in FIELDS:
            setattr(out, f, t[f"{prefix}.{f}"])
        return out


def mix63(keys: torch.Tensor, seed: int) -> torch.Tensor:
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
