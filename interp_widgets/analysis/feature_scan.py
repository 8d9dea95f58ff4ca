"""`scan_features`: one streaming pass over a corpus for every feature of a sparse dictionary, with
cost proportional to the nonzero activations.

`analysis.corpus.scan_neurons` keeps dense per-unit state and touches every (token, unit) pair:
right for a layer's few hundred neurons, but for a 16k-feature SAE that is ~3 GB and seconds per
batch. SAE codes are sparse (k per token for TopK), so this scan folds in only the nonzeros:
  - top-k examples per feature, ranked by (value descending, document, position ascending);
  - activation buckets of half a decade (1e-3 .. 1e3, ends open) per feature, each with a
    uniform sample of its positions: bottom-s by a fixed hash of (document, position)
    (priority sampling, as in `scan_neurons`), and the quantiles each bucket spans among the
    feature's nonzero activations (from a 0.1-decade histogram);
  - firing counts (density = fraction of tokens where the feature is nonzero);
  - one uniform sample of `n_random` positions of the whole corpus, shared by all features,
    with every feature's activations on their context windows (kept sparse): the random
    contexts where a feature is mostly silent, which auto-interp scores an explanation on.
State is O(features x (k + buckets x samples) x context), independent of the corpus length.
Examples and buckets come back as `analysis.corpus.Example` / `Bucket`, as from a NeuronScan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .corpus import (
    _POS_BITS,
    Bucket,
    Example,
    _defer_interrupt,
    _mix63,
    _scan_progress,
    iter_corpus,
)

if TYPE_CHECKING:
    from ..model import Model

LOG_LO, LOG_HI, BINS_PER_DECADE, BINS_PER_BUCKET = -3.0, 3.0, 10, 5
N_BINS = int((LOG_HI - LOG_LO) * BINS_PER_DECADE)  # histogram of log10(nonzero activation)
N_BUCKETS = N_BINS // BINS_PER_BUCKET


class _Pool:
    """Up to `cap` entries per group, best first: by (value desc, key asc) when `by_value`, else
    by (prio asc). Empty slots have key -1. ctx / act: [group, cap, width] contexts."""

    def __init__(self, groups: int, cap: int, width: int, by_value: bool):
        self.cap, self.by_value = cap, by_value
        self.value = torch.full((groups, cap), -math.inf)
        self.key = torch.full((groups, cap), -1, dtype=torch.long)
        self.prio = torch.full((groups, cap), torch.iinfo(torch.long).max, dtype=torch.long)
        self.ctx = torch.full((groups, cap, width), -1, dtype=torch.int32)
        self.act = torch.full((groups, cap, width), math.nan)

    def merge(self, group: torch.Tensor, value: torch.Tensor, key: torch.Tensor,
              prio: torch.Tensor, context) -> None:
        """Fold new entries (flat [m] tensors) in; `context(i)` gives (ctx, act) [len(i), width]
        for the new entries at indices i that were kept."""
        touched = group.unique()
        old_g = touched.repeat_interleave(self.cap)
        old_c = torch.arange(self.cap).repeat(len(touched))
        g = torch.cat([old_g, group])
        v = torch.cat([self.value[touched].reshape(-1), value])
        k = torch.cat([self.key[touched].reshape(-1), key])
        p = torch.cat([self.prio[touched].reshape(-1), prio])
        empty = k < 0
        # lexicographic order by stable sorts, least significant key first
        if self.by_value:
            order = torch.argsort(torch.where(empty, torch.iinfo(torch.long).max, k), stable=True)
            order = order[torch.argsort(-v[order], stable=True)]
        else:
            order = torch.argsort(p, stable=True)
        order = order[torch.argsort(g[order], stable=True)]
        gs = g[order]
        first = torch.searchsorted(gs, gs, side="left")
        rank = torch.arange(len(gs)) - first
        keep = (rank < self.cap) & ~empty[order]
        src, slot, grp = order[keep], rank[keep], gs[keep]
        n_old = len(old_g)
        # slots keep old entries' contexts unless a new entry takes them
        new_ctx = self.ctx[old_g[src.clamp(max=n_old - 1)], old_c[src.clamp(max=n_old - 1)]]
        new_act = self.act[old_g[src.clamp(max=n_old - 1)], old_c[src.clamp(max=n_old - 1)]]
        fresh = src >= n_old
        if fresh.any():
            c, a = context(src[fresh] - n_old)
            new_ctx[fresh], new_act[fresh] = c, a
        self.value[touched], self.key[touched] = -math.inf, -1
        self.prio[touched] = torch.iinfo(torch.long).max
        self.ctx[touched], self.act[touched] = -1, math.nan
        self.value[grp, slot], self.key[grp, slot], self.prio[grp, slot] = v[src], k[src], p[src]
        self.ctx[grp, slot], self.act[grp, slot] = new_ctx, new_act


def _windows(padded: torch.Tensor, rows: torch.Tensor, at: torch.Tensor,
             offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The context windows around positions `at` [m] of rows `rows` [m] of `padded` (tokens
    [batch, pos], -1 at BOS and padding): (positions clamped into the row [m, width], token ids
    IntTensor [m, width], -1 outside the row or at BOS / padding)."""
    pos = at[:, None] + offsets  # [m, width]
    inside = (pos >= 0) & (pos < padded.shape[1])
    pc = pos.clamp(0, padded.shape[1] - 1)
    return pc, torch.where(inside, padded[rows[:, None], pc], -1).to(torch.int32)


