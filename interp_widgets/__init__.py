"""interp_widgets: live, kernel-backed Jupyter widgets for mechanistic interpretability.

    import interp_widgets as iw
    model = iw.load_model("demo")
    run = model.run("When Mary and John went to the store, John gave a drink to")
    run.top_predictions(k=5)
"""

from . import demo
from ._errors import UnknownHookError
from .model import Model, Run, available_devices, hook_name, load_model
from .widgets import AttentionView, LogitLens, TokenHeatmap

__version__ = "0.1.0"

__all__ = [
    "AttentionView",
    "LogitLens",
    "Model",
    "Run",
    "TokenHeatmap",
    "UnknownHookError",
    "available_devices",
    "demo",
    "hook_name",
    "load_model",
]
