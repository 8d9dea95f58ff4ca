"""Jupyter widgets (anywidget) over the analysis functions.

Each has `.data` (the numbers it shows) and `.to_html(path)` (a static, self-contained file)."""

from ._base import BaseWidget
from .attention import AttentionView
from .attribution import AttributionView
from .autointerp_table import AutoInterpTable
from .census_view import CensusView
from .explain import ExplainMixin
from .feature_browser import FeatureBrowser
from .graph_view import GraphView
from .investigation_view import InvestigationView
from .logit_lens import LogitLens
from .neuron_view import NeuronView
from .patching import PatchingView
from .perturbation import PerturbationFlowView
from .probe_view import ProbeView
from .prompt_features import PromptFeatures
from .steering import SteeringView
from .token_heatmap import TokenHeatmap
from .unit_dashboards import UnitDashboards, dashboards

__all__ = [
    "AttentionView",
    "AttributionView",
    "AutoInterpTable",
    "BaseWidget",
    "CensusView",
    "ExplainMixin",
    "FeatureBrowser",
    "GraphView",
    "InvestigationView",
    "LogitLens",
    "NeuronView",
    "PatchingView",
    "PerturbationFlowView",
    "ProbeView",
    "PromptFeatures",
    "SteeringView",
    "TokenHeatmap",
    "UnitDashboards",
    "dashboards",
]
