"""What a cell costs before it runs: a short calibration on this machine, the passes an attack makes, the store's timings.

One module for every estimate the product prints (``eval``'s and ``compare``'s "estimated cost", ``sweep
--dry-run``): below the entry points that use it (:mod:`robustadder.api`, :mod:`robustadder.sweep`,
:mod:`robustadder.comparison`), above the engine whose cells it prices.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .attacks import AttackConfig
from .data import ImageSet
from .engine import Settings, cell_config, cell_hash, component_settings
from .models import LoadedModel
from .nn import adder_layers
from .store import Store


def adder_work_per_image(model: torch.nn.Module) -> float:
    """Adder-layer (position, filter, tap) triples of one forward pass of one image, from layer shapes."""
    total = 0.0
    hooks = []

    def hook(layer, inputs, out):
        nonlocal total
        total += out[0].numel() * layer.in_channels * layer.kernel_size**2

    for layer in adder_layers(model):
        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.rand(1, *model.input_shape, dtype=next(model.parameters()).dtype, device=next(model.parameters()).device))
    for h in hooks:
        h.remove()
    return total


def calibrate(model: torch.nn.Module, settings: Settings, images: int = 32) -> tuple[float, float]:
    """Measured seconds per image of a forward and of a forward + input gradient (short run).

    The probe images come from a private generator: an estimate must not move the global RNG state that a
    caller's own code may depend on (the attacks seed their own).
    """
    probe = torch.rand(min(images, settings.batch_size), *model.input_shape, generator=torch.Generator().manual_seed(0))
    x = probe.to(dtype=settings.torch_dtype, device=settings.device)
    y = torch.zeros(len(x), dtype=torch.long, device=settings.device)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
        fwd = (time.perf_counter() - start) / len(x)
    xr = x.clone().requires_grad_()
    start = time.perf_counter()
    torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y), xr)
    fb = (time.perf_counter() - start) / len(x)
    return fwd, fb


def image_passes(attack: AttackConfig, n: int, *, least: bool = False) -> tuple[float, float]:
    """Forward and forward + input-gradient passes of one image that a cell of one adder gradient makes.

    The attack's own passes plus two clean forwards. A cell under ``--grad both`` is its component cells
    (:func:`engine.component_settings`), which :func:`cell_cost` sums, so the rule of how many there are
    lives in one place. An adaptive attack's work depends on how many samples its first stage fools:
    ``least`` gives the work when it fools them all, the default when it fools none (an upper bound).
    """
    definition = attack.definition
    f_passes, fb_passes = (definition.least_passes if least and definition.least_passes else definition.passes)(attack)
    return n * (f_passes + 2), n * fb_passes


class CellCost(NamedTuple):
    """What a cell still has to compute: seconds (least, most) and the passes of one image (the most)."""

    least_s: float
    most_s: float
    forward: float
    forward_backward: float


def cell_cost(
    store: Store | None, loaded: LoadedModel, attack: AttackConfig, settings: Settings, data: ImageSet,
    seconds_per_image: tuple[float, float],
) -> CellCost:  # fmt: skip
    """The compute a cell still needs on this machine; ``seconds_per_image`` is :func:`calibrate`'s.

    A done cell costs nothing. A cell interrupted part way counts only its missing images, at the rates
    its own stored batches ran (the least and the most seconds per image over them): a short calibration
    cannot know how many samples an adaptive attack's first stage fools, so a resumed AutoAttack cell
    with a third of its images left used to show the 30×-wide range of a fresh cell over all of them. A
    cell with nothing stored gets the calibrated range of :func:`image_passes`. With ``grad='both'`` it
    is the sum of the two component cells, which resume each on its own (combining them is free).
    """
    components = component_settings(loaded, attack, settings)
    if len(components) > 1:
        parts = [cell_cost(store, loaded, attack, one, data, seconds_per_image) for one in components]
        return CellCost(*(sum(values) for values in zip(*parts, strict=True)))
    cell_id = cell_hash(cell_config(loaded, attack, components[0], data))
    record = store.cell(cell_id) if store is not None else None
    if record is not None and record.status == "done":
        return CellCost(0.0, 0.0, 0.0, 0.0)
    batches = store.batch_times(cell_id) if record is not None else []
    left = len(data) - sum(n for n, _ in batches)
    forward, forward_backward = image_passes(attack, left)
    if batches:
        rates = [s / n for n, s in batches]
        return CellCost(left * min(rates), left * max(rates), forward, forward_backward)
    fwd, fb = seconds_per_image
    least = image_passes(attack, left, least=True)
    return CellCost(least[0] * fwd + least[1] * fb, forward * fwd + forward_backward * fb, forward, forward_backward)


def pending_cost(
    db: Store, loaded: LoadedModel, model: torch.nn.Module, configs: Sequence[AttackConfig], settings: Settings, dataset: ImageSet
) -> tuple[list[AttackConfig], float, float]:
    """The cells of ``configs`` not yet done in ``db`` and the range of their compute seconds on this machine.

    Seconds are a short calibration (forward and forward + input gradient per image) times each attack's
    passes. An adaptive attack's cost depends on the model: AutoAttack runs its later stages only on the
    samples its first stage leaves robust, so its least cost (the first stage fools every sample) and its
    most (none) can be 30× apart — both are given rather than a single number that looks precise. A cell
    interrupted part way counts only its missing images, at the rates its own stored batches ran.
    """
    todo = [c for c in configs if (rec := db.cell(cell_hash(cell_config(loaded, c, settings, dataset)))) is None
            or rec.status != "done"]  # fmt: skip
    if not todo:
        return [], 0.0, 0.0
    rates = calibrate(model, settings)
    costs = [cell_cost(db, loaded, c, settings, dataset, rates) for c in todo]
    return todo, sum(c.least_s for c in costs), sum(c.most_s for c in costs)


def format_cost(low: float, high: float) -> str:
    """'~12.5 min' or, for adaptive attacks, '~3.1 min to 2.6 h'."""
    lo, hi = format_duration(low), format_duration(high)
    return f"~{hi}" if lo == hi else f"~{lo} to {hi}"


def format_duration(seconds: float) -> str:
    """A duration as estimates and progress lines print it: '40 s', '12.5 min', '3.4 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["CellCost", "adder_work_per_image", "calibrate", "cell_cost", "format_cost", "format_duration", "image_passes",
           "pending_cost"]  # fmt: skip
