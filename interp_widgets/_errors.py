"""Errors written for people: each says what was wrong and what would be right."""

from __future__ import annotations


class UnknownHookError(ValueError):
    """A hook name the model does not have; the message lists the nearest valid names."""

    def __init__(self, name: str, nearest: list[str], n_valid: int):
        self.name, self.nearest = name, nearest
        near = ", ".join(repr(n) for n in nearest) if nearest else "(none close)"
        super().__init__(f"Unknown hook name {name!r}. Nearest valid names: {near}. "
                         f"model.hook_names() lists all {n_valid}.")


class SilentHookError(ValueError):
    """A hook the model lists but that never fires in a forward pass (e.g. ``hook_pos_embed`` on
    a rotary model, ``attn.hook_result`` unless the bridge is asked for it)."""

    def __init__(self, names: list[str], nearest: dict[str, list[str]]):
        self.names = names
        parts = []
        for n in names:
            near = ", ".join(repr(m) for m in nearest.get(n, [])) or "(none close)"
            parts.append(f"{n!r} (hooks that do fire nearby: {near})")
        super().__init__("These hooks exist on this model but never fire in a forward pass, so "
                         "they would hold nothing: " + "; ".join(parts) + ". "
                         "model.fired_hooks() lists the ones that fire.")
