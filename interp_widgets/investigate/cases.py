"""Case studies with known answers on the demo model, and a scorer for investigations.

The known units come from how the demo model was trained and from measurements the repo already
checks elsewhere (not from the investigator):

- induction: previous-token heads L0H0 and L1H0 and induction heads L1H3, L2H0, L2H2, L2H3:
  the heads TransformerLens's detection patterns score above 0.5 on repeated random spans
  (`notebooks/quickstart.ipynb` section 2 shows the scores; the demo was trained with a
  repeated-span curriculum to grow them; L1H3 is the weakest, 0.59);
- ioi: L0H1 and L1H3, the heads whose output carries the corrupted name in
  `notebooks/ioi_patching.ipynb` (head patching, section 1);
- article: the " an" neuron L1N322 (`notebooks/an_neuron.ipynb`, found by
  `find_neurons(model, " an", against=" a")` and checked on its top contexts).

Only the kinds a case knows completely are scored: heads for induction and ioi, neurons for
article. Components (whole attention or MLP layers) are never scored: they are coarse by design.

    table = score_cases(model)     # runs the offline plan on every case
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from ..model import Model
from .behaviour import Behaviour
from .investigation import Investigation, investigate


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the unit kind the known set covers
    known: frozenset[tuple[int, int]]  # (layer, index)
    make: str  # Behaviour constructor name
    n: int = 16


CASES = (
    Case("induction", "head", frozenset({(0, 0), (1, 0), (1, 3), (2, 0), (2, 2), (2, 3)}),
         "induction"),
    Case("ioi", "head", frozenset({(0, 1), (1, 3)}), "ioi"),
    Case("article", "neuron", frozenset({(1, 322)}), "article", n=32),
)


def score_investigation(inv: Investigation, case: Case) -> dict:
    """Precision and recall of the verified "carries" claims of `case.kind` against the known
    units; `reported`: whether every known unit has a claim (verified or not) with its effect."""
    claims = [c for c in inv.claims_list if c.what == "carries" and c.kind == case.kind]
    verified = {(c.layer, c.index) for c in claims if c.verified}
    claimed = {(c.layer, c.index) for c in claims}
    hits = verified & case.known
    return {
        "case": case.name, "kind": case.kind, "known": len(case.known),
        "verified_claims": len(verified), "true_positives": len(hits),
        "precision": len(hits) / len(verified) if verified else float("nan"),
        "recall": len(hits) / len(case.known),
        "reported": case.known <= claimed,
        "missed": sorted(case.known - verified), "extra": sorted(verified - case.known),
        "all_verified_beat_2_spread": all(c.effect > 2 * c.spread for c in claims if c.verified),
    }


def run_case(model: Model, case: Case, **kwargs) -> tuple[Investigation, dict]:
    """The offline investigation of `case` and its score (plus `seconds`)."""
    b = getattr(Behaviour, case.make)(model, n=case.n)
    t = time.perf_counter()
    inv = investigate(model, b, **kwargs)
    row = score_investigation(inv, case)
    row["seconds"] = time.perf_counter() - t
    return inv, row


def score_cases(model: Model, cases=CASES, **kwargs) -> pd.DataFrame:
    """One row per case: precision, recall and time of the offline plan."""
    return pd.DataFrame([run_case(model, c, **kwargs)[1] for c in cases])
