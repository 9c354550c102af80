"""Find adder layers written by others and replace them with :class:`Adder2d`.

A model built from the official AdderNet layer (``adder.adder2d``, docs/design.md §2) or one of its public
descendants is, to PyTorch, a network of unknown modules. Evaluated as it is, it would look like a CNN:
no fast kernel, no gradient modes (``--grad exact`` would silently do nothing), operation counts wrong.
:func:`convert` swaps every such module for an :class:`Adder2d` that holds the *same* parameter objects
(so state-dict keys ``...adder`` / ``...b`` do not change) and computes the same forward.

What is recognised as an adder layer (all public variants we know derive from the official one):

* a 4-D parameter named ``adder`` (out, in, k, k) and ``stride`` / ``padding`` attributes (int or a pair of
  equal ints) — the official ``adder2d``, AdderNet-2.0 / PKKD / ShiftAddNet's ``Adder2D`` and their copies;
* bias as the official parameter ``b`` (with or without the boolean ``bias`` flag), or a 1-D parameter
  ``bias`` of length ``out``;
* ``groups`` (ShiftAddNet) and ``dilation`` must be 1 and an Lp exponent ``p`` must be 1 — otherwise
  the layer computes something :class:`Adder2d` does not, and conversion stops with a one-line error
  naming the layer. So does any layer whose class name says "adder" but whose 4-D weight is not called
  ``adder``: such a model is never silently evaluated as a CNN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import UserError
from .adder import DEFAULT_ETA, Adder2d

_ADDER_NAME = re.compile(r"adder", re.IGNORECASE)


@dataclass(frozen=True)
class Converted:
    """One replaced layer: where it sits and what it was."""

    name: str
    was: str


def _pair(value: object, what: str, where: str) -> int:
    """An int from ``k`` or ``(k, k)``; anything else cannot be expressed by :class:`Adder2d`."""
    if isinstance(value, bool):
        raise UserError(f"{where}: {what}={value!r} is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value) and value[0] == value[1]:
        return int(value[0])
    raise UserError(f"{where}: cannot convert an adder layer with {what}={value!r} (Adder2d takes one int for both sides)")


def is_foreign_adder(module: nn.Module) -> bool:
    """Whether ``module`` is someone else's adder layer (not ours).

    An ``adder`` weight makes one; so does 'adder' in the class name of a module that holds a 4-D weight of
    its own (a layer). A container named so (``AdderBlock``, ``AdderNet``) holds no weight directly and is not
    a layer: its adder layers are found one by one.
    """
    if isinstance(module, Adder2d):
        return False
    own = [p for p in module._parameters.values() if isinstance(p, torch.Tensor) and p.dim() == 4]
    weight = module._parameters.get("adder")
    return (isinstance(weight, torch.Tensor) and weight.dim() == 4) or (
        bool(own) and bool(_ADDER_NAME.search(type(module).__name__))
    )


def _bias(module: nn.Module, out_channels: int, where: str) -> nn.Parameter | None:
    b = module._parameters.get("b")
    if b is None and isinstance(module._parameters.get("bias"), torch.Tensor):
        b = module._parameters["bias"]
    if b is None:
        return None
    if b.dim() != 1 or b.numel() != out_channels:
        raise UserError(f"{where}: bias of shape {tuple(b.shape)} does not fit {out_channels} output channels")
    if getattr(module, "bias", True) is False:  # official layer: b may exist from a checkpoint while bias=False
        return None
    return b


def adder_from(module: nn.Module, where: str) -> Adder2d:
    """The :class:`Adder2d` equal to a foreign adder layer, sharing its parameters."""
    kind = type(module).__name__
    weight = module._parameters.get("adder")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise UserError(
            f"module '{where}' ({kind}) looks like an adder layer but has no 4-D 'adder' weight; "
            "robustadder cannot convert it and will not evaluate it as a CNN"
        )
    out_ch, in_ch, kh, kw = weight.shape
    if kh != kw:
        raise UserError(f"module '{where}' ({kind}): non-square kernel {kh}×{kw} cannot be converted")
    for attr in ("stride", "padding"):
        if not hasattr(module, attr):
            raise UserError(f"module '{where}' ({kind}) has an adder weight but no '{attr}' attribute; cannot convert it")
    for attr, allowed in (("groups", 1), ("dilation", 1), ("p", 1)):
        value = getattr(module, attr, allowed)
        if isinstance(value, (tuple, list)):
            value = value[0] if len(set(value)) == 1 else value
        if value != allowed:
            raise UserError(f"module '{where}' ({kind}): {attr}={value!r} is not supported (Adder2d computes {attr}={allowed})")
    stride = _pair(module.stride, "stride", f"module '{where}' ({kind})")
    padding = _pair(module.padding, "padding", f"module '{where}' ({kind})")
    bias = _bias(module, out_ch, f"module '{where}' ({kind})")
    eta = getattr(module, "eta", DEFAULT_ETA)
    layer = Adder2d(in_ch, out_ch, kh, stride=stride, padding=padding, bias=False,
                    eta=eta if isinstance(eta, float) else DEFAULT_ETA)  # fmt: skip
    layer.adder = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
    if bias is not None:
        layer.b = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
    layer.train(module.training)
    return layer


def convert(model: nn.Module) -> list[Converted]:
    """Replace every foreign adder layer of ``model`` in place; returns what was replaced.

    Parameters are shared, not copied, and keep their state-dict keys (``adder``, ``b``): a checkpoint of
    the original model still loads into the converted one. A layer that looks like an adder layer but
    cannot be expressed as :class:`Adder2d` raises a :class:`UserError` before anything is replaced.
    """
    found = [(name, m) for name, m in model.named_modules() if name and is_foreign_adder(m)]
    replacements = [(name, adder_from(m, name), type(m).__name__) for name, m in found]  # all checked first
    done: list[Converted] = []
    for name, layer, was in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
        done.append(Converted(name, was))
    if is_foreign_adder(model) and model._parameters.get("adder") is not None:
        raise UserError(f"the model itself is an adder layer ({type(model).__name__}); wrap it in a network to evaluate it")
    return done
