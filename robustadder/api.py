"""The library entry point that the CLI is a thin layer over: ``robustadder.evaluate``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from . import escape
from .attacks import (
    ATTACKS,
    DEFAULT_EPS,
    AttackConfig,
    BuildContext,
    build_runner,
    format_eps,
    make_config,
    parse_attack_option,
    parse_eps,
)
from .cost import format_cost, format_duration, pending_cost  # noqa: F401 - also importable from here, as before
from .data import Dataset, ImageSet, dataset_title
from .distances import at_eps, median_distance, minimal_distances
from .distributed import context
from .engine import Settings, check_bn_batches, pin_transfer_source, prepare, run_cell, transfer_source_loader
from .errors import UserError, render_by_format
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
from .summary import CONFIDENCE, attack_summary, ci_text, percent, worst_case_accuracy

_SAID: set[str] = set()  # the step notes this process has printed (AttackConfig.step_note)


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


def _say_step_notes(configs: Sequence[AttackConfig]) -> None:
    """Each attack's step note (:attr:`AttackConfig.step_note`) on stderr, once per process.

    Once: compare and compare --group evaluate the same attacks per model and eps. Said when the work starts,
    after every input was validated: an error a user causes stays one line on stderr, with no note above it.
    """
    for note in dict.fromkeys(note for note in (c.step_note for c in configs) if note and note not in _SAID):
        _SAID.add(note)
        print(note, file=sys.stderr)


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


class ReadsThrough:
    """Deprecated reading of the DataFrame a result used to be (indexing, attributes, ``len``); ``_view`` names it."""

    _view = ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == self._view:
            raise AttributeError(name)
        return getattr(getattr(self, self._view), name)

    def __getitem__(self, key: Any) -> Any:
        return getattr(self, self._view)[key]

    def __len__(self) -> int:
        return len(getattr(self, self._view))


@dataclass
class Evaluation(ReadsThrough):
    """What :func:`evaluate` measured: per-sample rows, per-attack summaries, the model, data and settings.

    Renders itself (:meth:`to_json`, :meth:`to_text`, :meth:`to_markdown`, :meth:`to_latex`, :meth:`render`);
    :attr:`frame` is the pandas view, one row per (attack, sample) with ``attrs`` as before. For code written when
    ``evaluate`` returned that DataFrame, reading goes through to it (``result["adv_correct"]``,
    ``result.attrs``, ``len(result)``): deprecated, use ``result.frame``.
    """

    frame: pd.DataFrame
    model: str
    arch: str
    variant: str
    converted_layers: list[str]
    weights_sha256: str
    data: str
    dataset: str
    settings: dict[str, Any]
    store: str
    #: per attack: label, name, eps, norm, cell id, reuse, params, grad, robust accuracy with interval, ...
    summary: list[dict[str, Any]]
    wall_seconds: float
    worst_case: float | None = None
    worst_case_ci: tuple[float, float] | None = None
    _view = "frame"

    @property
    def backend(self) -> str:
        """The adder backend that computed (``auto`` resolved)."""
        return self.settings["backend"]

    @property
    def clean(self) -> pd.DataFrame:
        """The rows of the first cell (every cell has each sample's clean prediction)."""
        return self.frame[self.frame["cell_id"] == self.summary[0]["cell_id"]]

    @property
    def clean_accuracy(self) -> float:
        """Clean accuracy in percent (its interval is ``summary[0]["clean_accuracy_ci"]``)."""
        return 100.0 * float(self.clean["clean_correct"].mean())

    def _headline(self, esc: Callable[[Any], str]) -> str:
        """Model, data and clean accuracy in one line, the model's name passed through ``esc``."""
        ci = ci_text(self.summary[0]["clean_accuracy_ci"])
        return (f"{esc(self.model)} ({self.arch}, {self.variant}) on {len(self.clean)} {dataset_title(self.dataset)} "
                f"test images: clean accuracy {percent(self.clean_accuracy)} {ci}")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The result as ``eval --json`` prints it: rounded, NaN as null, no per-sample rows."""
        first = self.clean
        clean_ci = self.summary[0]["clean_accuracy_ci"]
        result: dict[str, Any] = {
            "model": self.model, "arch": self.arch, "variant": self.variant, "converted_layers": self.converted_layers,
            "weights_sha256": self.weights_sha256, "n": len(first),
            "clean_accuracy": round(self.clean_accuracy, 4),
            "clean_accuracy_ci": [round(v, 4) for v in clean_ci], "confidence": CONFIDENCE,
            "seconds": round(self.wall_seconds, 3), "dataset": self.dataset, "data": self.data, "backend": self.backend,
            "settings": self.settings, "store": self.store, "attacks": [],
        }  # fmt: skip
        for s in self.summary:
            entry = {
                "attack": s["attack"], "name": s["name"], "norm": s["norm"], "eps": s["eps"], "params": s["params"],
                "robust_accuracy": round(s["robust_accuracy"], 4),
                "robust_accuracy_ci": [round(v, 4) for v in s["robust_accuracy_ci"]],
                "grad": s["grad"], "components": s["components"],
                "attack_success_rate": _round_or_none(s["attack_success_rate"]),
                "mean_linf": s["mean_linf"], "mean_l2": s["mean_l2"], "max_linf": s["max_linf"], "max_l2": s["max_l2"],
                "seconds": round(s["seconds"], 3), "reused": s["reused"], "cell_id": s["cell_id"],
            }  # fmt: skip
            if self.worst_case is not None:
                entry["worst_case_robust_accuracy"] = round(self.worst_case, 4)
            if "minimal_distance" in s:  # a minimal attack: its distances (n stays a count), beside its accuracy at eps
                entry["minimal_distance"] = {k: (v if isinstance(v, (str, int)) else _round_or_none(float(v), 8))
                                             for k, v in s["minimal_distance"].items()}  # fmt: skip
            result["attacks"].append(entry)
        if self.worst_case is not None:
            result["worst_case_robust_accuracy"] = round(self.worst_case, 4)
            result["worst_case_robust_accuracy_ci"] = [round(v, 4) for v in self.worst_case_ci]
        return result

    def attack_table(self, esc: Callable[[Any], str] = str) -> pd.DataFrame:
        """One display row per attack: budget, robust accuracy with interval, gradient, success rate, norms, time."""
        return pd.DataFrame([
            {"attack": esc(s["attack"]), "eps": format_eps(s["eps"], s["norm"], zero="-"),
             "robust acc": percent(s["robust_accuracy"]), "95 % interval": ci_text(s["robust_accuracy_ci"]),
             "grad": s["grad"],
             "success rate": "-" if s["attack_success_rate"] != s["attack_success_rate"] else percent(s["attack_success_rate"]),
             "mean Linf": f"{s['mean_linf'] * 255:.2f}/255", "mean L2": f"{s['mean_l2']:.3f}",
             "time": f"{s['seconds']:.1f} s" + (" (stored)" if s["reused"] else "")}
            for s in self.summary
        ])  # fmt: skip

    def _lines(self) -> tuple[list[str], list[str]]:
        """The text around the attack table: the header lines, and the lines after it."""
        first, st = self.clean, self.settings
        head = [
            f"model           {self.model} ({self.arch}, {self.variant}), weights {self.weights_sha256[:12]}",
            f"samples         {len(first)} {dataset_title(self.dataset)} test images "
            f"(ids {first['sample_id'].min()}..{first['sample_id'].max()}) from {self.data}",
            f"settings        bn={st['bn']} shuffle={'yes' if st['shuffle'] else 'no'} seed={st['seed']} "
            f"batch={st['batch_size']} grad={st['grad']} backend={st['backend']} dtype={st['dtype']} device={st['device']}",
            f"clean accuracy  {percent(self.clean_accuracy)}  {ci_text(self.summary[0]['clean_accuracy_ci'])}",
        ]
        tail = []
        if self.worst_case is not None:
            tail.append(f"\nworst case over the attacks (per sample): {percent(self.worst_case)} robust accuracy "
                        f"{ci_text(self.worst_case_ci)}")  # fmt: skip
        for s in self.summary:
            if "minimal_distance" in s:
                d = s["minimal_distance"]
                unit, scale = ("/255", 255) if d["norm"] == "Linf" else ("", 1)
                tail.append(
                    f"\n{s['attack']}: median minimal {d['norm']} distance {d['median'] * scale:.3g}{unit} "
                    f"[{d['ci_low'] * scale:.3g}, {d['ci_high'] * scale:.3g}] over {d['n']} samples (0: misclassified "
                    f"clean, inf: never fooled); its row is read at eps {format_eps(s['eps'], s['norm'])}"
                )
        return head, tail

    @property
    def attacked(self) -> bool:
        """Whether any attack ran (else the result is clean accuracy alone)."""
        return any(s["name"] != "none" for s in self.summary)

    def to_text(self) -> str:
        """The human summary ``eval`` prints: model, samples, settings, clean accuracy, a row per attack."""
        head, tail = self._lines()
        lines = list(head)
        if self.attacked:
            lines += ["", self.attack_table().to_string(index=False), *tail]
        lines += [f"\ntime            {self.wall_seconds:.1f} s (adder backend: {self.backend})",
                  f"store           {self.store}"]  # fmt: skip
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The attack table in Markdown under a line naming the model, data and clean accuracy."""
        return f"{self._headline(escape.markdown)}\n\n{self.attack_table(escape.markdown).to_markdown(index=False)}\n"

    def to_latex(self) -> str:
        """A LaTeX table (booktabs) of the attacks, captioned with the model, data and clean accuracy; text escaped."""
        from .report.latex import latex_float

        body = escape.frame_text(self.attack_table(), escape.latex).style.hide(axis="index").to_latex(hrules=True)
        return latex_float("eval", escape.latex(self._headline(str)), body)

    def render(self, fmt: str) -> str:
        """``text``, ``json``, ``md`` or ``latex``."""
        return render_by_format(fmt, {"text": self.to_text, "json": lambda: json.dumps(self.to_json()),
                                      "md": self.to_markdown, "latex": self.to_latex})  # fmt: skip


def _round_or_none(value: float, digits: int = 4) -> float | None:
    """JSON has no NaN: undefined rates (no clean-correct sample) become null."""
    return None if value != value else round(value, digits)


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
    settings: Settings | None = None,
    arch: str | None = None,
    normalization: Normalization = None,
    dataset: str | os.PathLike | Dataset | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Evaluation:
    """Evaluate a model under attacks on the test images of a dataset (default CIFAR-10).

    ``model``: a zoo name, a checkpoint path, a factory (``FILE.py:fn``), a loaded model or any
    ``nn.Module`` (``normalization=(mean, std)`` when it expects normalized inputs; adder layers of the
    official kind are converted and that is said on stderr).

    ``dataset``: ``cifar10``, ``cifar100``, ``svhn``, ``imagefolder:PATH``, ``npz:PATH`` (see
    :mod:`robustadder.data`); default the one the model's checkpoint was trained on, else CIFAR-10.
    ``data``: the data directory of a registered dataset, or an :class:`ImageSet`. ``n``: the first n
    test images in the dataset's order.

    ``settings``: how the model runs (:class:`~robustadder.engine.Settings`: batch size, backend, device, dtype,
    BN mode, shuffle, seed, adder gradient); any of its fields may also be given as a keyword
    (``evaluate(m, "pgd", grad="exact")``), overriding ``settings``.

    Every (attack, eps, settings) is a cell in the results store: computed once, resumed after an
    interruption, reused afterwards (``force=True`` recomputes). Returns an :class:`Evaluation`: its
    ``frame`` has one row per (attack, sample) with ``attack`` (label), ``attack_name``, ``eps``, ``norm``,
    ``cell_id``, ``sample_id``, ``label``, ``clean_pred``, ``adv_pred``, ``clean_correct``, ``adv_correct``,
    ``linf``, ``l2``; ``summary`` has one entry per attack and, with several attacks, ``worst_case`` is the
    per-sample worst-case robust accuracy. Under torchrun (see :mod:`robustadder.distributed`) the ranks share
    the work and every rank returns the full rows.
    """
    started = time.perf_counter()
    settings = Settings.of(settings, **overrides)
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
            _say_step_notes(configs)
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
    resolved = settings.resolved()
    attacked = [rows for cfg, rows in zip(configs, bounded, strict=True) if cfg.name != "none"]
    worst, worst_ci = worst_case_accuracy(attacked) if len(attacked) > 1 else (None, None)
    result = Evaluation(
        out, loaded.name, loaded.arch.name, loaded.arch.variant, list(loaded.meta.get("converted") or []),
        loaded.weights_sha256, images.source, images.dataset, resolved, store_path, summary,
        time.perf_counter() - started, worst, tuple(worst_ci) if worst_ci is not None else None,
    )  # fmt: skip
    out.attrs.update(
        model=result.model, arch=result.arch, variant=result.variant, converted_layers=result.converted_layers,
        weights_sha256=result.weights_sha256, data=result.data, dataset=result.dataset, settings=resolved,
        backend=resolved["backend"], store=store_path, summary=summary, seconds=sum(s["seconds"] for s in summary),
        wall_seconds=result.wall_seconds,
    )  # fmt: skip
    if worst is not None:
        out.attrs["worst_case_robust_accuracy"] = worst
        out.attrs["worst_case_robust_accuracy_ci"] = list(worst_ci)
    return result
