"""Attack registry: one table maps a name to its factory, parameters with defaults, and norms.

Adding an attack means adding one :class:`AttackDef` to ``ATTACKS`` — nothing else. Every attack is
run the same way by the engine: ``runner(model, x, y, sample_ids, seed) -> x_adv`` on one batch of
[0, 1] images, with the model already in the cell's mode (BN eval/train, adder gradient mode).

===============  =============================================================  ==========  =======
name             what                                                           source      norms
===============  =============================================================  ==========  =======
none             clean accuracy (x_adv = x)                                     —           Linf
fgsm             FGSM, Goodfellow et al. 2015                                   torchattacks Linf
pgd              PGD with random start and restarts, Madry et al. 2018          own loop    Linf L2
bim              BIM / I-FGSM, Kurakin et al. 2017                              torchattacks Linf
mim              MI-FGSM, Dong et al. 2018                                      torchattacks Linf
rfgsm            R-FGSM (torchattacks' variant), Tramèr et al. 2018             own loop    Linf
apgd-ce          APGD, cross-entropy loss (Croce & Hein 2020)                   reference   Linf L2
apgd-dlr         APGD, DLR loss                                                 reference   Linf L2
square           Square Attack, score-based black box (Andriushchenko 2020)     reference   Linf L2
autoattack       AutoAttack standard/plus/rand — labelled "AutoAttack"          reference   Linf L2
ta-autoattack    torchattacks' AutoAttack (10-step APGD etc.; NOT the reference) torchattacks Linf L2
noise            random noise of the same norm (uniform / Gaussian)             own         Linf L2
transfer         PGD crafted on a source model, evaluated on the target         own loop    Linf L2
fmn              Fast Minimum-Norm, Pintor et al. 2021: per sample the smallest  foolbox     Linf L2
                 perturbation that fools the model (a minimal attack)
===============  =============================================================  ==========  =======

A **minimal** attack (``AttackDef.minimal``) has no budget: its cell is recorded at the largest meaningful
eps (the whole image box) and stores per sample the distance of the closest adversarial it found, so one
cell gives the robust accuracy at every eps (:func:`robustadder.summary.minimal_distances`).

Own loops exist only where the libraries' design conflicts with per-sample determinism (see
:mod:`robustadder.attacks.gradient`). Epsilon defaults: 8/255 (L∞), 0.5 (L2). Iterative attacks' steps
scale with the budget (:data:`STEP_RULES`): eps/4 (L∞; 2/255 at 8/255) or 2.5·eps/steps (L2); an
explicit ``alpha`` wins and is recorded as ``step_rule = "given"``. PGD has random start on.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from . import gradient, reference

NORMS = ("Linf", "L2")
DEFAULT_EPS = {"Linf": 8 / 255, "L2": 0.5}
IMAGE_DIM = 3 * 32 * 32
MAX_EPS = {"Linf": 1.0, "L2": math.sqrt(IMAGE_DIM)}  # beyond these the ball covers the whole image box
#: how far a stored perturbation may exceed its budget (float rounding of the projection), checked per batch
BOUND_TOLERANCE = 1e-6

Runner = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray, int], torch.Tensor]


# -- parameters -------------------------------------------------------------------------------------------
def parse_number(value: Any, what: str) -> float:
    """A float from 8/255-style fractions, decimals or numbers; NaN and infinities are refused."""
    try:
        if isinstance(value, str):
            text = value.strip()
            if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                number = float(text)
            elif "/" in text:  # 8/255, and 0.5/255 (Fraction alone refuses a decimal numerator)
                num, _, den = text.partition("/")
                number = float(Fraction(num.strip()) / Fraction(den.strip()))
            else:
                number = float(Fraction(text))
        else:
            number = float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise UserError(f"{what} must be a number like 8/255 or 0.031, not '{value}'") from None
    except OverflowError:  # float(Fraction("1e400"))
        raise UserError(f"{what} must be finite, not {value}") from None
    if not math.isfinite(number):
        raise UserError(f"{what} must be finite, not {value}")
    return number


def format_eps(eps: float, norm: str = "Linf", zero: str = "–") -> str:
    """An eps as people read it: L∞ in units of 1/255 (``8/255``, ``0.5/255``), L2 as a number.

    ``zero`` marks no perturbation (the clean row). The one formatter of tables, reports and the CLI.
    """
    if eps == 0:
        return zero
    if norm != "Linf":
        return f"{eps:g} ({norm})"
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{k:.3g}/255"


def parse_eps(value: Any, norm: str) -> float:
    """Validate an epsilon for a norm: 0 ≤ eps ≤ the largest meaningful value."""
    eps = parse_number(value, "eps")
    if eps < 0:
        raise UserError(f"eps must not be negative (got {value})")
    if eps > MAX_EPS[norm]:
        raise UserError(
            f"eps {value} is absurd for {norm} on [0, 1] images (at most {MAX_EPS[norm]:.4g})"
            + (f"; did you mean {value}/255?" if "/" not in str(value) and eps / 255 <= MAX_EPS[norm] else "")
        )
    return eps


@dataclass(frozen=True)
class Param:
    """One attack parameter: default, type and the range a user may set."""

    default: Any
    kind: type
    minimum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def coerce(self, name: str, attack: str, value: Any) -> Any:
        what = f"{attack} parameter {name}"
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise UserError(f"{what} must be true or false, not '{value}'")
        if self.kind is str:
            text = str(value)
            if self.choices and text not in self.choices:
                raise UserError(f"{what} must be one of {', '.join(self.choices)}, not '{value}'")
            return text
        number = parse_number(value, what)
        if self.kind is int:
            if number != int(number):
                raise UserError(f"{what} must be an integer, not '{value}'")
            number = int(number)
        if self.minimum is not None and (number <= self.minimum if self.exclusive else number < self.minimum):
            bound = f"> {self.minimum:g}" if self.exclusive else f">= {self.minimum:g}"
            raise UserError(f"{what} must be {bound}, not {value}")
        return number


def _steps(default: int) -> Param:
    return Param(default, int, 1, help="iterations")


ALPHA = Param(None, float, 0.0, exclusive=True, help="step size (default eps/4; L2: 2.5*eps/steps)")
#: how the default step follows the budget (recorded in every cell's parameters as ``step_rule``)
STEP_RULES = {
    # Linf: a quarter of the budget, the step of the paper's table (2/255 at 8/255, 7 steps) and of
    # Madry et al.'s CIFAR-10 PGD (2/255 at 8/255); a fixed 2/255 would be twice the budget at 1/255
    "Linf": "eps/4",
    # L2: Madry et al.'s 2.5 * eps / steps (the iterates can cross the ball 2.5 times)
    "L2": "2.5*eps/steps",
}


def default_step(norm: str, eps: float, steps: int) -> tuple[float, str]:
    """The default step size of an iterative attack for a budget, and the name of its rule."""
    if norm == "Linf":
        return eps / 4, STEP_RULES["Linf"]
    return 2.5 * eps / steps, STEP_RULES["L2"]


RESTARTS = Param(1, int, 1, help="random restarts (worst case kept)")
#: FMN's default iterations, chosen by the convergence check in README (minimal perturbations): from 200 to 300 steps
#: the medians of ANN-20 and CNN-20 moved by 0.5 % and 0.2 % and the 1/255 point by at most one of 200 samples (from
#: 100 to 300 CNN-20's fell 2 points); 200 keeps FMN at under a fifth of the AutoAttack cell it replaces (bench minimal)
FMN_STEPS = 200


# -- registry ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackConfig:
    """A fully resolved attack: what goes into a cell's configuration and hash."""

    name: str
    norm: str
    eps: float
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def definition(self) -> AttackDef:
        return ATTACKS[self.name]

    @property
    def label(self) -> str:
        """How reports name it, e.g. ``PGD-7`` or ``AutoAttack``."""
        return self.definition.label(self)

    @property
    def step_exceeds_eps(self) -> bool:
        """A user-given step larger than the budget (allowed, flagged: one step can cross the ball)."""
        alpha = self.params.get("alpha")
        return alpha is not None and self.eps > 0 and alpha > self.eps + 1e-12

    @property
    def step_note(self) -> str | None:
        """What ``eval`` and ``sweep`` say of a step that does not fit the budget; None where it fits.

        A step larger than the budget can jump across the whole ball and the projection undoes most of it: the
        attack moves like iterated FGSM. Steps that together fall short of the budget (BIM-3 at the default eps/4,
        an attack without a random start) cannot reach its boundary: the attack works inside a smaller ball. Either
        way it is weaker than the budget allows, and a robust accuracy it leaves looks higher.
        """
        alpha, steps = self.params.get("alpha"), self.params.get("steps")
        fmt = format_eps if self.norm == "Linf" else (lambda v: f"{v:g}")
        if self.step_exceeds_eps:
            return (f"note: {self.label} at {fmt(self.eps)}: its step {fmt(alpha)} exceeds the budget (a step can cross "
                    "the whole ball, and the attack can be weaker than with the default step)")  # fmt: skip
        starts_inside = self.name in ("bim", "mim") or (self.name == "pgd" and not self.params.get("random_start"))
        if starts_inside and alpha and steps and steps * alpha < self.eps - 1e-12:
            return (f"note: {self.label} at {fmt(self.eps)}: {steps} steps of {fmt(alpha)} reach at most "
                    f"{fmt(steps * alpha)} from the clean image, short of the budget (give at least "
                    f"{math.ceil(self.eps / alpha - 1e-9)} steps or a larger step)")  # fmt: skip
        return None

    @property
    def randomized(self) -> bool:
        """Whether the attack draws random numbers, i.e. whether its result can depend on the seed."""
        r = self.definition.randomized
        return bool(r(self.params) if callable(r) else r)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the store (sorted, JSON-safe)."""
        return {
            "name": self.name,
            "label": self.label,
            "norm": self.norm,
            "eps": self.eps,
            "params": dict(sorted(self.params.items())),
        }


@dataclass(frozen=True)
class AttackDef:
    """Registry entry: factory, parameters and norms of one attack."""

    name: str
    description: str
    norms: tuple[str, ...]
    params: Mapping[str, Param]
    build: Callable[[AttackConfig, BuildContext], Runner]
    label: Callable[[AttackConfig], str]
    kind: str = "white-box"  # white-box | black-box | baseline | clean
    #: whether the attack draws random numbers (so the cell's seed can change its result); a callable
    #: decides from the parameters (PGD without random start is deterministic)
    randomized: bool | Callable[[Mapping[str, Any]], bool] = False
    #: (forward passes, forward+backward passes) per sample for the attack itself — an upper bound for
    #: attacks that stop early (AutoAttack only attacks samples that are still robust)
    passes: Callable[[AttackConfig], tuple[float, float]] = lambda c: (0.0, 0.0)
    #: the same when every sample is fooled by the attack's first stage (an adaptive attack's least work);
    #: None: the attack does the same work whatever happens
    least_passes: Callable[[AttackConfig], tuple[float, float]] | None = None
    #: a minimal-perturbation attack: no budget (eps is the whole box), the stored norm of each perturbation is
    #: the smallest distance at which the attack fooled the sample (docs/design.md §5)
    minimal: bool = False


@dataclass
class BuildContext:
    """What a factory may need beyond its config: a loader for other models (transfer sources)."""

    load_model: Callable[[str], tuple[torch.nn.Module, dict[str, Any]]] | None = None
    num_classes: int = 10


def batch_seed(seed: int, ids: np.ndarray) -> int:
    """Seed for library attacks that draw from the global RNG: fixed by the cell seed and the batch."""
    h = hashlib.sha256(f"{seed}|".encode() + np.asarray(ids, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(h[:4], "little")


@contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run library code that reseeds or draws from the global RNG without disturbing the caller's."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _with_global_rng(fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Runner:
    def run(model, x, y, ids, seed):
        s = batch_seed(seed, ids)
        with isolated_rng(s, x.device):
            return fn(model, x, y, s)

    return run


def _alpha(cfg: AttackConfig) -> float:
    return cfg.params["alpha"]


def _build_none(cfg, ctx) -> Runner:
    return lambda model, x, y, ids, seed: x.clone()


def _build_fgsm(cfg, ctx) -> Runner:
    import torchattacks

    return lambda model, x, y, ids, seed: gradient.torchattacks_run(torchattacks.FGSM(model, eps=cfg.eps), x, y)


def _build_bim(cfg, ctx) -> Runner:
    import torchattacks

    p = cfg.params
    return lambda model, x, y, ids, seed: gradient.torchattacks_run(
        torchattacks.BIM(model, eps=cfg.eps, alpha=p["alpha"], steps=p["steps"]), x, y
    )


def _build_mim(cfg, ctx) -> Runner:
    import torchattacks

    p = cfg.params
    return lambda model, x, y, ids, seed: gradient.torchattacks_run(
        torchattacks.MIFGSM(model, eps=cfg.eps, alpha=p["alpha"], steps=p["steps"], decay=p["decay"]), x, y
    )


def _build_pgd(cfg, ctx) -> Runner:
    p = cfg.params
    return lambda model, x, y, ids, seed: gradient.pgd(
        model, x, y, eps=cfg.eps, alpha=p["alpha"], steps=p["steps"], norm=cfg.norm,
        random_start_=p["random_start"], restarts=p["restarts"], ids=ids, seed=seed,
    )  # fmt: skip


def _build_rfgsm(cfg, ctx) -> Runner:
    p = cfg.params
    return lambda model, x, y, ids, seed: gradient.rfgsm(
        model, x, y, eps=cfg.eps, alpha=p["alpha"], steps=p["steps"], ids=ids, seed=seed
    )


def _build_apgd(loss: str):
    def build(cfg, ctx) -> Runner:
        p = cfg.params
        return _with_global_rng(
            lambda model, x, y, s: reference.apgd(model, x, y, eps=cfg.eps, norm=cfg.norm, loss=loss, steps=p["steps"],
                                                  restarts=p["restarts"], rho=p["rho"], seed=s)  # fmt: skip
        )

    return build


def _build_square(cfg, ctx) -> Runner:
    p = cfg.params
    return _with_global_rng(
        lambda model, x, y, s: reference.square(model, x, y, eps=cfg.eps, norm=cfg.norm, queries=p["queries"],
                                                p_init=p["p_init"], restarts=p["restarts"], seed=s)  # fmt: skip
    )


def _build_autoattack(cfg, ctx) -> Runner:
    return _with_global_rng(
        lambda model, x, y, s: reference.autoattack(
            model, x, y, eps=cfg.eps, norm=cfg.norm, version=cfg.params["version"], seed=s
        )
    )


def _build_ta_autoattack(cfg, ctx) -> Runner:
    import torchattacks

    def run(model, x, y, s):
        attack = torchattacks.AutoAttack(
            model, norm=cfg.norm, eps=cfg.eps, version=cfg.params["version"], n_classes=ctx.num_classes, seed=s
        )
        # its sub-attacks are called through __call__, which switches the model to eval unless told to
        # keep the mode the engine set (BN train); the engine re-applies its mode after every call anyway
        attack.set_model_training_mode(model_training=model.training, batchnorm_training=model.training)
        return gradient.torchattacks_run(attack, x, y)

    return _with_global_rng(run)


def _build_noise(cfg, ctx) -> Runner:
    dist = cfg.params["distribution"]

    def run(model, x, y, ids, seed):
        if cfg.norm == "Linf":
            if dist == "uniform":
                delta = cfg.eps * gradient.per_sample_noise(x, ids, seed, "noise", "uniform")
            else:  # Gaussian with sigma = eps/2, clipped to the ball
                delta = (0.5 * cfg.eps * gradient.per_sample_noise(x, ids, seed, "noise", "normal")).clamp(-cfg.eps, cfg.eps)
            return (x + delta).clamp(0.0, 1.0)
        # L2: a random direction at the full radius (uniform: on the sphere; gaussian: same direction law)
        direction = gradient.per_sample_noise(x, ids, seed, "noise", "normal" if dist == "gaussian" else "uniform")
        return gradient.project(x + cfg.eps * direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1), x, cfg.eps, "L2")

    return run


def _build_transfer(cfg, ctx) -> Runner:
    if ctx.load_model is None:
        raise UserError("transfer needs a source model (source=NAME_OR_PATH)")
    source, _ = ctx.load_model(cfg.params["source"])
    p = cfg.params

    def run(model, x, y, ids, seed):
        return gradient.pgd(
            source, x, y, eps=cfg.eps, alpha=p["alpha"], steps=p["steps"], norm=cfg.norm, random_start_=True,
            restarts=1, ids=ids, seed=seed,
        )  # fmt: skip

    return run


def _build_fmn(cfg, ctx) -> Runner:
    p = cfg.params
    return lambda model, x, y, ids, seed: gradient.fmn(
        model, x, y, norm=cfg.norm, steps=p["steps"], max_stepsize=p["max_stepsize"], gamma=p["gamma"]
    )


def _autoattack_label(cfg: AttackConfig) -> str:
    version = cfg.params["version"]
    return "AutoAttack" + ("" if version == "standard" else f" ({version})")


def _steps_label(base: str):
    return lambda cfg: (
        f"{base}-{cfg.params['steps']}"
        + (f"x{cfg.params['restarts']}" if cfg.params.get("restarts", 1) > 1 else "")
        + ("" if cfg.norm == "Linf" else f" ({cfg.norm})")
    )


def _iterations(c: AttackConfig) -> tuple[float, float]:
    """(forward, forward+backward) passes per sample of a plain iterative attack."""
    restarts = c.params.get("restarts", 1)
    return (restarts if restarts > 1 else 0, c.params["steps"] * restarts)


# AutoAttack upper bounds: APGD-CE 100 + APGD-T 9 x 100 + FAB-T 9 x 100 (about two backward passes per
# step) + Square 5000 queries; it only attacks samples that are still robust, so real runs cost less.
_AA_PASSES = {"standard": (5000, 100 + 900 + 1800), "plus": (5000, 500 + 500 + 1000 + 900 + 1800), "rand": (0, 4000)}
#: AutoAttack's first stage (APGD-CE: 100 steps, 5 restarts in "plus", 20 EOT samples in "rand") runs on every
#: clean-correct sample; every later one only on the samples still robust
_AA_FIRST_STAGE = {"standard": (0, 100), "plus": (0, 500), "rand": (0, 2000)}

ATTACKS: dict[str, AttackDef] = {
    d.name: d
    for d in [
        AttackDef("none", "clean accuracy (no attack)", ("Linf", "L2"), {}, _build_none, lambda c: "Clean", "clean"),
        AttackDef("fgsm", "FGSM (torchattacks)", ("Linf",), {}, _build_fgsm, lambda c: "FGSM", passes=lambda c: (0, 1)),
        AttackDef(
            "pgd", "PGD, random start, restarts (own loop, per-sample RNG)", NORMS,
            {"steps": _steps(10), "alpha": ALPHA, "random_start": Param(True, bool), "restarts": RESTARTS},
            _build_pgd, _steps_label("PGD"), randomized=lambda p: bool(p["random_start"]), passes=_iterations,
        ),
        AttackDef(
            "bim", "BIM / I-FGSM (torchattacks)", ("Linf",), {"steps": _steps(10), "alpha": ALPHA},
            _build_bim, _steps_label("BIM"), passes=_iterations,
        ),
        AttackDef(
            "mim", "MI-FGSM (torchattacks)", ("Linf",),
            {"steps": _steps(10), "alpha": ALPHA, "decay": Param(1.0, float, 0.0)}, _build_mim, _steps_label("MIM"),
            passes=_iterations,
        ),
        AttackDef(
            "rfgsm", "R-FGSM, torchattacks' variant (own loop, per-sample RNG)", ("Linf",),
            {"steps": _steps(10), "alpha": ALPHA}, _build_rfgsm, _steps_label("R-FGSM"), randomized=True,
            passes=_iterations,
        ),
        AttackDef(
            "apgd-ce", "APGD-CE (reference AutoAttack package)", NORMS,
            {"steps": _steps(100), "restarts": RESTARTS, "rho": Param(0.75, float, 0.0, exclusive=True)},
            _build_apgd("ce"), lambda c: "APGD-CE", randomized=True, passes=_iterations,
        ),
        AttackDef(
            "apgd-dlr", "APGD-DLR (reference AutoAttack package)", NORMS,
            {"steps": _steps(100), "restarts": RESTARTS, "rho": Param(0.75, float, 0.0, exclusive=True)},
            _build_apgd("dlr"), lambda c: "APGD-DLR", randomized=True, passes=_iterations,
        ),
        AttackDef(
            "square", "Square Attack, score-based black box (reference AutoAttack package)", NORMS,
            {"queries": Param(5000, int, 1), "p_init": Param(0.8, float, 0.0, exclusive=True), "restarts": RESTARTS},
            _build_square, lambda c: f"Square-{c.params['queries']}", "black-box", randomized=True,
            passes=lambda c: (c.params["queries"] * c.params["restarts"], 0), least_passes=lambda c: (1, 0),
        ),
        AttackDef(
            "autoattack", "AutoAttack, the reference implementation", NORMS,
            {"version": Param("standard", str, choices=("standard", "plus", "rand"))},
            _build_autoattack, _autoattack_label, randomized=True, passes=lambda c: _AA_PASSES[c.params["version"]],
            least_passes=lambda c: _AA_FIRST_STAGE[c.params["version"]],
        ),
        AttackDef(
            "ta-autoattack", "torchattacks' AutoAttack (10-step APGD; not the reference)", NORMS,
            {"version": Param("standard", str, choices=("standard", "plus", "rand"))},
            _build_ta_autoattack, lambda c: "torchattacks-AutoAttack (not reference)", randomized=True,
            passes=lambda c: (5000, 10 + 90 + 180), least_passes=lambda c: (0, 10),
        ),
        AttackDef(
            "noise", "random noise of the same norm (baseline)", NORMS,
            {"distribution": Param("uniform", str, choices=("uniform", "gaussian"))},
            _build_noise, lambda c: f"Noise ({c.params['distribution']})", "baseline", randomized=True,
        ),
        AttackDef(
            "fmn", "Fast Minimum-Norm, the smallest perturbation that fools each sample (foolbox)", NORMS,
            {"steps": _steps(FMN_STEPS), "max_stepsize": Param(1.0, float, 0.0, exclusive=True),
             "gamma": Param(0.05, float, 0.0, exclusive=True)},
            _build_fmn, lambda c: f"FMN-{c.params['steps']}" + ("" if c.norm == "Linf" else f" ({c.norm})"),
            passes=lambda c: (1, c.params["steps"]), minimal=True,
        ),
        AttackDef(
            "transfer", "PGD crafted on a source model, evaluated on the target (black box)", NORMS,
            {"source": Param(None, str), "steps": _steps(10), "alpha": ALPHA},
            _build_transfer, lambda c: f"Transfer-PGD-{c.params['steps']} from {c.params['source']}", "black-box",
            randomized=True, passes=lambda c: (0, c.params["steps"]),
        ),
    ]
}  # fmt: skip


def attack_names() -> tuple[str, ...]:
    """Names accepted by ``--attack``."""
    return tuple(ATTACKS)


def parse_attack_option(text: str) -> tuple[str, dict[str, str]]:
    """``pgd`` or ``pgd:steps=7,alpha=2/255`` → (name, raw params)."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"attack option '{item}' in '{text}' must look like key=value")
        params[key.strip().replace("-", "_")] = value.strip()
    return name.strip(), params


