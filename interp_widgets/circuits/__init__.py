"""Circuit tracing: the local replacement model of a prompt, attribution graphs, pruning by
influence, the graph JSON circuit-tracer and Neuronpedia read, and interventions."""

from .attribution import GraphTooLargeError, attribution_graph, estimate_memory
from .graph import AttributionGraph, GraphFormatError, load_graph
from .intervene import InterventionResult, intervene, linear_estimate

__all__ = ["AttributionGraph", "GraphFormatError", "GraphTooLargeError", "InterventionResult",
           "attribution_graph", "estimate_memory", "intervene", "linear_estimate", "load_graph"]
