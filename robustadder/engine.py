"""Evaluation engine: runs cells batch by batch, verifies every adversarial batch, stores per-sample rows.

A *cell* is (model weights, attack + parameters, eps, inference settings, sample ids). Its identity is a
stable hash of that configuration, so rerunning an identical cell resumes it (finished batches are
never recomputed nor duplicated) and a finished cell is reused.

Inference settings (recorded with every result):

* ``bn``: ``eval`` uses the BN running statistics; ``train`` normalizes with the statistics of the
  current batch at attack *and* prediction time (running statistics are never updated, and the model's
  own modes are restored afterwards) — the setting under which batch composition changes predictions;
* ``shuffle`` + ``seed``: the order of the sample ids, hence which samples share a batch; the seed also
  seeds the attacks' randomness (per sample, see :mod:`robustadder.attacks.gradient`). Where the seed
  can do neither (no shuffle, an attack that draws no random numbers) it is not part of the cell's
  identity: a sweep over seeds computes such a cell once and every seed reuses it;
* ``batch_size``; ``grad``: the adder input gradient used by white-box attacks: ``surrogate``
  (HardTanh, the official layer's), ``exact`` (sign, the true subgradient) or ``both`` (the default:
  each gradient attack runs once per mode, both stored as cells of their own, and a third cell holds the
  per-sample worst case — see :func:`run_cell`); models without adder layers have one gradient
  and record ``grad`` as ``none``; ``backend``, ``dtype``, ``device``.

Every adversarial batch is checked before anything is stored: ‖x_adv − x‖ ≤ eps (+1e-6) in the
attack's norm, x_adv ∈ [0, 1], all finite. A violation fails the cell with a clear error — a bound
violation is a bug in an attack, and a number computed from it would be silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .attacks import ATTACKS, BOUND_TOLERANCE, AttackConfig, Runner
from .attacks.gradient import input_gradient
from .data import ImageSet
from .distributed import DistContext, context
from .errors import UserError, interruption
from .kernels import GRAD_MODES, get_backend
from .models import LoadedModel, resolve_model
from .nn import adder_layers, adder_settings, set_backend, set_deterministic_convs
from .store import Store

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: --grad choices: one adder input-gradient mode, or the per-sample worst case over both
GRAD_SETTINGS = (*GRAD_MODES, "both")
BN_MODES = ("eval", "train")
# bump when a change alters per-sample results of an unchanged configuration: a store's cells of another engine are
# recomputed, never mixed with this one's (2: deterministic convs; 3: the cpu kernel's forward as 2·Σmin − Σx − Σw,
# whose rounding moved 1-2 borderline samples in 4 of the reference run's cells of unchanged models; 4: the cpu
# kernel's sign-split paths for inputs >= 0, which sum fewer terms in another order)
ENGINE_VERSION = 4


class BoundViolation(UserError):
    """An attack returned an example outside its threat model; the cell is failed, nothing stored."""


@dataclass(frozen=True)
class Settings:
    """How a model is run: the inference settings that every result records.

    The one parameter object of the public API: ``evaluate``, ``compare``, ``compare_groups`` and
    ``run_checks`` take ``settings=Settings(...)`` and, as keywords, overrides of its fields
    (``evaluate(m, "pgd", batch_size=64)``); :meth:`of` combines the two.
    """

    batch_size: int = 128
    backend: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"
    bn: str = "eval"
    shuffle: bool = False
    seed: int = 0
    grad: str = "both"

    @classmethod
    def of(cls, settings: Settings | None = None, /, **overrides: Any) -> Settings:
        """``settings`` (default: the defaults) with ``overrides`` of its fields; an unknown name is a TypeError."""
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (settings are {', '.join(f.name for f in fields(cls))})")
        return replace(settings or cls(), **overrides)

    def validate(self) -> None:
        """Reject settings a user can get wrong before any work starts (types first: sweep files are TOML)."""
        for key, kind in (("batch_size", int), ("seed", int), ("shuffle", bool), ("backend", str), ("device", str),
                          ("dtype", str), ("bn", str), ("grad", str)):  # fmt: skip
            value = getattr(self, key)
            expected = numbers.Integral if kind is int else kind  # numpy integers are integers too
            if not isinstance(value, expected) or (kind is int and isinstance(value, (bool, np.bool_))):
                raise UserError(f"setting {key} must be {kind.__name__}, not {value!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype}")
        if self.bn not in BN_MODES:
            raise UserError(f"--bn must be one of {', '.join(BN_MODES)}, not {self.bn}")
        if self.grad not in GRAD_SETTINGS:
            raise UserError(f"--grad must be one of {', '.join(GRAD_SETTINGS)}, not {self.grad}")
        if self.seed < 0:
            raise UserError(f"--seed must not be negative, not {self.seed}")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UserError(f"unknown device '{self.device}' (use cpu, cuda, cuda:1, ...)") from None
        if device.type not in ("cpu", "cuda"):
            raise UserError(f"--device {self.device}: robustadder runs on cpu or cuda, not {device.type}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: no CUDA GPU is available on this machine; use --device cpu")
        get_backend(self.backend, device)  # raises UserError for unknown/unavailable backends

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def resolved(self) -> dict:
        """The settings as recorded: backend resolved to the one that actually runs."""
        d = asdict(self)
        d["backend"] = get_backend(self.backend, torch.device(self.device)).name
        d["device"] = torch.device(self.device).type
        return d


def exact_cuda_arithmetic() -> None:
    """Make CUDA arithmetic what the settings say it is: float32 without TF32, deterministic algorithms.

    By default cuDNN convolutions (and cuBLAS matrix products, depending on the version) may run in TF32
    (a 10-bit mantissa) and pick algorithms by timing (``benchmark``), which may differ from run to run:
    a CNN's "float32" result would then be neither float32 nor reproducible. Robustness numbers must be
    both, so every evaluation on a GPU switches these off (the adder kernels are deterministic anyway).
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def prepare(loaded: LoadedModel, settings: Settings) -> torch.nn.Module:
    """Move the model to the settings' device/dtype and backend, in eval mode, weights frozen."""
    if torch.device(settings.device).type == "cuda":
        exact_cuda_arithmetic()
    model = loaded.model.to(device=settings.device, dtype=settings.torch_dtype)
    set_backend(model, settings.backend)
    # per-sample results independent of thread count and batch size (robustadder.nn.conv); the
    # reference backend (a debugging aid) keeps PyTorch's convolutions as well as its own adder formula
    set_deterministic_convs(model, settings.resolved()["backend"] == "cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks need input gradients only; weight gradients are wasted work
    return model


@contextmanager
def inference_mode(model: torch.nn.Module, bn: str) -> Iterator[Callable[[], None]]:
    """Put the model in the cell's mode; yields ``apply`` to re-establish it; restores everything after.

    ``bn='train'``: BN layers normalize with batch statistics but do not update their running
    statistics (``track_running_stats`` off while inside), so evaluating never changes the model.
    """
    modules = list(model.modules())
    saved = [(m, m.training) for m in modules]
    norms = [m for m in modules if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    tracked = [(m, m.track_running_stats) for m in norms]

    def apply() -> None:
        model.eval()
        if bn == "train":
            for m in norms:
                m.train()
                m.track_running_stats = False

    try:
        apply()
        yield apply
    finally:
        for m, flag in tracked:
            m.track_running_stats = flag
        for m, training in saved:
            m.training = training


def sample_order(ids: np.ndarray, shuffle: bool, seed: int) -> np.ndarray:
    """Order in which samples are batched: original, or a permutation fixed by the seed."""
    if not shuffle:
        return ids.copy()
    return ids[np.random.default_rng(seed).permutation(len(ids))]


def make_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive chunks of the order: the batches of a cell (fixed by its configuration)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def data_fingerprint(data: ImageSet) -> str:
    """Content hash of the samples a cell sees (ids, images, labels).

    Computed once per image set (planning a 10,000-cell sweep on 1,000 images re-hashed the data for
    every cell: 66 s); an ImageSet's arrays are not modified after loading.
    """
    cached = getattr(data, "_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for arr in (data.ids, data.x, data.y):
        h.update(np.ascontiguousarray(arr).tobytes())
    object.__setattr__(data, "_fingerprint", h.hexdigest()[:16])
    return data._fingerprint


def has_adder_layers(model: torch.nn.Module) -> bool:
    """Whether the model has adder layers, i.e. whether its input gradient has a mode at all."""
    return bool(adder_layers(model))


def effective_grad(loaded: LoadedModel, attack: AttackConfig, grad: str) -> str:
    """The gradient setting that can matter for this model and attack.

    ``none`` for a model without adder layers (a CNN has one gradient) and for attacks that follow no
    gradient of the model (clean, noise, black-box, transfer from another model); otherwise ``grad``.
    """
    if not has_adder_layers(loaded.model) or attack.definition.kind != "white-box":
        return "none"
    return grad


def component_settings(loaded: LoadedModel, attack: AttackConfig, settings: Settings) -> list[Settings]:
    """The settings of the cells that compute a cell (the one rule for running and estimating it).

    One per adder gradient mode when ``both`` can matter (see :func:`run_cell`), else one with the
    gradient that can.
    """
    grad = effective_grad(loaded, attack, settings.grad)
    modes = GRAD_MODES if grad == "both" else (grad,)
    return [settings if settings.grad == mode else replace(settings, grad=mode) for mode in modes]


def cell_config(loaded: LoadedModel, attack: AttackConfig, settings: Settings, data: ImageSet) -> dict:
    """The full configuration of a cell, as stored (``grad`` as :func:`effective_grad` makes it)."""
    resolved = settings.resolved()
    resolved["grad"] = effective_grad(loaded, attack, settings.grad)
    model = {"name": loaded.name, "arch": loaded.arch.name, "weights_sha256": loaded.weights_sha256}
    if loaded.meta.get("input_normalization"):  # a module's normalization is not in its weights, but changes results
        model["normalization"] = loaded.meta["input_normalization"]
    form = (loaded.meta.get("awn_variant") or {}).get("form", "standardize")
    if form != "standardize":  # nor is an AWN form other than the original one (whose cells keep their ids)
        model["awn_form"] = form
    return {
        "engine": ENGINE_VERSION,
        "model": model,
        "attack": attack.to_json(),
        "settings": resolved,
        "data": {"dataset": data.dataset, "source": data.source, "fingerprint": data_fingerprint(data), "n": len(data),
                 "first_id": int(data.ids.min()), "last_id": int(data.ids.max())},
    }  # fmt: skip


def seed_matters(config: dict) -> bool:
    """Whether a cell's seed can change its rows: it orders the samples (shuffle) and seeds random attacks."""
    if config["settings"].get("shuffle", False):
        return True
    a = config["attack"]
    if a["name"] not in ATTACKS:
        return True
    return AttackConfig(a["name"], a["norm"], a["eps"], a["params"]).randomized


def cell_hash(config: dict) -> str:
    """Stable id of a cell: names and labels excluded (same weights under two names are one cell).

    A seed that cannot matter (:func:`seed_matters`) hashes as seed 0, so those cells keep the ids they
    always had under seed 0 and the other seeds reuse them instead of recomputing identical rows.
    """
    key = json.loads(json.dumps(config))
    key["model"].pop("name", None)
    key["attack"].pop("label", None)
    key["data"].pop("source", None)
    key["data"].pop("dataset", None)  # a name for people; the fingerprint is the samples' identity
    if "seed" in key["settings"] and not seed_matters(key):
        key["settings"]["seed"] = 0
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def verify_batch(x_adv: torch.Tensor, x: torch.Tensor, attack: AttackConfig) -> tuple[np.ndarray, np.ndarray]:
    """Check the threat model for one batch; returns per-sample L∞ and L2 norms of the perturbation."""
    name = attack.label
    x_adv, x = x_adv.detach(), x.detach()
    if x_adv.shape != x.shape:
        raise BoundViolation(f"{name} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise BoundViolation(f"{name} returned NaN or infinite pixels")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < 0.0 or hi > 1.0:
        raise BoundViolation(f"{name} left the image box [0, 1] (pixels in [{lo:.6g}, {hi:.6g}])")
    delta = (x_adv.double() - x.double()).flatten(1)
    linf = delta.abs().amax(1).cpu().numpy()
    l2 = delta.norm(dim=1).cpu().numpy()
    norms = linf if attack.norm == "Linf" else l2
    worst = float(norms.max()) if len(norms) else 0.0
    if worst > attack.eps + BOUND_TOLERANCE:
        raise BoundViolation(
            f"{name} exceeded its {attack.norm} budget: perturbation {worst:.8g} > eps {attack.eps:.8g} "
            f"(+{BOUND_TOLERANCE:g}); the cell is failed and nothing of this batch was stored"
        )
    return linf, l2


def check_differentiable(loaded: LoadedModel) -> None:
    """A one-line UserError unless the model's output has a gradient with respect to its input.

    A minimal attack follows that gradient; a model that computes its output without one (under no_grad, through
    argmax or integer arithmetic) would leave every sample "never fooled", an infinite distance that is not
    robustness. Checked on one blank image before any cell runs.
    """
    model = loaded.model
    param = next(iter(model.parameters()), None)
    x = torch.zeros(1, *model.input_shape, dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu", requires_grad=True)  # fmt: skip
    with torch.enable_grad():
        try:
            out = model(x)
        except Exception as exc:  # a forward that fails here fails every cell: say it now
            raise UserError(f"model {loaded.name} fails on a blank image: {type(exc).__name__}: {str(exc)[:160]}") from None
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise UserError(
            f"model {loaded.name} has no gradient with respect to its input; a minimal-perturbation attack (FMN) "
            "follows that gradient, so its distances would mean nothing"
        )


def verify_minimal(x_adv: torch.Tensor, x: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor,
                   y: torch.Tensor, ids: np.ndarray, attack: AttackConfig) -> None:  # fmt: skip
    """A minimal attack's stored norm is a distance only if the input there really is misclassified.

    The attack returns the input itself where it found nothing; a perturbed input the model still
    classifies correctly would be a distance nobody can verify (the model is re-run on the stored point,
    in the cell's mode, by the engine), so the cell fails with the reason rather than store it.
    """
    moved = (x_adv.detach() != x.detach()).flatten(1).any(1)
    unverified = moved & (adv_pred == y) & (clean_pred == y)
    if bool(unverified.any()):
        bad = [int(i) for i in np.asarray(ids)[unverified.cpu().numpy()][:5]]
        raise BoundViolation(
            f"{attack.label} returned a perturbed input that the model still classifies correctly for sample(s) "
            f"{', '.join(map(str, bad))}: its distance cannot be verified; the cell is failed and nothing of this batch "
            "was stored"
        )


@dataclass
class CellResult:
    """A finished cell: its id, configuration and per-sample rows."""

    cell_id: str
    config: dict
    frame: pd.DataFrame
    seconds: float
    reused: bool


def check_bn_batches(settings: Settings, n: int) -> None:
    """BN in train mode normalizes by the batch's own statistics: a batch of one sample has none."""
    if settings.bn == "train" and (settings.batch_size == 1 or n % settings.batch_size == 1):
        last = "every batch is" if settings.batch_size == 1 else f"{n} samples in batches of {settings.batch_size} leave"
        raise UserError(
            f"BN in train mode needs at least 2 samples per batch, but {last} a batch of 1; choose another --batch-size or --n"
        )


def reuse_prefix(store: Store, config: dict, cell_id: str, data: ImageSet, settings: Settings) -> int:
    """Fill a new cell's first batches from a done cell of the same configuration on fewer samples.

    Without shuffle, batch b holds the samples at positions b·batch_size … and a batch's rows depend
    only on its samples, the model, the attack, the settings and the seed (attacks are seeded by the
    batch's sample ids; BN in train mode sees the batch alone). So every *full* batch of a run on the
    first 1,000 images is exactly a batch of a later run on the first 10,000: the demo's cells are not
    recomputed. The donor's samples are checked by content hash. Returns the number of rows reused.
    """
    if settings.shuffle or store.done_sample_ids(cell_id):
        return 0

    def key(c: dict) -> str:  # a cell's identity but its samples
        return cell_hash({**c, "data": {}})

    mine = key(config)
    best: tuple[int, str] | None = None
    candidates = store.conn.execute(
        "SELECT cell_id, config, n_samples FROM cells WHERE status = 'done' AND weights_sha256 = ? AND attack = ? "
        "AND abs(eps - ?) < 1e-12 AND n_samples < ?",
        (config["model"]["weights_sha256"], config["attack"]["name"], config["attack"]["eps"], len(data)),
    ).fetchall()
    for cid, text, n in candidates:
        try:
            other = json.loads(text)
        except ValueError:
            continue
        d = other.get("data", {})
        if key(other) != mine or d.get("first_id") != config["data"]["first_id"] or n < settings.batch_size:
            continue
        if best is None or n > best[0]:
            if d.get("fingerprint") == data_fingerprint(data.first(n)):
                best = (n, cid)
    if best is None:
        return 0
    return store.copy_batches(best[1], cell_id, best[0] // settings.batch_size)


def _compute_cell(store, loaded, model, attack, runner, settings, data, force, progress, dist) -> CellResult:
    """One stored cell whose ``settings.grad`` is a single mode or ``none`` (see :func:`run_cell`)."""
    check_bn_batches(settings, len(data))
    config = cell_config(loaded, attack, settings, data)
    cell_id = cell_hash(config)
    if dist.is_main:
        record = store.begin_cell(cell_id, config, len(data), force=force)
    dist.barrier()  # nobody writes rows before rank 0 has created (or reset) the cell
    if not dist.is_main:
        record = store.cell(cell_id)
    if record.status == "done":
        return CellResult(cell_id, config, store.samples([cell_id]), record.seconds, True)
    if dist.is_main:
        reuse_prefix(store, config, cell_id, data, settings)
    dist.barrier()
    done = store.done_sample_ids(cell_id)
    position = {int(sid): i for i, sid in enumerate(data.ids)}
    batches = make_batches(sample_order(data.ids, settings.shuffle, settings.seed), settings.batch_size)
    rank, world = dist.shard
    todo = [(b, ids) for b, ids in enumerate(batches) if b % world == rank]
    pending = []
    for b, ids in todo:
        present = sum(int(i) in done for i in ids)
        if present == len(ids):
            continue
        if present:
            raise UserError(f"store {store.path}: cell {cell_id} holds a partial batch; the file is corrupt")
        pending.append((b, ids))
    device, dtype = torch.device(settings.device), settings.torch_dtype
    bar = tqdm(total=len(todo), initial=len(todo) - len(pending), desc=f"{attack.label} eps={attack.eps:.4g}",
               unit="batch", disable=not progress or not dist.is_main, leave=False)  # fmt: skip
    try:
        for b, ids in pending:
            positions = np.array([position[int(i)] for i in ids])
            x, y = data.tensors(positions)
            x, y = x.to(device=device, dtype=dtype), y.to(device)
            start = time.perf_counter()
            mode = settings.grad if settings.grad in GRAD_MODES else None  # none: no adder layer to set
            with inference_mode(model, settings.bn) as apply, adder_settings(model, grad_mode=mode):
                with torch.no_grad():
                    logits = model(x)
                    clean_pred = predictions(logits, ids, "the clean images")
                warn_if_probabilities(loaded, logits)
                if attack.definition.kind == "white-box":
                    warn_if_gradients_vanish(loaded, model, x, y, attack)
                try:
                    x_adv = runner(model, x, y, ids, settings.seed).detach()
                except ValueError as exc:
                    if "more than 1 value per channel" not in str(exc):
                        raise
                    reason = (
                        f"{attack.label} queries the model on single samples, which BN in train mode cannot "
                        "normalize (no batch statistics of one); use --bn eval for this attack"
                    )
                    store.finish_cell(cell_id, error=reason)
                    raise UserError(reason) from None
                apply()  # library attacks may have switched modes
                try:
                    linf, l2 = verify_batch(x_adv, x, attack)
                except BoundViolation as exc:
                    store.finish_cell(cell_id, error=str(exc))
                    raise
                with torch.no_grad():
                    adv_pred = predictions(model(x_adv), ids, f"{attack.label}'s adversarial images")
                if attack.definition.minimal:
                    try:
                        verify_minimal(x_adv, x, clean_pred, adv_pred, y, ids, attack)
                    except BoundViolation as exc:
                        store.finish_cell(cell_id, error=str(exc))
                        raise
            seconds = time.perf_counter() - start
            clean_pred, adv_pred, labels = clean_pred.cpu().numpy(), adv_pred.cpu().numpy(), y.cpu().numpy()
            rows = [
                (int(ids[i]), int(labels[i]), int(clean_pred[i]), int(adv_pred[i]), int(clean_pred[i] == labels[i]),
                 int(adv_pred[i] == labels[i]), float(linf[i]), float(l2[i]), b, seconds)
                for i in range(len(ids))
            ]  # fmt: skip
            store.add_batch(cell_id, rows, seconds)
            bar.update(1)
    except (Exception, KeyboardInterrupt) as exc:  # the one place a cell is marked failed: nothing leaves it 'running'
        record = store.cell(cell_id)
        if record is not None and record.status == "running":
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, SIGTERM, SIGHUP: the batch under way is abandoned
                what, _status = interruption(exc)
                reason = f"interrupted by {what}; its finished batches are kept, run the command again to resume"
            else:
                reason = str(exc) or type(exc).__name__
            store.finish_cell(cell_id, error=reason)
        raise
    finally:
        bar.close()
    dist.barrier()  # every rank has written its share
    if dist.is_main:
        try:
            store.finish_cell(cell_id)
        except RuntimeError as exc:  # rows went missing under us: another process reset the cell (--force)
            store.finish_cell(cell_id, error=str(exc))
            raise UserError(
                f"cell {cell_id} was reset by another process while this one computed it ({exc}); run the "
                "command again to finish it"
            ) from None
    dist.barrier()
    record = store.cell(cell_id)
    return CellResult(cell_id, config, store.samples([cell_id]), record.seconds if record else 0.0, not pending)


def predictions(logits: torch.Tensor, ids: np.ndarray, what: str) -> torch.Tensor:
    """The predicted classes, or a UserError that fails the cell when an output is NaN or infinite.

    ``argmax`` of a row of NaN is class 0, so a model that overflows (or a checkpoint whose normalization
    divides by zero) would count every label-0 sample as correct: a silent wrong number.
    """
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        where = [int(i) for i in np.asarray(ids)[bad.cpu().numpy()][:5]]
        raise UserError(
            f"the model's output is not finite (NaN or infinite) on {what} of {int(bad.sum())} sample(s) "
            f"(ids {', '.join(map(str, where))}{', ...' if int(bad.sum()) > 5 else ''}); no prediction is counted"
        )
    return logits.argmax(1)


def warn_if_probabilities(loaded: LoadedModel, logits: torch.Tensor) -> None:
    """Say once per model, on stderr, when its outputs are probabilities (rows >= 0 summing to 1), not logits.

    Cross-entropy on a softmax output and AutoAttack's margin losses see compressed, often saturated
    differences: gradient attacks weaken and robust accuracy is overstated (foolbox warns likewise about a
    model left in train mode). The evaluation runs on; the user decides.
    """
    if loaded.meta.get("probability_warned") or logits.dim() != 2 or logits.shape[1] < 2:
        return
    sums = logits.detach().double().sum(1)
    if bool((logits >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)):
        loaded.meta["probability_warned"] = True
        print(
            f"warning: model {loaded.name} outputs probabilities (every row >= 0 and summing to 1), not logits; "
            "attacks whose losses assume logits (cross-entropy, AutoAttack's margins) are weakened and robust accuracy "
            "can be overstated: return the scores before the softmax",
            file=sys.stderr,
        )


#: a white-box attack that sees a zero input gradient on more than this share of a batch is said to be blind
ZERO_GRADIENT_WARN_SHARE = 0.5


def warn_if_gradients_vanish(loaded: LoadedModel, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                             attack: AttackConfig) -> None:  # fmt: skip
    """Say once per model, on stderr, when the input gradient is zero on most samples of a batch.

    Sign- and step-activated networks (binary networks, and models that mask their gradients) give a zero
    input gradient almost everywhere: every white-box gradient attack then leaves the samples where they are,
    and robust accuracy looks high without being evidence of anything. One extra forward and backward pass
    on the first batch a white-box attack computes for the model (no randomness, results unchanged); ``robustadder check`` fails
    its gradient-health check on such a model and runs Square and transfer attacks, which need no gradient.
    """
    if loaded.meta.get("gradients_checked"):  # once per model and process: the first batch says it
        return
    loaded.meta["gradients_checked"] = True
    with torch.enable_grad():
        grad = input_gradient(model, x, y)
    share = float((grad.flatten(1).abs().amax(1) == 0).float().mean())
    if share > ZERO_GRADIENT_WARN_SHARE:
        print(
            f"warning: the input gradient of model {loaded.name} is zero on {100 * share:.0f} % of a batch's samples: "
            f"{attack.label} and every other gradient attack cannot move them, so its robust accuracy is no evidence of "
            "robustness (a sign-activated or gradient-masking model); run 'robustadder check' (Square and transfer "
            "attacks need no gradient)",
            file=sys.stderr,
        )


def run_cell(
    store: Store,
    loaded: LoadedModel,
    model: torch.nn.Module,
    attack: AttackConfig,
    runner: Runner,
    settings: Settings,
    data: ImageSet,
    *,
    force: bool = False,
    progress: bool = True,
    dist: DistContext | None = None,
) -> CellResult:
    """Run (or resume, or reuse) one cell and return its rows.

    Under torchrun (``dist``, default: the current context) each rank computes only the batches with
    ``index % world_size == rank``; batches are fixed by the configuration, so the ranks together write
    exactly the rows of a single process. Rank 0 creates/resets the cell first and marks it done last.

    ``grad='both'`` is resolved here, the one entry point, so no caller can run a cell recorded as
    ``both`` through a single gradient: the AdderNet-adaptive white box. Neither adder input gradient is
    the stronger one everywhere (on the third-party ANN-20, FGSM at 1/255 fooled more samples through the
    exact gradient, at 8/255 through the surrogate), so an evaluation that follows one of them can
    overstate robustness. With ``both`` a gradient attack on a model with adder layers runs once per mode
    (each a cell of its own, reusable and reportable) and the result is a third cell whose row per sample
    is the worst case: the component that fooled the sample (the surrogate's when both did), with that
    component's prediction and perturbation norms. Its config names the two component cells. Anything
    else runs as one cell with the grad that can matter.
    """
    dist = dist or context()
    components = component_settings(loaded, attack, settings)
    if len(components) == 1:
        return _compute_cell(store, loaded, model, attack, runner, components[0], data, force, progress, dist)
    parts = {
        one.grad: _compute_cell(store, loaded, model, attack, runner, one, data, force, progress, dist) for one in components
    }
    config = cell_config(loaded, attack, settings, data)
    cell_id = cell_hash(config)
    config["components"] = {mode: part.cell_id for mode, part in parts.items()}
    reused = all(part.reused for part in parts.values())  # no attack ran (combining stored rows is free)
    if dist.is_main:
        record = store.cell(cell_id)
        stale = record is not None and (record.config or {}).get("components") != config["components"]
        if force or record is None or record.status != "done" or stale:
            store.begin_cell(cell_id, config, len(data), force=True)
            minimal = attack.norm if attack.definition.minimal else None
            for rows, seconds in worst_case_rows(parts["surrogate"].frame, parts["exact"].frame, minimal=minimal):
                store.add_batch(cell_id, rows, seconds)
            store.finish_cell(cell_id)
    dist.barrier()
    record = store.cell(cell_id)
    return CellResult(cell_id, config, store.samples([cell_id]), record.seconds if record else 0.0, reused)


def worst_case_rows(first: pd.DataFrame, second: pd.DataFrame, *, minimal: str | None = None):
    """Per batch of ``first``: the per-sample worst case of two cells on the same samples (see above).

    Yields (rows, seconds) with rows in the store's column order; a batch's seconds are the sum of
    both components' (the cost of the adaptive evaluation). For a minimal attack (``minimal``: its norm)
    the worst case of a sample both fooled is the closer adversarial: the smaller distance.
    """
    column = {"Linf": "linf", "L2": "l2"}.get(minimal or "")
    b = second.set_index("sample_id")
    if set(b.index) != set(first["sample_id"]):
        raise RuntimeError("worst case of two cells over different samples")
    for batch, rows_a in first.groupby("batch", sort=True):
        rows_b = b.loc[rows_a["sample_id"].to_numpy()]
        seconds = float(rows_a["batch_seconds"].iloc[0]) + float(rows_b["batch_seconds"].sum() / max(len(rows_b), 1))
        out = []
        for ra, (sid, rb) in zip(rows_a.itertuples(index=False), rows_b.iterrows(), strict=True):
            pick_b = bool(ra.adv_correct) and not bool(rb["adv_correct"])
            if column and not ra.adv_correct and not rb["adv_correct"] and ra.clean_correct:
                pick_b = float(rb[column]) < float(getattr(ra, column))
            src = rb if pick_b else ra._asdict()
            out.append((int(sid), int(ra.label), int(ra.clean_pred), int(src["adv_pred"]), int(ra.clean_correct),
                        int(src["adv_correct"]), float(src["linf"]), float(src["l2"]), int(batch), seconds))  # fmt: skip
        yield out, seconds


# -- transfer sources ---------------------------------------------------------------------------------------
def pin_transfer_source(attack: AttackConfig) -> AttackConfig:
    """A transfer attack's cell is defined by the source's weights, not its name: record their sha256."""
    if attack.name != "transfer":
        return attack
    source = resolve_model(attack.params["source"])
    return replace(attack, params={**attack.params, "source_sha256": source.weights_sha256})


def transfer_source_loader(settings: Settings, target: LoadedModel):
    """Loader for transfer sources: same settings as the target, same input shape and classes required."""
    cache: dict[str, tuple] = {}

    def load(name: str):
        if name not in cache:
            source = resolve_model(name)
            if source.model.input_shape != target.model.input_shape:
                raise UserError(
                    f"transfer source {name} takes inputs of shape {source.model.input_shape}, the target "
                    f"{target.name} takes {target.model.input_shape}; choose a source for the same data"
                )
            if source.arch.num_classes != target.arch.num_classes:
                raise UserError(
                    f"transfer source {name} has {source.arch.num_classes} classes, the target {target.arch.num_classes}"
                )
            cache[name] = (prepare(source, settings), {"name": source.name, "weights_sha256": source.weights_sha256})
        return cache[name]

    return load
