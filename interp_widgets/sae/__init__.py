"""Sparse autoencoders: the `SAE` class, SAELens-format files, splicing, training, evaluation."""

from .activations import collect_activations
from .compare import TopCodes, autointerp_scores, toy_recovery
from .errors import SAEFormatError, SAEShapeError
from .evaluate import SAEEvaluation, evaluate_sae, evaluation_table
from .io import load_sae, save_sae
from .sae import ARCHITECTURES, SAE
from .splice import FeatureEdit, ablate, clamp, run_with_saes, spliced, steer
from .train import train_sae
from .transcoder import Transcoders, load_transcoders, save_transcoders
from .transcoder_splice import transcoders_spliced
from .transcoder_train import evaluate_transcoders, train_transcoders

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "FeatureEdit",
    "SAEEvaluation",
    "SAEFormatError",
    "SAEShapeError",
    "TopCodes",
    "Transcoders",
    "ablate",
    "autointerp_scores",
    "clamp",
    "collect_activations",
    "evaluate_sae",
    "evaluate_transcoders",
    "evaluation_table",
    "load_sae",
    "load_transcoders",
    "run_with_saes",
    "save_sae",
    "save_transcoders",
    "spliced",
    "steer",
    "toy_recovery",
    "train_sae",
    "train_transcoders",
    "transcoders_spliced",
]