def make_config(name: str, *, eps: Any = None, norm: str | None = None, params: Mapping[str, Any] | None = None) -> AttackConfig:
    """Validate a user's attack choice and fill in every default: the config a cell is keyed on."""
    if name not in ATTACKS:
        raise UserError(f"unknown attack '{name}': choose one of {', '.join(ATTACKS)}")
    definition = ATTACKS[name]
    norm = norm or definition.norms[0]
    if norm not in definition.norms:
        raise UserError(f"{name} supports norm {' or '.join(definition.norms)}, not {norm}")
    eps_value = parse_eps(DEFAULT_EPS[norm] if eps is None else eps, norm)
    if name == "none":
        eps_value = 0.0  # no perturbation: the budget is 0 whatever was asked for the other attacks
    if definition.minimal:
        eps_value = MAX_EPS[norm]  # no budget: one cell gives the distances, hence the robust accuracy at every eps
    given = dict(params or {})
    unknown = sorted(set(given) - set(definition.params))
    if unknown:
        known = ", ".join(definition.params) or "none"
        raise UserError(f"unknown option '{unknown[0]}' for attack {name} (its options: {known})")
    resolved = {}
    for key, spec in definition.params.items():
        value = spec.coerce(key, name, given[key]) if key in given else spec.default
        resolved[key] = value
    if "alpha" in resolved:
        if resolved["alpha"] is None:
            resolved["alpha"], resolved["step_rule"] = default_step(norm, eps_value, resolved["steps"])
        else:
            resolved["step_rule"] = "given"
    if name == "transfer" and not resolved.get("source"):
        raise UserError("attack transfer needs source=NAME_OR_PATH (the model the examples are crafted on)")
    return AttackConfig(name, norm, eps_value, resolved)


def build_runner(config: AttackConfig, context: BuildContext | None = None) -> Runner:
    """The callable that attacks one batch."""
    return config.definition.build(config, context or BuildContext())


__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "MAX_EPS",
    "STEP_RULES",
    "NORMS",
    "AttackConfig",
    "AttackDef",
    "BuildContext",
    "attack_names",
    "batch_seed",
    "build_runner",
    "default_step",
    "isolated_rng",
    "make_config",
    "parse_attack_option",
    "parse_eps",
    "parse_number",
]
