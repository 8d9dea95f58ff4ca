"""Files the field reads: SAELens's cached activations, Delphi's latent cache and Neuronpedia's
export, written and read (`iw.cache_activations`, `iw.write_delphi_cache`,
`iw.write_neuronpedia` and their readers). Each module names the peer code its layout follows."""

from .delphi_cache import DelphiCache, load_delphi_cache, write_delphi_cache
from .neuronpedia import NeuronpediaExport, read_neuronpedia, write_neuronpedia
from .saelens_cache import CachedActivations, cache_activations, load_cached_activations

__all__ = [
    "CachedActivations",
    "DelphiCache",
    "NeuronpediaExport",
    "cache_activations",
    "load_cached_activations",
    "load_delphi_cache",
    "read_neuronpedia",
    "write_delphi_cache",
    "write_neuronpedia",
]
