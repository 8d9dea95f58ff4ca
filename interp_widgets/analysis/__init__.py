"""Pure computation behind the widgets. Imports no widget code; one module per topic."""

from .attention import attention_patterns, head_scores, pattern_thumbnails
from .logit_lens import LogitLensResult, logit_lens

__all__ = [
    "LogitLensResult",
    "attention_patterns",
    "head_scores",
    "logit_lens",
    "pattern_thumbnails",
]
