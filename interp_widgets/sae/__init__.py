"""Sparse autoencoders: the `SAE` class, SAELens-format files, splicing, training, evaluation."""

from .errors import SAEFormatError, SAEShapeError
from .io import load_sae, save_sae
from .sae import ARCHITECTURES, SAE

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAEFormatError",
    "SAEShapeError",
    "load_sae",
    "save_sae",
]
