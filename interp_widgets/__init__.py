"""interp_widgets: live, kernel-backed Jupyter widgets for mechanistic interpretability.

    import interp_widgets as iw
    model = iw.load_model("demo")
    run = model.run("When Mary and John went to the store, John gave a drink to")
    run.top_predictions(k=5)

The public API is flat: every name in `interp_widgets.analysis` (pure computation),
`interp_widgets.widgets` (the views) and `interp_widgets.sae` is re-exported here, and
`iw.autointerp` and `iw.demo` are submodules.
"""

from . import analysis, autointerp, circuits, demo, interchange, investigate, sae, units, widgets
from ._errors import UnknownHookError
from .analysis import *
from .circuits import *
from .course import check_answer
from .interchange import *
from .investigate import Behaviour, Investigation, census, investigate  # noqa: F811
from .model import Model, Run, available_devices, hook_name, load_model
from .sae import *
from .units import *
from .widgets import *

__version__ = "0.1.0"

__all__ = sorted(
    {"Model", "Run", "UnknownHookError", "autointerp", "available_devices", "check_answer",
     "circuits", "demo", "hook_name", "interchange", "load_model", "units", "Behaviour",
     "Investigation", "census", "investigate"}
    | set(analysis.__all__) | set(circuits.__all__) | set(interchange.__all__) | set(sae.__all__)
    | set(units.__all__) | set(widgets.__all__)
)
