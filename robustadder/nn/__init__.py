"""Layers: the adder convolution, its gradient modes, and AWN."""

from .adder import (
    DEFAULT_ETA,
    Adder2d,
    AdderFunction,
    adaptive_scale,
    adder2d,
    adder_layers,
    adder_settings,
    set_backend,
    set_grad_mode,
)
from .awn import AWN_EPS, AWNConv2d, awn_weight
from .conv import set_deterministic_convs

__all__ = [
    "AWN_EPS",
    "DEFAULT_ETA",
    "AWNConv2d",
    "Adder2d",
    "AdderFunction",
    "adaptive_scale",
    "adder2d",
    "adder_layers",
    "adder_settings",
    "awn_weight",
    "set_backend",
    "set_deterministic_convs",
    "set_grad_mode",
]
