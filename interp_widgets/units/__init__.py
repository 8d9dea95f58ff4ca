"""The unit engine: a unit is one coordinate of a basis read at a hook (an MLP neuron, an SAE
or transcoder latent, a PCA/ICA direction, a probe direction). `scan(model, basis, corpus)`
makes a `UnitScan` of every unit in one pass; it saves, loads, merges, checkpoints and runs
on Ray (`cluster="ray"`)."""

from .basis import (
    Basis,
    DictionaryBasis,
    NeuronBasis,
    ProbeBasis,
    SAEBasis,
    TranscoderBasis,
    as_basis,
    neurons,
)
from .pool import Bucket, Example, Grid
from .scan import UnitIndexError, UnitScan, scan

__all__ = ["Basis", "Bucket", "DictionaryBasis", "Example", "Grid", "NeuronBasis", "ProbeBasis",
           "SAEBasis", "TranscoderBasis", "UnitIndexError", "UnitScan", "as_basis", "neurons",
           "scan"]
