"""Sweeps: a TOML grid of models × attacks × eps × inference settings × seeds, run as cells.

A sweep file looks like this (``attacks/*.toml`` are the presets)::

    name = "paper"
    description = "..."
    n = 1000                                  # the first N test images
    models = ["ann20", {ref = "../x.pt", label = "ANN (third party)"}]
    eps = ["8/255"]                           # for attacks that do not set their own
    norm = "Linf"

    [settings]                                # a value or a list of values (a grid axis)
    bn = ["eval", "train"]
    grad = "both"                             # the default: per-sample worst case over both adder gradients
    seed = [0, 1, 2]

    [[attacks]]
    name = "pgd"
    steps = 7                                 # attack options, as for --attack pgd:steps=7

    [report]                                  # the table's layout: axes model, attack, eps, the settings, depth
    rows = ["depth", "model"]                 # depth: the ResNet depth of each model (ResNet-20 / -32 blocks)
    columns = ["attack"]

Relative model paths are resolved against the sweep file's directory (``$VARS`` are expanded). A
model whose weights cannot be had (offline, missing file) is *skipped with its reason* — listed in the
plan and in reports, never silently dropped. Everything else that is wrong with a sweep file is an
error before any work starts.

Running a sweep runs its missing cells through the engine and store: interrupting it (Ctrl-C, kill -9)
and running it again finishes only what is missing, and reports read the same per-sample rows either way.
Grid points whose seed cannot change the result (no shuffle, an attack without randomness) are one
cell, computed once (see :func:`robustadder.engine.cell_hash`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ._compat import tomllib
from .attacks import ATTACKS, AttackConfig, BuildContext, build_runner, format_eps, make_config, parse_eps
from .cost import CellCost, adder_work_per_image, calibrate, cell_cost, format_cost, format_duration, image_passes  # noqa: F401 - API
from .data import Dataset, ImageSet, dataset_ref, dataset_title, open_dataset
from .distributed import context
from .engine import Settings, cell_config, cell_hash, pin_transfer_source, prepare, run_cell, transfer_source_loader
from .errors import UserError
from .fileio import note_input
from .models import LoadedModel, evaluation_images, module_input_shape, resolve_model
from .models.module import is_factory_ref, split_factory
from .store import Store

SETTING_KEYS = ("bn", "shuffle", "seed", "batch_size", "grad", "backend", "dtype", "device")
_TOP_KEYS = {"name", "description", "n", "dataset", "models", "eps", "norm", "settings", "attacks", "report"}


@dataclass(frozen=True)
class ModelRef:
    """A model as a sweep names it: zoo name, checkpoint path or factory (+ weights), and its label."""

    ref: str
    label: str
    weights: str | None = None
    normalization: str | None = None


@dataclass
class SweepConfig:
    """A parsed, validated sweep file."""

    name: str
    description: str
    path: Path
    n: int | None
    models: list[ModelRef]
    attacks: list[AttackConfig]
    settings: list[Settings]
    report: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None  # a registered name or scheme:ABSOLUTE_PATH; None: the models' own, else CIFAR-10
    source: str = ""  # the file's text: the store keeps it with the grid, so a report needs no file
    budgets: dict[str, list[float]] = field(default_factory=dict)  # the file's eps per norm (minimal attacks are read there)

    @property
    def seeds(self) -> list[int]:
        return sorted({s.seed for s in self.settings})


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def load_sweep(path: str | os.PathLike) -> SweepConfig:
    """Parse a sweep file; every mistake in it is a UserError naming the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file not found: {path}")
    try:
        note_input(path, "a sweep file")
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    return parse_sweep(text, path)


