"""Test doubles for the unit engine's Ray tests: a basis whose worker process dies."""

from __future__ import annotations

import os
from pathlib import Path

from interp_widgets.units import SAEBasis


class DyingBasis(SAEBasis):
    """An SAE basis whose first encode in any process kills that process (os._exit), once
    (`marker` records it) or, with always=True, every time."""

    def __init__(self, sae, marker: str, always: bool = False):
        super().__init__(sae)
        self.marker, self.always = marker, always

    def encode(self, acts):
        if self.always or not Path(self.marker).exists():
            Path(self.marker).touch()
            os._exit(1)
        return super().encode(acts)
