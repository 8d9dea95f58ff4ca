"""Pure computation behind the widgets. Imports no widget code; one module per topic."""

from .attention import attention_patterns, head_scores, pattern_thumbnails
from .corpus import NeuronScan, scan_neurons
from .logit_lens import LogitLensResult, logit_lens
from .neurons import (
    ablate_neuron,
    correlated_neurons,
    direct_logit_effect,
    find_neurons,
    modulate_neuron,
    neuron_activations,
    neuron_input_attribution,
    neuron_selectivity,
    patch_neuron,
)

__all__ = [
    "LogitLensResult",
    "NeuronScan",
    "ablate_neuron",
    "attention_patterns",
    "correlated_neurons",
    "direct_logit_effect",
    "find_neurons",
    "head_scores",
    "logit_lens",
    "modulate_neuron",
    "neuron_activations",
    "neuron_input_attribution",
    "neuron_selectivity",
    "patch_neuron",
    "pattern_thumbnails",
    "scan_neurons",
]

from .dictionaries import LinearDictionary, fit_dictionary, fit_ica, fit_pca  # noqa: E402

__all__ += ["LinearDictionary", "fit_dictionary", "fit_ica", "fit_pca"]