def parse_sweep(text: str, path: Path) -> SweepConfig:
    """A sweep from its text; ``path`` names it and anchors its relative paths (the file's, or as the store kept it)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_TOP_KEYS))})")
    where = f"{path}"
    models = []

    def local(p: str) -> str:  # paths in a sweep file are relative to the file
        candidate = Path(os.path.expandvars(p)).expanduser()
        return str(candidate if candidate.is_absolute() else (path.parent / candidate).resolve())

    model_keys = {"ref", "label", "weights", "normalization"}
    for item in _as_list(raw.get("models", [])):
        if isinstance(item, str):
            item = {"ref": item}
        if not (isinstance(item, dict) and isinstance(item.get("ref"), str) and all(isinstance(v, str) for v in item.values())):
            raise UserError(f"{where}: each model is a zoo name, a path, or {{ref = ..., label = ...}}; got {item!r}")
        if set(item) - model_keys:
            raise UserError(f"{where}: model {item['ref']!r}: unknown key '{sorted(set(item) - model_keys)[0]}' "
                            f"(known: {', '.join(sorted(model_keys))})")  # fmt: skip
        ref, label, weights = item["ref"], item.get("label"), item.get("weights")
        expanded = os.path.expandvars(ref)
        factory = split_factory(expanded)
        if factory:
            target, attr, is_file = factory
            if is_file:
                expanded = f"{local(target)}:{attr}"
            default = Path(weights).stem if weights else attr
        else:
            if weights or item.get("normalization"):
                raise UserError(f"{where}: model {ref!r}: weights / normalization apply to a factory (FILE.py:fn)")
            if os.sep in expanded or expanded.endswith((".pt", ".pth", ".tar")):
                expanded = local(expanded)
            default = Path(ref).stem if os.sep in ref or ref.endswith((".pt", ".pth")) else ref
        models.append(ModelRef(expanded, label or default, local(weights) if weights else None, item.get("normalization")))
    if not models:
        raise UserError(f"{where}: 'models' lists no model")
    norm = raw.get("norm", "Linf")
    eps_values = _as_list(raw.get("eps", [None]))
    attacks: list[AttackConfig] = []
    if not isinstance(raw.get("attacks", []), list):
        raise UserError(f"{where}: attacks must be an array of tables ([[attacks]] with a name each)")
    for i, entry in enumerate(raw.get("attacks", [])):
        if not isinstance(entry, dict) or "name" not in entry:
            raise UserError(f"{where}: attacks[{i}] needs a name")
        entry = dict(entry)
        name = entry.pop("name")
        if name not in ATTACKS:
            raise UserError(f"{where}: attacks[{i}]: unknown attack '{name}'")
        own_eps = entry.pop("eps", None)
        a_norm = entry.pop("norm", norm)
        for eps in [None] if name == "none" else _as_list(own_eps) if own_eps is not None else eps_values:
            try:
                cfg = make_config(name, eps=eps, norm=a_norm, params=entry)
            except UserError as exc:
                raise UserError(f"{where}: attacks[{i}] ({name}): {exc}") from None
            if cfg not in attacks:
                attacks.append(cfg)
    if not attacks:
        raise UserError(f"{where}: no [[attacks]] given")
    if not isinstance(raw.get("settings", {}), dict):
        raise UserError(f"{where}: settings must be a table ([settings] with one value or a list per setting)")
    grid = dict(raw.get("settings", {}))
    bad = sorted(set(grid) - set(SETTING_KEYS))
    if bad:
        raise UserError(f"{where}: unknown setting '{bad[0]}' (settings: {', '.join(SETTING_KEYS)})")
    axes = [(k, _as_list(grid[k])) for k in SETTING_KEYS if k in grid]
    settings = []
    for combo in itertools.product(*(values for _, values in axes)):
        try:
            s = Settings(**dict(zip([k for k, _ in axes], combo, strict=True)))
        except TypeError as exc:
            raise UserError(f"{where}: bad settings {combo}: {exc}") from None
        s.validate()
        settings.append(s)
    n = raw.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise UserError(f"{where}: n must be a positive integer")
    labels = [m.label for m in models]
    if len(set(labels)) < len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise UserError(f"{where}: model '{dup}' is listed twice; give each model once (or distinct labels)")
    for key in ("name", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise UserError(f"{where}: {key} must be a string")
    try:
        dataset = dataset_ref(raw["dataset"], path.parent) if "dataset" in raw else None
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    budgets = {norm: sorted({parse_eps(e, norm) for e in eps_values if e is not None})}
    return SweepConfig(raw.get("name", path.stem), raw.get("description", ""), path, n, models, attacks, settings,
                       _report_layout(raw.get("report", {}), where), dataset, text, budgets)  # fmt: skip


#: depth: the CIFAR ResNet depth of the row's model (the paper's tables group ResNet-20 and -32 rows by it)
REPORT_AXES = ("model", "attack", "eps_label", *(k for k in SETTING_KEYS if k != "seed"), "depth")


def _report_layout(value: Any, where: str) -> dict[str, list[str]]:
    """A sweep's ``[report]`` table: rows and columns, each a list of axis names, no axis twice."""
    if not isinstance(value, dict):
        raise UserError(f"{where}: [report] must be a table with rows and columns, not {value!r}")
    unknown = sorted(set(value) - {"rows", "columns"})
    if unknown:
        raise UserError(f"{where}: [report] has unknown key '{unknown[0]}' (rows, columns)")
    layout = {}
    for key in ("rows", "columns"):
        if key not in value:
            continue
        axes = value[key]
        axes = [axes] if isinstance(axes, str) else axes
        if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
            raise UserError(f"{where}: [report] {key} must be a list of axis names")
        axes = ["eps_label" if a == "eps" else a for a in axes]
        bad = [a for a in axes if a not in REPORT_AXES]
        if bad:
            raise UserError(f"{where}: [report] {key}: unknown axis '{bad[0]}' (axes: model, attack, eps, "
                            f"{', '.join(REPORT_AXES[3:])})")  # fmt: skip
        layout[key] = axes
    both = layout.get("rows", []) + layout.get("columns", [])
    if len(set(both)) < len(both):
        raise UserError(f"{where}: [report] names an axis twice")
    return layout


