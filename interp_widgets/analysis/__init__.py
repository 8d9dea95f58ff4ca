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

from .attribution import (  # noqa: E402
    LogitAttribution,
    TokenAttribution,
    direct_logit_attribution,
    input_attribution,
    logit_diff_lens,
)
from .metrics import Metric, kl_to, logit_diff, token_prob  # noqa: E402
from .patching import (  # noqa: E402
    Cell,
    Patcher,
    PatchResult,
    activation_patching,
    attribution_patching,
)
from .steering import (  # noqa: E402
    Directions,
    Generation,
    PerturbationFlow,
    SteeringVector,
    generate,
    kl_to_baseline,
    pca_directions,
    perturbation_flow,
    sae_direction,
    steering_effect,
    steering_vector,
)

__all__ += [
    "Cell", "Directions", "Generation", "LogitAttribution", "Metric", "PatchResult", "Patcher",
    "PerturbationFlow", "SteeringVector", "TokenAttribution", "activation_patching",
    "attribution_patching", "direct_logit_attribution", "generate", "input_attribution",
    "kl_to", "kl_to_baseline", "logit_diff", "logit_diff_lens", "pca_directions",
    "perturbation_flow", "sae_direction", "steering_effect", "steering_vector", "token_prob",
]

from .features import (  # noqa: E402
    FeatureIntervention,
    FeatureLogitEffect,
    active_features,
    feature_logit_effect,
    intervene_on_feature,
    nearest_features,
    prompt_feature_acts,
)

__all__ += ["FeatureIntervention", "FeatureLogitEffect", "active_features",
            "feature_logit_effect", "intervene_on_feature", "nearest_features",
            "prompt_feature_acts"]

from .features import feature_table, label_selectivity, scan_features, search_features  # noqa: E402

__all__ += ["feature_table", "label_selectivity", "scan_features", "search_features"]

from .probing import (  # noqa: E402
    ProbeComparison,
    SparseProbeResult,
    compare_bases,
    dense_probe,
    dictionary_bases,
    sparse_probe,
    token_activations,
)

__all__ += ["ProbeComparison", "SparseProbeResult", "compare_bases", "dense_probe",
            "dictionary_bases", "sparse_probe", "token_activations"]
