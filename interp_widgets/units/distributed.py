"""`scan(..., cluster="ray", n_workers=n)`: the scan's shards as Ray tasks, one model per worker
process (each on its own GPU where the cluster has GPUs), merged with `UnitScan.merge`; equal
to the single-process scan, since shards own whole batches (see `units.pool`).

Workers load the model again from its name or path (`Model.name`, what `load_model` took) and
check its fingerprint against the caller's, so a worker that loads something else is refused.
A task whose worker dies is retried once (Ray's `max_retries=1`); if it dies again the error
names the shard. Without Ray the same call runs the shards one after another in this process.
See docs/scale.md for a multi-node run.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .basis import as_basis, model_fingerprint

_MODELS: dict[tuple[str, str], Any] = {}  # one model per worker process


def _worker_model(spec: str, fingerprint: str) -> Any:
    import torch

    from ..model import load_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (spec, device)
    if key not in _MODELS:
        _MODELS[key] = load_model(spec, device=device)
    model = _MODELS[key]
    if model_fingerprint(model) != fingerprint:
        raise ValueError(f"The worker loaded {spec!r} but its weights differ from the caller's "
                         "model: give every node the same model files.")
    return model


def _shard(spec: str, fingerprint: str, basis: Any, corpus: list, kwargs: dict, shard: int,
           n_shards: int, checkpoint: str | None) -> Any:
    """One shard, in a worker: load (or reuse) the model, scan, return the UnitScan."""
    import torch

    from .scan import scan

    torch.set_num_threads(max(1, kwargs.pop("threads", 1)))
    model = _worker_model(spec, fingerprint)
    return scan(model, basis, corpus, shard=shard, n_shards=n_shards, checkpoint=checkpoint,
                progress=False, **kwargs)


def _check_address(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there (Ray itself would retry for
    a minute before saying so)."""
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"cluster={address!r} is not a Ray address: give 'ray' (the running "
                         "cluster, or a local one), 'host:6379' or 'ray://host:10001'.")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ConnectionError(f"No Ray cluster is reachable at {address} ({err}). Start one "
                              "(`ray start --head` on the head node) or check the address."
                              ) from err


def _connect(cluster: str) -> Any:
    import ray

    address = None if cluster == "ray" else cluster
    if address is not None:
        _check_address(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    except ConnectionError as err:
        raise ConnectionError(f"Could not connect to the Ray cluster at {address or 'auto'}: "
                              f"{err}") from err
    return ray


def scan_on_cluster(model: Any, basis: Any, corpus: Iterable, *, cluster: str,
                    n_workers: int | None, checkpoint: str | Path | None = None,
                    progress: bool = True, threads_per_worker: int = 1,
                    **kwargs: Any) -> Any:
    """Run `n_workers` shards of the scan on `cluster` and merge them (see the module
    docstring). kwargs: the scan's settings."""
    from .scan import UnitScan, scan

    if not isinstance(cluster, str):
        raise TypeError(f"cluster must be 'ray' or a Ray address; got {cluster!r}.")
    n = 2 if n_workers is None else n_workers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_workers must be an int >= 1; got {n_workers!r}.")
    if isinstance(corpus, (str, bytes)):
        raise TypeError("corpus must be an iterable of documents, not one string: wrap it in a "
                        "list ([text]).")
    docs = list(corpus)  # every worker reads the whole corpus (and folds in its batches)
    basis = as_basis(basis, model)
    folders = [None if checkpoint is None else str(Path(checkpoint) / f"shard-{i}-of-{n}")
               for i in range(n)]
    try:
        import ray  # noqa: F401
    except ImportError:
        warnings.warn(f"Ray is not installed, so the {n} shards run one after another in this "
                      "process. For parallel workers: pip install 'interp-widgets[ray]'.",
                      stacklevel=3)
        return UnitScan.merge([scan(model, basis, docs, shard=i, n_shards=n,
                                    checkpoint=folders[i], progress=progress, **kwargs)
                               for i in range(n)])
    ray = _connect(cluster)
    spec, fp = model.name, model_fingerprint(model)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=threads_per_worker, num_gpus=gpus, max_retries=1)(_shard)
    corpus_ref = ray.put(docs)
    kw = dict(kwargs, threads=threads_per_worker)
    refs = [task.remote(spec, fp, basis, corpus_ref, kw, i, n, folders[i]) for i in range(n)]
    shards = []
    for i, ref in enumerate(refs):
        try:
            shards.append(ray.get(ref))
        except ray.exceptions.RayTaskError as err:  # the shard's own error, re-raised
            for r in refs[i + 1:]:
                ray.cancel(r, force=True)
            cause = err.cause if getattr(err, "cause", None) is not None else err
            raise RuntimeError(f"Shard {i} of {n} failed: {cause}") from cause
        except ray.exceptions.RayError as err:  # the worker died, and again on the retry
            for r in refs[i + 1:]:
                ray.cancel(r, force=True)
            raise RuntimeError(f"Shard {i} of {n} failed twice (its worker died and the retry "
                               f"died too): {type(err).__name__}: {err}") from err
    return UnitScan.merge(shards)
