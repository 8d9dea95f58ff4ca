"""`scan_features`: every feature of a sparse dictionary in one streaming pass, the SAE name of
the unit engine's scan (`interp_widgets.units.scan`, which folds in only nonzero activations, so
a 16k-feature SAE costs what its nonzeros cost). `FeatureScan` is `units.UnitScan`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import Model
    from ..units import UnitScan


def __getattr__(name: str) -> Any:
    if name == "FeatureScan":
        from ..units import UnitScan

        return UnitScan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def scan_features(model: Model, sae: Any, corpus: Iterable[str | Sequence[int]], *, k: int = 20,
                  batch_size: int = 16, context: tuple[int, int] = (10, 4),
                  samples_per_bucket: int = 5, n_random: int = 64, seed: int = 0,
                  correlations: bool = False, progress: bool = True) -> UnitScan:
    """`iw.scan(model, sae, corpus, ...)` for an SAE (anything with `encode`, `d_sae`,
    `hook_name`), checked against the model first. n_random: corpus positions sampled
    uniformly for `UnitScan.random_examples`."""
    from ..sae.splice import check_saes
    from ..units import scan

    check_saes(model, [sae])
    return scan(model, sae, corpus, k=k, batch_size=batch_size, context=context,
                samples_per_bucket=samples_per_bucket, n_random=n_random, seed=seed,
                correlations=correlations, progress=progress)
