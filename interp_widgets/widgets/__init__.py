"""Jupyter widgets (anywidget) over the analysis functions.

Each has `.data` (the numbers it shows) and `.to_html(path)` (a static, self-contained file)."""

from ._base import BaseWidget
from .attention import AttentionView
from .logit_lens import LogitLens
from .token_heatmap import TokenHeatmap

__all__ = ["AttentionView", "BaseWidget", "LogitLens", "TokenHeatmap"]

from .attribution import AttributionView  # noqa: E402
from .patching import PatchingView  # noqa: E402
from .perturbation import PerturbationFlowView  # noqa: E402
from .steering import SteeringView  # noqa: E402

__all__ += ["AttributionView", "PatchingView", "PerturbationFlowView", "SteeringView"]

from .neuron_view import NeuronView  # noqa: E402

__all__ += ["NeuronView"]

from .autointerp_table import AutoInterpTable  # noqa: E402
from .explain import ExplainMixin  # noqa: E402
from .probe_view import ProbeView  # noqa: E402

__all__ += ["AutoInterpTable", "ExplainMixin", "ProbeView"]

from .feature_browser import FeatureBrowser  # noqa: E402
from .prompt_features import PromptFeatures  # noqa: E402

__all__ += ["FeatureBrowser", "PromptFeatures"]
