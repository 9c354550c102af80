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
from .awn import AWN_EPS, AWN_FORMS, AWNConv2d, awn_layers, awn_raw_weight, awn_weight, set_awn_form
from .conv import set_deterministic_convs
from .convert import Converted, convert, is_foreign_adder

__all__ = [
    "AWN_EPS",
    "AWN_FORMS",
    "DEFAULT_ETA",
    "AWNConv2d",
    "Adder2d",
    "AdderFunction",
    "Converted",
    "adaptive_scale",
    "adder2d",
    "adder_layers",
    "adder_settings",
    "awn_layers",
    "awn_raw_weight",
    "awn_weight",
    "convert",
    "set_awn_form",
    "is_foreign_adder",
    "set_backend",
    "set_deterministic_convs",
    "set_grad_mode",
]
