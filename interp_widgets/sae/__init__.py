"""Sparse autoencoders: the `SAE` class, SAELens-format files, splicing, training, evaluation."""

from .activations import collect_activations
from .errors import SAEFormatError, SAEShapeError
from .evaluate import SAEEvaluation, evaluate_sae, evaluation_table
from .io import load_sae, save_sae
from .sae import ARCHITECTURES, SAE
from .splice import FeatureEdit, ablate, clamp, run_with_saes, spliced, steer
from .train import train_sae

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "FeatureEdit",
    "SAEEvaluation",
    "SAEFormatError",
    "SAEShapeError",
    "ablate",
    "clamp",
    "collect_activations",
    "evaluate_sae",
    "evaluation_table",
    "load_sae",
    "run_with_saes",
    "save_sae",
    "spliced",
    "steer",
    "train_sae",
]
