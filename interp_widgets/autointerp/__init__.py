"""Automated interpretability: explain, simulate and score units with any OpenAI-compatible model
(through the `openai` package) or offline with statistics, and keep the results in SQLite.

    from interp_widgets import autointerp as ai
    records = ai.records_from_scan(scan, neuron)          # top + random ActivationRecords
    text = ai.explain(records)                            # offline, statistical
    text = ai.explain(records, model="gpt-4o-mini", api_key=...)   # OpenAI's method
    scores = ai.score(text, held_out_records)
    result = ai.explain_units({n: records_from_scan(scan, n) for n in range(8)},
                              model_id="demo", source=scan.hook, store="autointerp.sqlite")
"""

from .batch import BatchResult, explain_unit, explain_units
from .client import Budget, Client
from .errors import (
    AuthenticationError,
    AutoInterpError,
    CallLimitError,
    Cancelled,
    EndpointNotFoundError,
    EndpointUnreachableError,
    ResponseParseError,
    RetriesExhaustedError,
    StoreError,
)
from .explain import Explanation, expected_value, explain, simulate
from .offline import STATISTICAL_LABEL, explain_offline, simulate_offline
from .records import (
    ActivationRecord,
    normalized,
    records_from_activations,
    records_from_examples,
    records_from_scan,
    split_records,
)
from .score import Scores, pooled_correlation, score
from .scorers import SCORERS, EmbeddingUnavailableError, ScorerResult, run_scorers
from .store import AutoInterpStore, Entry

__all__ = [
    "ActivationRecord",
    "AuthenticationError",
    "AutoInterpError",
    "AutoInterpStore",
    "BatchResult",
    "Budget",
    "CallLimitError",
    "Cancelled",
    "Client",
    "EndpointNotFoundError",
    "EmbeddingUnavailableError",
    "EndpointUnreachableError",
    "Entry",
    "Explanation",
    "ResponseParseError",
    "RetriesExhaustedError",
    "SCORERS",
    "STATISTICAL_LABEL",
    "ScorerResult",
    "Scores",
    "StoreError",
    "expected_value",
    "explain",
    "explain_offline",
    "explain_unit",
    "explain_units",
    "normalized",
    "pooled_correlation",
    "records_from_activations",
    "records_from_examples",
    "records_from_scan",
    "run_scorers",
    "score",
    "simulate",
    "simulate_offline",
    "split_records",
]
