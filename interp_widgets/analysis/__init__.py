"""Pure computation behind the widgets. Imports no widget code; one module per topic."""

from .attention import attention_patterns, head_scores, pattern_thumbnails
from .corpus import NeuronScan, scan_neurons
from .logit_lens import LogitLensResult, logit_lens

__all__ = [
    "LogitLensResult",
    "NeuronScan",
    "attention_patterns",
    "head_scores",
    "logit_lens",
    "pattern_thumbnails",
    "scan_neurons",
]

from .dictionaries import LinearDictionary, fit_dictionary, fit_ica, fit_pca  # noqa: E402

__all__ += ["LinearDictionary", "fit_dictionary", "fit_ica", "fit_pca"]