@dataclass
class PlannedCell:
    """One cell of the grid, with its identity once the model is known."""

    model: ModelRef
    attack: AttackConfig
    settings: Settings
    cell_id: str | None = None
    status: str = "missing"  # missing | running | done | failed | skipped
    reason: str = ""
    estimate_s: float = 0.0  # estimated compute seconds: the most (an adaptive attack fools no sample early) ...
    least_s: float = 0.0  # ... and the least (its first stage fools every sample); equal for fixed-step attacks


@dataclass
class SweepPlan:
    """The expanded grid: loaded models, skipped ones with reasons, and every cell."""

    config: SweepConfig
    data: ImageSet
    models: dict[str, LoadedModel]
    skipped: dict[str, str]
    cells: list[PlannedCell]

    @property
    def to_run(self) -> list[PlannedCell]:
        """The distinct cells still to compute (grid points sharing one cell counted once)."""
        return distinct_cells(c for c in self.cells if c.status not in ("done", "skipped"))

    def summary_lines(self, store: Store | None = None) -> list[str]:
        """What the plan holds, as ``sweep`` says it before running: cells done, to run, skipped, reused."""
        cells, cfg = self.cells, self.config
        done = distinct_cells(c for c in cells if c.status == "done")
        skipped = sum(c.status == "skipped" for c in cells)
        shared = len(cells) - skipped - len(distinct_cells(c for c in cells if c.status != "skipped"))
        lines = [
            f"sweep {cfg.name}: {len(cells)} cells ({len(cfg.models)} models x {len(cfg.settings)} settings x "
            f"{len(cfg.attacks)} attacks/eps) on {len(self.data)} {dataset_title(self.data.dataset)} images",
            f"  done {len(done)}, to run {len(self.to_run)}, skipped {skipped}",
        ]
        if shared:
            lines.append(f"  {shared} more grid points reuse one of these cells (a seed that cannot change the result)")
        if done and store is not None:  # what the finished cells cost when they ran (summed batch times)
            spent = sum(store.cell(c.cell_id).seconds for c in done)
            lines.append(f"  compute time of the done cells, as measured when they ran: {format_duration(spent)}")
        lines += [f"  skipped model {model}: {reason}" for model, reason in self.skipped.items()]
        lines += [f"  {note}" for note in (a.step_note for a in cfg.attacks) if note]
        return lines

    def dry_run_lines(self, store: Store | None = None) -> list[str]:
        """The cost estimate of the cells to run and one line per cell, as ``sweep --dry-run`` prints them."""
        est = estimate(self, store)
        lines = [
            f"  estimated cost of the cells to run: up to {est['adder_gops']:.1f} G adder ops, "
            f"{format_cost(est['least_seconds'], est['seconds'])} on this machine (calibrated by a short measurement; "
            "AutoAttack and Square run their later stages only on the samples still robust)"
        ]
        for c in self.to_run:
            lines.append(
                f"    {c.model.label:24s} {c.attack.label:28s} {format_eps(c.attack.eps, c.attack.norm):>7s} "
                f"{c.settings.bn:5s} bs={c.settings.batch_size:<4d} "
                f"grad={c.settings.grad:9s} seed={c.settings.seed}  {format_cost(c.least_s, c.estimate_s)}"
            )
        return lines


