"""Errors written for people: each says what was wrong and what would be right."""

from __future__ import annotations


class UnknownHookError(ValueError):
    """A hook name the model does not have; the message lists the nearest valid names."""

    def __init__(self, name: str, nearest: list[str], n_valid: int):
        self.name, self.nearest = name, nearest
        near = ", ".join(repr(n) for n in nearest) if nearest else "(none close)"
        super().__init__(f"Unknown hook name {name!r}. Nearest valid names: {near}. "
                         f"model.hook_names() lists all {n_valid}.")