class _RandomContexts:
    """A uniform sample of `cap` corpus positions (bottom-`cap` by a fixed hash of (document,
    position)), each with its context window of tokens, ctx [cap, width] (-1 outside), and the
    codes of every feature over that window, stored sparse: the features nonzero anywhere in
    it, cols[slot] [c], and their values, vals[slot] [width, c] (NaN outside)."""

    def __init__(self, cap: int, width: int):
        self.cap = cap
        self.key = torch.full((cap,), -1, dtype=torch.long)
        self.prio = torch.full((cap,), torch.iinfo(torch.long).max, dtype=torch.long)
        self.ctx = torch.full((cap, width), -1, dtype=torch.int32)
        self.cols: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * cap
        self.vals: list[torch.Tensor] = [torch.zeros(width, 0)] * cap

    def order(self) -> list[int]:
        """The filled slots, in sample order."""
        return [int(i) for i in torch.argsort(self.prio) if self.key[i] >= 0]

    def acts(self, slot: int, feature: int) -> torch.Tensor:
        """Tensor[width]: the feature's activations over the slot's window (NaN outside)."""
        hit = (self.cols[slot] == feature).nonzero()
        if len(hit):
            return self.vals[slot][:, int(hit[0])]
        return torch.where(self.ctx[slot] >= 0, 0.0, math.nan)

    def add(self, padded: torch.Tensor, codes: torch.Tensor, docs: torch.Tensor,
            offsets: torch.Tensor, seed: int) -> None:
        """padded: tokens [batch, pos] (-1 at BOS and padding); codes [batch, pos, feature]."""
        if self.cap == 0:
            return
        r, p = (padded >= 0).nonzero(as_tuple=True)
        key = (docs[r] << _POS_BITS) | p
        prio = _mix63(key, seed + 1)  # independent of the bucket samples' draw
        n_old = self.cap
        best = torch.argsort(torch.cat([self.prio, prio]), stable=True)[: self.cap]
        old = best[best < n_old]
        new = best[best >= n_old] - n_old
        keys = torch.cat([self.key[old], key[new]])
        prios = torch.cat([self.prio[old], prio[new]])
        ctx = [self.ctx[old]]
        cols = [self.cols[i] for i in old.tolist()]
        vals = [self.vals[i] for i in old.tolist()]
        if len(new):
            pc, c = _windows(padded, r[new], p[new], offsets)  # [m, width]
            ctx.append(c)
            window = torch.where((c >= 0)[..., None], codes[r[new, None], pc].float(), math.nan)
            for w in window:  # [width, feature]
                nz = (w.nan_to_num() != 0).any(0).nonzero()[:, 0]
                cols.append(nz)
                vals.append(w[:, nz].clone())
        # `cap` entries: the old slots (empty ones included) compete with the new positions
        self.key, self.prio, self.ctx = keys, prios, torch.cat(ctx)
        self.cols, self.vals = cols, vals