def plan_sweep(
    config: SweepConfig,
    *,
    data: str | os.PathLike | ImageSet | None = None,
    store: Store | None = None,
    dataset: str | os.PathLike | Dataset | None = None,
) -> SweepPlan:
    """Expand the grid (models × settings × attacks), load models, compute cell ids and their status.

    ``dataset`` (``--dataset``) overrides the sweep file's; without either, the one the models' checkpoints
    were trained on, else CIFAR-10. Every model must fit the images (one line naming the file otherwise).
    """
    wanted = dataset if dataset is not None else config.dataset
    spec = open_dataset(wanted) if wanted is not None else None
    images = None
    if isinstance(data, ImageSet) or (spec is not None and spec.input_shape is not None):
        images = evaluation_images([], spec, data, config.n)  # missing data is found before any model loads
    shape = module_input_shape(spec, data)
    models: dict[str, LoadedModel] = {}
    skipped: dict[str, str] = {}
    for m in config.models:
        try:
            models[m.label] = resolve_model(m.ref, weights=m.weights, normalization=m.normalization, input_shape=shape)
            models[m.label].name = m.label
        except UserError as exc:
            # a typo or the user's own code failing, not weights that cannot be had: stop here
            if str(exc).startswith("unknown model") or is_factory_ref(m.ref):
                raise UserError(f"{config.path}: {exc}") from None
            skipped[m.label] = str(exc)
    try:
        images = evaluation_images(list(models.values()), spec, images if images is not None else data, config.n)
    except UserError as exc:
        raise UserError(f"{config.path}: {exc}") from None
    cells = []
    for m, settings, attack in itertools.product(config.models, config.settings, config.attacks):
        cell = PlannedCell(m, attack, settings)
        if m.label in skipped:
            cell.status, cell.reason = "skipped", skipped[m.label]
        else:
            cell.cell_id = cell_hash(cell_config(models[m.label], pin_transfer_source(attack), settings, images))
            record = store.cell(cell.cell_id) if store else None
            if record:
                cell.status = record.status
        cells.append(cell)
    return SweepPlan(config, images, models, skipped, cells)


# -- what reports read ------------------------------------------------------------------------------------
def attack_key(attack: AttackConfig) -> str:
    """A grid point's attack as the sweep file defines it (before any model is resolved)."""
    return json.dumps(attack.to_json(), sort_keys=True)


def settings_key(settings: Settings) -> str:
    """A grid point's settings as the sweep file defines them."""
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """What a report says of a model without loading it: architecture, variant and operation counts.

    Counted once when a sweep runs (a forward pass with hooks), so that the energy table of a report
    needs no weights; ``ops`` is None for a model the counter does not know.
    """
    from .ops import count_ops

    arch = loaded.arch
    info: dict[str, Any] = {"arch": arch.name, "family": arch.family, "kind": arch.kind, "depth": arch.depth, "awn": arch.awn,
                            "variant": arch.variant, "num_classes": arch.num_classes}  # fmt: skip
    try:
        counts = count_ops(loaded.model)
        info["ops"] = {"adds": counts.total_adds, "muls": counts.total_muls, "energy_uj": counts.energy_uj}
    except Exception:  # an architecture the counting convention does not cover: no energy figure
        info["ops"] = None
    return info


def record_plan(plan: SweepPlan, store: Store) -> None:
    """Store the sweep's grid (which cell each grid point is), its models and their infos."""
    if not context().is_main:
        return
    n = len(plan.data)
    models = []
    for m in plan.config.models:
        loaded = plan.models.get(m.label)
        models.append((m.label, m.ref, loaded.weights_sha256 if loaded else None, plan.skipped.get(m.label)))
    infos = {loaded.weights_sha256: model_info(loaded) for loaded in plan.models.values()}
    points = [(c.model.label, attack_key(c.attack), settings_key(c.settings), n, c.cell_id) for c in plan.cells if c.cell_id]
    store.record_sweep(plan.config.name, models, infos, points, source=(plan.config.path.name, plan.config.source))


