"""Jupyter widgets (anywidget) over the analysis functions.

Each has `.data` (the numbers it shows) and `.to_html(path)` (a static, self-contained file)."""

from ._base import BaseWidget
from .attention import AttentionView
from .logit_lens import LogitLens
from .token_heatmap import TokenHeatmap

__all__ = ["AttentionView", "BaseWidget", "LogitLens", "TokenHeatmap"]
