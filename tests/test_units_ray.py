"""iw.scan(..., cluster="ray"): shards as Ray tasks on a local two-CPU cluster bound to
loopback, equal to the single-process scan; an unreachable address, a dying worker (retried
once, then named), and the in-process fallback without Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from test_units import _tensors_equal

import interp_widgets as iw

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
KW = dict(k=5, batch_size=4, n_random=40, progress=False)


@pytest.fixture(scope="module")
def docs():
    return iw.demo.corpus(16, seed=8)


@pytest.fixture(scope="module")
def single(model, docs):
    return iw.scan(model, iw.demo.load_sae(), docs, **KW)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray cluster on loopback. Where it cannot start (Ray 2.60's raylet gives
    its agents 15 s, which a machine with far more processes than cores can miss) the tests
    skip, saying why; with CI=true they fail instead."""
    ray = pytest.importorskip("ray")
    path = f"{ROOT}:{ROOT / 'tests'}"
    try:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
                 log_to_driver=False)
    except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on a startup timeout
        msg = f"the local Ray cluster did not start: {type(err).__name__}: {err}"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    yield ray
    ray.shutdown()


def test_two_workers_equal_one_process(model, docs, single, ray_cluster):
    two = iw.scan(model, iw.demo.load_sae(), docs, cluster="ray", n_workers=2, **KW)
    assert two.meta["shards"] == [0, 1] and two.meta["n_shards"] == 2
    _tensors_equal(two, single, exact_sums=False)
    assert two.top_examples(3) == single.top_examples(3)
    neurons = iw.scan(model, iw.neurons(model, 1), docs, cluster="ray", n_workers=2, **KW)
    _tensors_equal(neurons, iw.scan(model, iw.neurons(model, 1), docs, **KW), exact_sums=False)


def test_an_unreachable_cluster_names_its_address(model, docs):
    pytest.importorskip("ray")
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        iw.scan(model, iw.demo.load_sae(), docs, cluster="127.0.0.1:9", n_workers=2, **KW)


@pytest.mark.slow
def test_a_dying_worker_is_retried_once_then_named(model, docs, single, ray_cluster, tmp_path):
    from _units_doubles import DyingBasis

    sae = iw.demo.load_sae()
    once = DyingBasis(sae, str(tmp_path / "died-once"))
    got = iw.scan(model, once, docs, cluster="ray", n_workers=2, **KW)
    assert (tmp_path / "died-once").exists()
    _tensors_equal(got, iw.scan(model, DyingBasis(sae, str(tmp_path / "died-once")), docs,
                                **KW), exact_sums=False)
    always = DyingBasis(sae, str(tmp_path / "dies"), always=True)
    with pytest.raises(RuntimeError, match="Shard 0 of 2 failed twice"):
        iw.scan(model, always, docs, cluster="ray", n_workers=2, **KW)


def test_without_ray_the_shards_run_here_and_say_how_to_parallelise(model, docs, single,
                                                                    monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.warns(UserWarning, match=r"pip install 'interp-widgets\[ray\]'"):
        got = iw.scan(model, iw.demo.load_sae(), docs, cluster="ray", n_workers=2, **KW)
    _tensors_equal(got, single, exact_sums=False)
