"""Argument checks shared by the neuron analyses; each error says what was wrong and what is
valid."""

from __future__ import annotations

from ..model import Model

#: MLP activation hooks a neuron can be read from, as ``blocks.{layer}.<name>``.
MLP_HOOKS = ("mlp.hook_post", "mlp.hook_pre", "mlp.hook_pre_linear")


def check_layer(model: Model, layer: int) -> int:
    """`layer` as an int after checking that it is in ``0 .. n_layers - 1``."""
    n = model.cfg.n_layers
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int in 0 .. {n - 1}; got {layer!r}.")
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} is out of range: this model has {n} layers, "
                         f"so use 0 .. {n - 1}.")
    return layer


def check_neuron(neuron: int, n_neurons: int) -> int:
    """`neuron` as an int after checking that it is in ``0 .. n_neurons - 1``."""
    if isinstance(neuron, bool) or not isinstance(neuron, int):
        if hasattr(neuron, "__index__"):
            neuron = neuron.__index__()
        else:
            raise TypeError(f"neuron must be an int in 0 .. {n_neurons - 1}; got {neuron!r}.")
    if not 0 <= neuron < n_neurons:
        raise ValueError(f"neuron {neuron} is out of range: the layer has {n_neurons} neurons, "
                         f"so use 0 .. {n_neurons - 1}.")
    return int(neuron)


def mlp_hook(model: Model, layer: int, hook: str = "mlp.hook_post") -> str:
    """The full hook name (``blocks.{layer}.mlp.hook_post``) of an MLP activation hook, given
    short (``"mlp.hook_post"``, ``"post"``) or in full; anything else is refused with the
    valid choices."""
    check_layer(model, layer)
    valid = [h for h in MLP_HOOKS if f"blocks.{layer}.{h}" in set(model.hook_names())]
    short = str(hook).removeprefix(f"blocks.{layer}.")
    for h in valid:
        if short in (h, h.removeprefix("mlp."), h.removeprefix("mlp.hook_")):
            return f"blocks.{layer}.{h}"
    raise ValueError(f"{hook!r} is not an MLP activation hook of layer {layer}. Valid choices: "
                     f"{', '.join(repr(h) for h in valid)} (or in full, "
                     f"'blocks.{layer}.{valid[0]}').")


def d_mlp(model: Model) -> int:
    """Neurons per MLP layer."""
    return int(model.cfg.d_mlp)
