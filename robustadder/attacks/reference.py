"""The reference AutoAttack (Croce & Hein 2020) and its components, from either distribution.

Two packages carry it: ``pyautoattack`` on PyPI (keyword-only API, ``attacks=``, ``batch_size=``,
logging) and the upstream git package ``autoattack`` (``attacks_to_run=``, ``bs=``, prints when
verbose, ``device='cuda'`` by default). :func:`reference_module` finds whichever is installed and the
adapters below speak both. The traps of docs/design.md §5 are handled here:

* it never calls ``model.eval()`` — the engine sets the model's mode (BN eval/train) around every call;
* it defaults to ``device='cuda'`` (upstream) — the device is always passed explicitly;
* it reseeds the global torch RNG on every ``perturb`` — every call runs inside ``torch.random.fork_rng``
  (see ``robustadder.attacks.isolated_rng``) so the caller's RNG stream is untouched, with a seed
  derived from the cell seed and the batch's sample ids;
* upstream prints to stdout when verbose, which would corrupt ``--json`` — verbosity is always off.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import torch


def reference_module() -> tuple[ModuleType, str]:
    """The installed reference AutoAttack package and its import name."""
    for name in ("pyautoattack", "autoattack"):
        try:
            return importlib.import_module(name), name
        except ImportError:
            continue
    raise ImportError("the reference AutoAttack is not installed (pip install pyautoattack)")


def _submodule(name: str) -> ModuleType:
    _, pkg = reference_module()
    return importlib.import_module(f"{pkg}.{name}")


def autoattack(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, version: str, seed: int
) -> torch.Tensor:
    """Reference AutoAttack on one batch; returns the adversarial batch."""
    module, _ = reference_module()
    params = inspect.signature(module.AutoAttack).parameters
    kwargs = {"norm": norm, "eps": eps, "version": version, "seed": seed, "device": x.device}
    if "verbose" in params:
        kwargs["verbose"] = False
    attack = module.AutoAttack(model, **kwargs)
    attack.verbose = False
    run = attack.run_standard_evaluation
    size = "batch_size" if "batch_size" in inspect.signature(run).parameters else "bs"
    result = run(x, y, **{size: len(x)})
    return result[0] if isinstance(result, tuple) else result  # pyautoattack returns (x_adv, y_adv)


def apgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str,
    loss: str,
    steps: int,
    restarts: int,
    rho: float,
    seed: int,
) -> torch.Tensor:
    """Reference APGD with the cross-entropy or DLR loss (untargeted)."""
    cls = _submodule("autopgd_base").APGDAttack
    attack = cls(
        model, n_iter=steps, norm=norm, n_restarts=restarts, eps=eps, seed=seed, loss=loss, rho=rho,
        verbose=False, device=x.device,
    )  # fmt: skip
    return attack.perturb(x, y)


def square(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str,
    queries: int,
    p_init: float,
    restarts: int,
    seed: int,
) -> torch.Tensor:
    """Reference Square Attack (score-based, gradient-free), with AutoAttack's fixed schedule."""
    cls = _submodule("square").SquareAttack
    attack = cls(
        model, norm=norm, n_queries=queries, eps=eps, p_init=p_init, n_restarts=restarts, seed=seed,
        verbose=False, device=x.device, resc_schedule=False,
    )  # fmt: skip
    with torch.no_grad():
        return attack.perturb(x, y)
