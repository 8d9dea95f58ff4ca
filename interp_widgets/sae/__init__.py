"""Sparse autoencoders: the `SAE` class, SAELens-format files, splicing, training, evaluation."""

from .errors import SAEFormatError, SAEShapeError
from .io import load_sae, save_sae
from .sae import ARCHITECTURES, SAE
from .splice import FeatureEdit, ablate, clamp, run_with_saes, spliced, steer

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "FeatureEdit",
    "SAEFormatError",
    "SAEShapeError",
    "ablate",
    "clamp",
    "load_sae",
    "run_with_saes",
    "save_sae",
    "spliced",
    "steer",
]
