"""Investigations: behaviour in, verified mechanism report out (see `investigation`), and the
unit census (see `census`)."""

from .behaviour import Behaviour
from .census import census
from .interventions import Unit, UnitEffect, unit_effect
from .investigation import Budget, Claim, Investigation, Step, investigate
from .tools import TOOLS, ToolError

__all__ = ["Behaviour", "Budget", "Claim", "Investigation", "Step", "TOOLS", "ToolError", "Unit",
           "UnitEffect", "census", "investigate", "unit_effect"]
