"""Circuit tracing: the local replacement model of a prompt, attribution graphs, pruning by
influence, the graph JSON circuit-tracer and Neuronpedia read, and interventions."""

from .attribution import GraphTooLargeError, attribution_graph, estimate_memory
from .dashboards import TranscoderLayer, scan_transcoder_layer, transcoder_logit_effect
from .graph import AttributionGraph, GraphFormatError, load_graph
from .grouping import Suggestion, cluster_features, feature_activations, suggest_supernodes
from .intervene import InterventionResult, intervene, linear_estimate

__all__ = ["AttributionGraph", "GraphFormatError", "GraphTooLargeError", "InterventionResult",
           "Suggestion", "TranscoderLayer", "attribution_graph", "cluster_features",
           "estimate_memory", "feature_activations", "intervene", "linear_estimate",
           "load_graph", "scan_transcoder_layer", "suggest_supernodes",
           "transcoder_logit_effect"]
