"""Errors of the SAE module, written for people: what was wrong and what would be right."""

from __future__ import annotations


class SAEFormatError(ValueError):
    """Not a readable SAELens-format SAE folder (missing file, bad config, bad weights)."""


class SAEShapeError(ValueError):
    """An SAE whose input width does not match the activation it is applied to."""

    def __init__(self, hook: str | None, expected: int, got: tuple[int, ...],
                 nearest: list[str] | None = None):
        self.hook, self.expected, self.got = hook, expected, got
        self.nearest = list(nearest or [])
        where = f"hook {hook!r}" if hook else "this activation"
        near = (f" Hooks of this model with width {expected}, nearest first: "
                f"{', '.join(repr(h) for h in self.nearest)}." if self.nearest else
                f" No hook of this model has width {expected}: the SAE is for another model.")
        super().__init__(
            f"SAE width mismatch at {where}: the SAE expects d_in = {expected} "
            f"(W_enc [{expected}, d_sae]) but the activation there has shape {list(got)} "
            f"(last dim {got[-1] if got else '?'}). Use an SAE trained on this hook of this model, "
            f"or splice it at a hook of width {expected}." + (near if nearest is not None else ""))