def estimate(plan: SweepPlan, store: Store | None = None) -> dict[str, Any]:
    """Cost of the missing cells: adder work from model and attack, seconds from a short measurement.

    Adder work is the most an adaptive attack can do; seconds are given as the least and the most (see
    :func:`image_passes`). With the ``store`` the plan was made against, a cell interrupted part way
    counts only what it still has to do (see :func:`cell_cost`).
    """
    calibration: dict[tuple, tuple[float, float]] = {}
    work: dict[str, float] = {}
    total_s, least_s, total_work = 0.0, 0.0, 0.0
    for cell in distinct_cells(c for c in plan.cells if c.status not in ("done", "skipped")):
        loaded = plan.models[cell.model.label]
        key = (cell.model.label, cell.settings.backend, cell.settings.dtype, cell.settings.device, cell.settings.batch_size)
        if key not in calibration:
            model = prepare(loaded, cell.settings)
            calibration[key] = calibrate(model, cell.settings)
            work.setdefault(cell.model.label, adder_work_per_image(model))
        cost = cell_cost(store, loaded, cell.attack, cell.settings, plan.data, calibration[key])
        cell.least_s, cell.estimate_s = cost.least_s, cost.most_s
        total_s, least_s = total_s + cell.estimate_s, least_s + cell.least_s
        total_work += (cost.forward + 3 * cost.forward_backward) * work[cell.model.label]
    return {"seconds": total_s, "least_seconds": least_s, "adder_gops": total_work / 1e9, "calibration": calibration}


# -- running -----------------------------------------------------------------------------------------------
def run_sweep(
    plan: SweepPlan,
    store: Store,
    *,
    force: bool = False,
    progress: bool = True,
) -> list[PlannedCell]:
    """Run every cell not yet done (all with ``force``); returns the cells with their final status.

    The grid is recorded first (:func:`record_plan`), so a report can show an interrupted sweep's
    finished cells, and a rerun of a finished sweep (no cell to compute) records it for stores that
    predate the record.
    """
    record_plan(plan, store)
    todo = distinct_cells(c for c in plan.cells if c.status != "skipped" and (force or c.status != "done"))
    show = progress and context().is_main
    bar = tqdm(total=len(todo), desc=f"sweep {plan.config.name}", unit="cell", disable=not show)
    for cell in todo:
        loaded = plan.models[cell.model.label]
        model = prepare(loaded, cell.settings)
        build_ctx = BuildContext(load_model=transfer_source_loader(cell.settings, loaded), num_classes=loaded.arch.num_classes)
        attack = pin_transfer_source(cell.attack)
        runner = build_runner(attack, build_ctx)
        try:
            result = run_cell(store, loaded, model, attack, runner, cell.settings, plan.data, force=force, progress=progress)
        except UserError as exc:  # this cell cannot run under its settings: record why, go on with the others
            if context().active:
                raise  # ranks must stay in step; the job stops and says why
            cell.status, cell.reason = "failed", str(exc)
            bar.update(1)
            continue
        record = store.cell(result.cell_id)
        cell.status = record.status if record else "missing"
        bar.update(1)
    bar.close()
    by_id = {c.cell_id: c for c in todo}
    for cell in plan.cells:  # grid points that share a cell (a seed that cannot matter) share its outcome
        if cell.cell_id in by_id and cell is not by_id[cell.cell_id]:
            cell.status, cell.reason = by_id[cell.cell_id].status, by_id[cell.cell_id].reason
    return plan.cells


def distinct_cells(cells: Iterable[PlannedCell]) -> list[PlannedCell]:
    """The first grid point of each cell id: grid points whose seed cannot matter are one cell."""
    seen: set[str | None] = set()
    out = []
    for cell in cells:
        if cell.cell_id not in seen:
            seen.add(cell.cell_id)
            out.append(cell)
    return out
