"""The library entry point that the CLI is a thin layer over: ``robustadder.evaluate``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from .attacks import ATTACKS, DEFAULT_EPS, AttackConfig, BuildContext, build_runner, make_config, parse_attack_option, parse_eps
from .cost import format_cost, format_duration, pending_cost  # noqa: F401 - also importable from here, as before
from .data import Dataset, ImageSet
from .distances import at_eps, median_distance, minimal_distances
from .distributed import context
from .engine import Settings, check_bn_batches, pin_transfer_source, prepare, run_cell, transfer_source_loader
from .errors import UserError
from .models import (
    LoadedModel,
    Normalization,
    announce,
    as_loaded,
    evaluation_images,
    module_input_shape,
    opened_dataset,
)
from .store import Store
from .summary import attack_summary, worst_case_accuracy


def resolve_attacks(
    attacks: str | AttackConfig | Sequence[str | AttackConfig],
    *,
    eps: Any = None,
    norm: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[AttackConfig]:
    """Turn user attack choices into validated configs.

    ``attacks`` items are names, ``name:key=value,...`` strings or ready configs. ``params`` apply to
    every listed attack that has such an option (inline options win); an option no listed attack
    understands is an error rather than silently ignored.
    """
    items = [attacks] if isinstance(attacks, (str, AttackConfig)) else list(attacks)
    if not items:
        raise UserError("no attack given (use --attack none for clean accuracy)")
    params = dict(params or {})
    configs: list[AttackConfig] = []
    used: set[str] = set()
    for item in items:
        if isinstance(item, AttackConfig):
            configs.append(item)
            continue
        name, inline = parse_attack_option(item)
        if name not in ATTACKS:
            raise UserError(f"unknown attack '{name}': choose one of {', '.join(ATTACKS)}")
        accepted = {k: v for k, v in params.items() if k in ATTACKS[name].params}
        used |= set(accepted)
        configs.append(make_config(name, eps=eps, norm=norm, params={**accepted, **inline}))
    unused = sorted(set(params) - used)
    if unused:
        raise UserError(f"option '{unused[0]}' applies to none of the attacks given ({', '.join(map(str, items))})")
    return configs



def _say_estimate(db: Store, loaded: LoadedModel, model, configs, settings: Settings, dataset: ImageSet) -> None:
    """Before a long evaluation: what it will cost on this machine (a short calibration), on stderr.

    The default eval (10,000 images) runs for hours on a CPU; without a word the first sign of that was a
    bar waiting for its first batch. Cells already done in the store cost nothing and are not counted.
    """
    import sys

    todo, low, high = pending_cost(db, loaded, model, configs, settings, dataset)
    if not todo:
        return
    why = "; adaptive attacks such as AutoAttack run their later stages only on the samples still robust" if low < high else ""
    print(f"estimated cost: {format_cost(low, high)} for {len(todo)} attack cell(s) on {len(dataset)} images (calibrated on "
          f"this machine{why})", file=sys.stderr)  # fmt: skip


def evaluate(
    model: str | LoadedModel | torch.nn.Module,
    attacks: str | AttackConfig | Sequence[str | AttackConfig] = "none",
    *,
    eps: Any = None,
    norm: str | None = None,
    params: Mapping[str, Any] | None = None,
    n: int | None = None,
    data: str | os.PathLike | ImageSet | None = None,
    store: str | os.PathLike | Store | None = None,
    force: bool = False,
    batch_size: int = 128,
    backend: str = "auto",
    device: str = "cpu",
    dtype: str = "float32",
    bn: str = "eval",
    shuffle: bool = False,
    seed: int = 0,
    grad: str = "both",
    arch: str | None = None,
    normalization: Normalization = None,
    dataset: str | os.PathLike | Dataset | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate a model under attacks on the test images of a dataset (default CIFAR-10).

    ``model``: a zoo name, a checkpoint path, a factory (``FILE.py:fn``), a loaded model or any
    ``nn.Module`` (``normalization=(mean, std)`` when it expects normalized inputs; adder layers of the
    official kind are converted and that is said on stderr).

    ``dataset``: ``cifar10``, ``cifar100``, ``svhn``, ``imagefolder:PATH``, ``npz:PATH`` (see
    :mod:`robustadder.data`); default the one the model's checkpoint was trained on, else CIFAR-10.
    ``data``: the data directory of a registered dataset, or an :class:`ImageSet`. ``n``: the first n
    test images in the dataset's order.

    Every (attack, eps, settings) is a cell in the results store: computed once, resumed after an
    interruption, reused afterwards (``force=True`` recomputes). Returns one row per (attack, sample)
    with ``attack`` (label), ``attack_name``, ``eps``, ``norm``, ``cell_id``, ``sample_id``, ``label``,
    ``clean_pred``, ``adv_pred``, ``clean_correct``, ``adv_correct``, ``linf``, ``l2``; ``attrs`` carries
    the model identity, settings, store path, a per-attack ``summary`` and, with several attacks, the
    per-sample ``worst_case_robust_accuracy``. Under torchrun the ranks share the work (see
    :mod:`robustadder.distributed`) and every rank returns the full rows.
    """
    started = time.perf_counter()
    settings = Settings(batch_size, backend, device, dtype, bn, shuffle, seed, grad)
    settings.validate()
    configs = resolve_attacks(attacks, eps=eps, norm=norm, params=params)
    dataset = opened_dataset(dataset)
    loaded = as_loaded(model, arch=arch, normalization=normalization, input_shape=module_input_shape(dataset, data))
    images = evaluation_images([loaded], dataset, data, n)
    build_ctx = BuildContext(load_model=transfer_source_loader(settings, loaded), num_classes=loaded.arch.num_classes)
    configs = [pin_transfer_source(c) for c in configs]
    runners = [build_runner(c, build_ctx) for c in configs]  # validates sources before the store is touched
    prepared = prepare(loaded, settings)
    check_bn_batches(settings, len(images))  # before the store is touched
    own_store = not isinstance(store, Store)
    db = Store.open(store) if own_store else store
    try:
        if context().is_main:
            announce(loaded)  # not only with progress: a conversion is never silent (stderr, once)
        if progress and context().is_main:
            _say_estimate(db, loaded, prepared, configs, settings, images)
        if db.run_id is None:
            dist = context()
            db.start_run(
                f"evaluate (rank {dist.rank}/{dist.world_size})" if dist.active else "evaluate", settings.resolved()["device"]
            )
        results = [
            run_cell(db, loaded, prepared, cfg, runner, settings, images, force=force, progress=progress)
            for cfg, runner in zip(configs, runners, strict=True)
        ]
        store_path = str(db.path)
    finally:
        if own_store:
            db.close()
    frames, summary, bounded = [], [], []
    for cfg, res in zip(configs, results, strict=True):
        frame = res.frame.assign(attack=cfg.label, attack_name=cfg.name, eps=cfg.eps, norm=cfg.norm)
        frames.append(frame)
        rows, budget, extra = res.frame, cfg.eps, {}
        if cfg.definition.minimal:  # read at the requested budget; the distances themselves are summarized beside
            budget = parse_eps(DEFAULT_EPS[cfg.norm] if eps is None else eps, cfg.norm)
            rows = at_eps(res.frame, cfg.norm, budget)
            extra = {"minimal_distance": {**median_distance(minimal_distances(res.frame, cfg.norm)), "norm": cfg.norm}}
        bounded.append(rows)
        summary.append({"attack": cfg.label, "name": cfg.name, "eps": budget, "norm": cfg.norm, "cell_id": res.cell_id,
                        "reused": res.reused, "params": dict(cfg.params), "grad": res.config["settings"]["grad"],
                        "components": res.config.get("components", {}),
                        **attack_summary(rows, res.seconds, (cfg.norm, budget)), **extra})  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(
        model=loaded.name,
        arch=loaded.arch.name,
        variant=loaded.arch.variant,
        converted_layers=list(loaded.meta.get("converted") or []),
        weights_sha256=loaded.weights_sha256,
        data=images.source,
        dataset=images.dataset,
        settings=settings.resolved(),
        backend=settings.resolved()["backend"],
        store=store_path,
        summary=summary,
        seconds=sum(s["seconds"] for s in summary),
        wall_seconds=time.perf_counter() - started,
    )
    attacked = [rows for cfg, rows in zip(configs, bounded, strict=True) if cfg.name != "none"]
    if len(attacked) > 1:
        accuracy, ci = worst_case_accuracy(attacked)
        out.attrs["worst_case_robust_accuracy"] = accuracy
        out.attrs["worst_case_robust_accuracy_ci"] = list(ci)
    return out
