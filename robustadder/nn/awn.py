"""Adaptive Weight Normalization (AWN), as this project reads "Towards Stable and Robust AdderNets".

No official code is public. docs/design.md §4 reads it as per-filter standardization,

    Ŵ_o = γ_o · (W_o − mean(W_o)) / sqrt(var(W_o) + ε)        for each output filter o   ("standardize")

with a learnable per-filter gain γ (initialised to 1), ε = 1e-5 and the *population* variance (as
batch norm and weight standardization use). Issue 16's ablation (reports/awn-ablation) found that reading
costs AdderNets accuracy: an adder template's mean is a free parameter (|X − W| is not shift-invariant in
W), and removing it lost ~9 points against ~3 for weight normalization at the same scale,

    Ŵ_o = γ_o · W_o / sqrt(mean(W_o²) + ε)                                              ("norm")

which keeps the BN statistics after the adder layers as tame. New AWN training uses "norm"; a layer
built without a recorded form (every checkpoint trained before, which has no ``awn_variant`` in its
metadata) computes "standardize", so old checkpoints load as what they are. The layer stores the raw
weight and γ (``awn_gain``); the forward uses Ŵ. For an adder layer γ *is* the templates' scale, which
|X − W| does not divide out (a conv followed by BN does): it decides whether the official HardTanh input
gradient runs saturated (templates far from the O(1) inputs, as without AWN) or linear, so where γ starts
matters (``train --awn-gain-init``; README, AWN: the template scale). Trained adder weights otherwise
drift to per-layer std 5–10 and push the following BN statistics to hundreds, which is the instability
AWN is meant to remove.
"""

from __future__ import annotations

import torch
import torch.nn as nn

AWN_EPS = 1e-5


#: "standardize": γ (W − mean) / std, the reading of docs/design.md §4 (what a layer computes unless told otherwise:
#: every checkpoint without a recorded form); "norm": γ W / rms(W), weight normalization (Salimans & Kingma
#: 2016) at the same scale, mean kept — what `train --awn` uses since the ablation.
AWN_FORMS = ("standardize", "norm")


def awn_weight(weight: torch.Tensor, gain: torch.Tensor, eps: float = AWN_EPS, form: str = "standardize") -> torch.Tensor:
    """Per-filter normalized weight scaled by ``gain``; differentiable in both arguments."""
    flat = weight.reshape(weight.shape[0], -1)
    if form == "norm":
        return (gain.view(-1, 1) * flat / torch.sqrt(flat.pow(2).mean(dim=1, keepdim=True) + eps)).view_as(weight)
    if form != "standardize":
        raise ValueError(f"AWN form must be one of {AWN_FORMS}, not {form!r}")
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, unbiased=False, keepdim=True)
    return (gain.view(-1, 1) * (flat - mean) / torch.sqrt(var + eps)).view_as(weight)


def awn_layers(model: nn.Module) -> list[nn.Module]:
    """The AWN-reparametrized layers of a model (adder and conv)."""
    return [m for m in model.modules() if getattr(m, "awn_gain", None) is not None]


def awn_raw_weight(layer: nn.Module) -> torch.Tensor:
    """The raw (not normalized) weight of an AWN layer: ``adder`` for adder layers, ``weight`` for convs."""
    return layer.adder if hasattr(layer, "adder") else layer.weight


def set_awn_form(model: nn.Module, form: str) -> None:
    """Use ``form`` in every AWN layer (it changes what the layers compute: recorded in checkpoints)."""
    if form not in AWN_FORMS:
        raise ValueError(f"AWN form must be one of {AWN_FORMS}, not {form!r}")
    for layer in awn_layers(model):
        layer.awn_form = form


class AWNConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward uses the AWN-reparametrized weight (the "CNN + AWN" variant)."""

    def __init__(self, *args, awn_eps: float = AWN_EPS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.awn_eps = awn_eps
        self.awn_form = "standardize"
        self.awn_gain = nn.Parameter(torch.ones(self.out_channels))

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward actually uses."""
        return awn_weight(self.weight, self.awn_gain, self.awn_eps, self.awn_form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)