class FeatureScan:
    """The result of `scan_features`; read it like a `NeuronScan` (features are the units)."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta
        n, k, s = meta["n_features"], meta["k"], meta["samples_per_bucket"]
        width = sum(meta["context"]) + 1
        self._top = _Pool(n, k, width, by_value=True)
        self._samples = _Pool(n * N_BUCKETS, s, width, by_value=False)
        self.hist = torch.zeros((n, N_BINS), dtype=torch.long)
        self.fires = torch.zeros(n, dtype=torch.long)
        self._random = _RandomContexts(meta.get("n_random", 0), width)

    # -- description ----------------------------------------------------------------------------
    hook = property(lambda self: self.meta["hook"])
    layer = property(lambda self: self.meta["layer"])
    n_neurons = property(lambda self: self.meta["n_features"])
    k = property(lambda self: self.meta["k"])
    n_tokens = property(lambda self: self.meta["n_tokens"])
    n_docs = property(lambda self: self.meta["n_docs"])
    partial = property(lambda self: self.meta["partial"])

    def __repr__(self) -> str:
        part = ", partial" if self.partial else ""
        return (f"FeatureScan({self.hook}, {self.n_neurons} features, {self.n_docs} docs, "
                f"{self.n_tokens:,} tokens, k={self.k}{part})")

    @property
    def density(self) -> torch.Tensor:
        """Tensor[feature] float64: fraction of scanned tokens where the feature is nonzero."""
        return self.fires.double() / max(self.n_tokens, 1)

    def max_values(self) -> torch.Tensor:
        """Tensor[feature]: the largest activation seen (0 for features that never fired)."""
        return torch.where(self._top.key[:, 0] >= 0, self._top.value[:, 0], torch.zeros(()))

    def top_token_ids(self) -> torch.Tensor:
        """LongTensor[feature]: the token at each feature's top example (-1 if it never fired)."""
        return self._top.ctx[:, 0, self.meta["context"][0]].long()

    def histogram(self, feature: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts [bins], edges [bins + 1]) of the feature's nonzero activations, on a log10 grid
        of 0.1 decade from 1e-3 to 1e3 (values beyond land in the end bins)."""
        f = self._check(feature)
        edges = torch.logspace(LOG_LO, LOG_HI, N_BINS + 1)
        return self.hist[f].clone(), edges

    def top_values(self, feature: int) -> torch.Tensor:
        f = self._check(feature)
        return self._top.value[f][self._top.key[f] >= 0].clone()

    def top_examples(self, feature: int) -> list[Example]:
        """The feature's top activations with their contexts, best first."""
        f = self._check(feature)
        return self._examples(self._top, f)

    def bucket_examples(self, feature: int) -> list[Bucket]:
        """The feature's non-empty half-decade buckets, highest first, each with a uniform
        sample of its positions (by value) and the quantiles it spans among nonzero values."""
        f = self._check(feature)
        counts = self.hist[f].view(N_BUCKETS, BINS_PER_BUCKET).sum(1)
        total = max(int(counts.sum()), 1)
        below = torch.cumsum(counts, 0) - counts
        out = []
        for b in reversed(range(N_BUCKETS)):
            if counts[b] == 0:
                continue
            ex = sorted(self._examples(self._samples, f * N_BUCKETS + b), key=lambda e: -e.value)
            lo = 10 ** (LOG_LO + b * BINS_PER_BUCKET / BINS_PER_DECADE)
            out.append(Bucket(lo=lo, hi=lo * 10 ** (BINS_PER_BUCKET / BINS_PER_DECADE),
                              q_lo=float(below[b]) / total,
                              q_hi=float(below[b] + counts[b]) / total,
                              count=int(counts[b]), examples=ex))
        return out

    def random_examples(self, feature: int) -> list[Example]:
        """Contexts at positions drawn uniformly from the whole corpus (the same positions for
        every feature), with this feature's activations on them: mostly zeros for a sparse
        feature. `value` is the activation at the drawn position."""
        f, r, before = self._check(feature), self._random, self.meta["context"][0]
        return [self._example(int(r.key[slot]), float(acts[before]), r.ctx[slot], acts)
                for slot in r.order() for acts in [r.acts(slot, f)]]

    def _check(self, feature: int) -> int:
        if not 0 <= int(feature) < self.n_neurons:
            raise IndexError(f"Feature {feature} is out of range: the scan has features "
                             f"0 .. {self.n_neurons - 1}.")
        return int(feature)

    def _examples(self, pool: _Pool, group: int) -> list[Example]:
        return [self._example(int(pool.key[group, c]), float(pool.value[group, c]),
                              pool.ctx[group, c], pool.act[group, c])
                for c in range(pool.cap) if pool.key[group, c] >= 0]

    def _example(self, key: int, value: float, ctx: torch.Tensor, act: torch.Tensor) -> Example:
        """An Example from a (document, position) key and its window: ctx token ids [width]
        (-1 outside the document) and act [width]."""
        vocab, before = self.meta["vocab"], self.meta["context"][0]
        ids, acts = ctx.tolist(), act.tolist()
        keep = [i for i, t in enumerate(ids) if t >= 0]
        return Example(doc=key >> _POS_BITS, pos=key & ((1 << _POS_BITS) - 1), value=value,
                       tokens=[vocab.get(str(ids[i]), f"<{ids[i]}>") for i in keep],
                       acts=[0.0 if math.isnan(acts[i]) else acts[i] for i in keep],
                       center=keep.index(before))

    # -- folding batches in ---------------------------------------------------------------------
    def add_batch(self, tokens: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor,
                  docs: torch.Tensor) -> None:
        """tokens, mask: [batch, pos]; codes: [batch, pos, feature] (mostly zeros); docs:
        [batch] corpus index of each row. BOS (position 0) and padding are left out."""
        valid = mask.bool().clone()
        valid[:, 0] = False
        self.meta["n_tokens"] += int(valid.sum())
        before, after = self.meta["context"]
        offsets = torch.arange(-before, after + 1)
        padded = torch.where(valid, tokens, -1)  # contexts leave out BOS, as in scan_neurons
        self._random.add(padded, codes, docs, offsets, self.meta["seed"])
        r, p, f = (codes != 0).logical_and_(valid[..., None]).nonzero(as_tuple=True)  # [nnz]
        if r.numel() == 0:
            return
        v = codes[r, p, f].float()
        self.fires += torch.bincount(f, minlength=self.n_neurons)
        t = ((v.clamp_min(1e-30).log10() - LOG_LO) * BINS_PER_DECADE).floor().long()
        t = t.clamp(0, N_BINS - 1)
        self.hist.view(-1).index_add_(0, f * N_BINS + t, torch.ones_like(t))
        key = (docs[r] << _POS_BITS) | p

        def context(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pc, ctx = _windows(padded, r[i], p[i], offsets)  # [m, width]
            act = torch.where(ctx >= 0, codes[r[i, None], pc, f[i, None]].float(), math.nan)
            return ctx, act

        none = torch.zeros_like(key)
        self._top.merge(f, v, key, none, context)
        prio = _mix63(key, self.meta["seed"])
        self._samples.merge(f * N_BUCKETS + t // BINS_PER_BUCKET, v, key, prio, context)

    def finish(self, model: Model) -> None:
        """Record the strings of the tokens that the stored contexts use."""
        ids = torch.cat([self._top.ctx.view(-1), self._samples.ctx.view(-1),
                         self._random.ctx.view(-1)]).unique()
        ids = [i for i in ids.tolist() if i >= 0 and str(i) not in self.meta["vocab"]]
        self.meta["vocab"].update({str(i): model.tokenizer.decode([i]) for i in ids})


def scan_features(model: Model, sae: Any, corpus: Iterable[str | Sequence[int]], *, k: int = 20,
                  batch_size: int = 16, context: tuple[int, int] = (10, 4),
                  samples_per_bucket: int = 5, n_random: int = 64, seed: int = 0,
                  progress: bool = True) -> FeatureScan:
    """Scan every feature of `sae` (anything with `encode`, `d_sae`, `hook_name`) over `corpus`
    in one streaming pass (see the module docstring). Documents are rows of BOS + document, cut
    to the model's context, as in `scan_neurons`; Ctrl-C returns what was scanned, `partial`.
    n_random: corpus positions sampled uniformly for `FeatureScan.random_examples`."""
    from ..sae.splice import check_saes

    check_saes(model, [sae])
    hook = sae.hook_name
    parts = hook.split(".")
    meta = {"hook": hook, "model": model.name, "n_features": int(sae.d_sae), "k": k,
            "layer": int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1,
            "context": list(context), "samples_per_bucket": samples_per_bucket,
            "n_random": n_random, "seed": seed,
            "n_docs": 0, "n_tokens": 0, "n_truncated": 0, "partial": False, "vocab": {}}
    scan = FeatureScan(meta)
    with _scan_progress(meta, corpus, f"scan SAE features at {hook}", progress) as bar:
        for batch in iter_corpus(model, corpus, batch_size):
            if batch.rows:
                run = model.run([r for _, r in batch.rows], names=[hook], prepend_bos=False)
                with torch.no_grad():
                    codes = sae.encode(run.cache[hook]).float().cpu()  # [batch, pos, feature]
                docs = torch.tensor([i for i, _ in batch.rows])
            with _defer_interrupt():
                if batch.rows:
                    scan.add_batch(run.tokens.cpu(), run.attention_mask.cpu(), codes, docs)
                    del run, codes
                meta["n_docs"] += batch.size
                meta["n_truncated"] += batch.n_truncated
            bar.update(batch.size)
    scan.finish(model)
    return scan
