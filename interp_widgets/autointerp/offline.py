"""The offline explainer and simulator: statistics, no network, deterministic.

Explain: which tokens, token bigrams and preceding tokens carry the unit's activation, by
enrichment against a baseline. Activations are read as 0-10 levels above the unit's resting
level (`records.levels`; for sparse units the same as OpenAI's 0-10 scale). For each pattern p
(a token t; a bigram (s, t); "after s", the token following s) with activation mass A(p) (sum
of 0-10 activations at positions matching p in the records) and baseline count B(p)::

    enrichment(p) = log((A(p) + 1) / (sum A + V)) - log((B(p) + 1) / (sum B + V))

(add-one smoothing over V distinct patterns). Patterns with at least `min_count` active
occurrences and enrichment above log(2) are ranked by A(p) * enrichment(p); up to `n_tokens`
tokens, `n_ngrams` bigrams (kept only where the bigram's mean activation beats its last token's
by half) and `n_after` preceding tokens (kept only where the tokens after them that no token or
bigram pattern covers still average an activation of 1 or more) are kept, each with its mean
0-10 activation over all occurrences in the records. The baseline is a list of token lists
(e.g. a tokenized corpus); by default every token of the records themselves.

The text names the patterns with JSON-quoted token strings and starts with
`STATISTICAL_LABEL`, so it is never mistaken for an LLM's explanation::

    [statistical, not LLM-written] tokens: " apple" (7.5), " pie" (6.1); n-grams:
    " the"+" apple" (9.0); after: " an" (4.2)

Simulate: parse those patterns back and predict, per token, the largest weight of a matching
pattern (0 where none matches). An explanation in other words (an LLM's) is simulated crudely:
a token scores 5 when its lower-cased text is a word of the explanation (stop words aside).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .records import ActivationRecord, levels

STATISTICAL_LABEL = "[statistical, not LLM-written]"
EXPLAINER_NAME = "offline-statistical"
_ACTIVE = 1  # a position is active when its 0-10 activation is at least this
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ITEM = re.compile(rf"({_QUOTED})(?:\+({_QUOTED}))?\s*\(([-0-9.]+)\)")
_SECTION = re.compile(r"(tokens|n-grams|after):")
_STOP = set("the a an of to in on for and or is are was were be by with that this it its as at "
            "from neuron token tokens word words text find finds fires activates activation "
            "when which about like".split())


@dataclass
class Patterns:
    """What an offline explanation says: {token: weight}, {(prev, token): weight},
    {prev: weight} (weights are expected activations 0-10)."""

    tokens: dict[str, float] = field(default_factory=dict)
    ngrams: dict[tuple[str, str], float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731
        parts = []
        if self.tokens:
            parts.append("tokens: " + ", ".join(f"{q(t)} ({w:.1f})"
                                                 for t, w in self.tokens.items()))
        if self.ngrams:
            parts.append("n-grams: " + ", ".join(f"{q(a)}+{q(b)} ({w:.1f})"
                                                  for (a, b), w in self.ngrams.items()))
        if self.after:
            parts.append("after: " + ", ".join(f"{q(t)} ({w:.1f})" for t, w in self.after.items()))
        body = "; ".join(parts) if parts else "no token or n-gram stands out (activations look " \
                                              "spread out or context-dependent)"
        return f"{STATISTICAL_LABEL} {body}"

    @classmethod
    def parse(cls, text: str) -> Patterns | None:
        """The patterns of an offline explanation; None for any other text."""
        if not text.startswith(STATISTICAL_LABEL):
            return None
        out = cls()
        chunks = _SECTION.split(text[len(STATISTICAL_LABEL):])
        for name, body in zip(chunks[1::2], chunks[2::2]):
            for a, b, w in _ITEM.findall(body):
                a, weight = json.loads(a), float(w)
                if name == "n-grams" and b:
                    out.ngrams[(a, json.loads(b))] = weight
                elif name == "tokens":
                    out.tokens[a] = weight
                elif name == "after":
                    out.after[a] = weight
        return out

    def predict(self, tokens: Sequence[str]) -> list[float]:
        """Predicted 0-10 activation of each token."""
        out = []
        for i, t in enumerate(tokens):
            prev = tokens[i - 1] if i else None
            cands = [self.tokens.get(t, 0.0)]
            if prev is not None:
                cands += [self.ngrams.get((prev, t), 0.0), self.after.get(prev, 0.0)]
            out.append(max(cands))
        return out


def _pattern_counts(tokens: Sequence[str]) -> list[list[tuple[str, object]]]:
    """For each position, the patterns it matches: ("tok", t), ("ngram", (s, t)), ("after", s)."""
    out = []
    for i, t in enumerate(tokens):
        pats: list[tuple[str, object]] = [("tok", t)]
        if i:
            pats += [("ngram", (tokens[i - 1], t)), ("after", tokens[i - 1])]
        out.append(pats)
    return out


def explain_offline(records: Sequence[ActivationRecord], *,
                    baseline: Sequence[Sequence[str]] | None = None, n_tokens: int = 5,
                    n_ngrams: int = 3, n_after: int = 2, min_count: int = 2) -> str:
    """A statistical explanation of `records` (see the module docstring)."""
    values = levels(records)
    mass: Counter = Counter()  # activation mass at active positions
    active: Counter = Counter()  # active occurrences
    total: Counter = Counter()  # activation sum over all occurrences in the records
    seen: Counter = Counter()  # all occurrences in the records
    for r, v in zip(records, values):
        for pats, a in zip(_pattern_counts(r.tokens), v):
            for p in pats:
                total[p] += a
                seen[p] += 1
                if a >= _ACTIVE:
                    mass[p] += a
                    active[p] += 1
    base: Counter = Counter()
    for toks in (baseline if baseline is not None else [r.tokens for r in records]):
        for pats in _pattern_counts(list(toks)):
            base.update(pats)

    def ranked(kind: str) -> list[tuple[object, float]]:
        keys = [p for p in mass if p[0] == kind]
        sum_a = sum(mass[p] for p in keys)
        b_keys = [p for p in base if p[0] == kind]
        sum_b = sum(base[p] for p in b_keys)
        v = len(set(keys) | set(b_keys)) or 1
        scored = []
        for p in keys:
            enr = (math.log((mass[p] + 1) / (sum_a + v))
                   - math.log((base[p] + 1) / (sum_b + v)))
            if active[p] >= min_count and enr > math.log(2):
                scored.append((p, mass[p] * enr))
        scored.sort(key=lambda x: (-x[1], str(x[0])))
        return [(p[1], total[p] / seen[p]) for p, _ in scored]

    mean = {p: total[p] / seen[p] for p in seen}
    pats = Patterns()
    pats.tokens = {t: w for t, w in ranked("tok")[:n_tokens]}
    for (a, b), w in ranked("ngram"):
        if len(pats.ngrams) >= n_ngrams:
            break
        if w >= 1.5 * mean.get(("tok", b), 0.0) and w > pats.tokens.get(b, 0.0):
            pats.ngrams[(a, b)] = w
    # "after s" only where it explains what the token patterns leave out
    rest_sum: Counter = Counter()
    rest_n: Counter = Counter()
    for r, v in zip(records, values):
        for i in range(1, len(r.tokens)):
            if r.tokens[i] not in pats.tokens and (r.tokens[i - 1], r.tokens[i]) not in pats.ngrams:
                rest_sum[r.tokens[i - 1]] += v[i]
                rest_n[r.tokens[i - 1]] += 1
    for t, _ in ranked("after"):
        if len(pats.after) >= n_after:
            break
        if rest_n[t] >= min_count and rest_sum[t] / rest_n[t] >= _ACTIVE:
            pats.after[t] = rest_sum[t] / rest_n[t]
    return pats.text()


def simulate_offline(explanation: str, records: Sequence[ActivationRecord]) -> list[list[float]]:
    """Predicted 0-10 activations [record][pos] for `explanation` (see the module docstring)."""
    pats = Patterns.parse(explanation)
    if pats is not None:
        return [pats.predict(r.tokens) for r in records]
    words = {w for w in re.findall(r"[a-z0-9']+", explanation.lower())
             if len(w) > 2 and w not in _STOP}
    return [[5.0 if t.strip().lower() in words else 0.0 for t in r.tokens] for r in records]

