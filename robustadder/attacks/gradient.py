"""White-box gradient attacks: torchattacks where it fits, our own loop where determinism needs it.

FGSM, BIM and MI-FGSM have no randomness and come from torchattacks 3.5.1, called through
``Attack.forward`` so that the library never touches the model's mode or device (its ``__call__``
switches the model to eval and, with training mode requested, leaves it in train mode afterwards).

PGD (L∞ and L2, random start, restarts) and R-FGSM are random. torchattacks draws their noise from the
global RNG for the whole batch at once, which makes a sample's result depend on which samples share its
batch. Here every sample's noise comes from its own generator, seeded from (cell seed, sample id,
restart): a sample's adversarial example is the same whatever the batch size, order or shard — what lets
``--shuffle`` and batch size be studied as inference settings (BN in train mode) rather than as RNG
artefacts, and lets sharded runs reproduce single-process rows. The update rule is exactly torchattacks'
(tests compare the two on a shared start point).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def sample_seed(seed: int, sample_id: int, salt: str) -> int:
    """Stable 63-bit seed for one sample's noise (independent of batch composition)."""
    digest = hashlib.sha256(f"{seed}|{sample_id}|{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def per_sample_noise(like: torch.Tensor, ids: Sequence[int] | np.ndarray, seed: int, salt: str, kind: str) -> torch.Tensor:
    """Noise shaped like ``like``, row i drawn from sample ids[i]'s own generator (CPU, then moved).

    ``kind``: ``uniform`` in [-1, 1], ``normal`` N(0, 1), ``sign`` ±1, or ``unit`` uniform in [0, 1).
    """
    rows = []
    for sid in ids:
        gen = torch.Generator().manual_seed(sample_seed(seed, int(sid), salt))
        shape = like.shape[1:]
        if kind == "uniform":
            rows.append(torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1)
        elif kind == "normal":
            rows.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        elif kind == "sign":
            rows.append(torch.randn(shape, generator=gen, dtype=torch.float64).sign())
        elif kind == "unit":
            rows.append(torch.rand(shape, generator=gen, dtype=torch.float64))
        else:
            raise ValueError(kind)
    return torch.stack(rows).to(device=like.device, dtype=like.dtype)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project into the eps-ball around x and into the image box [0, 1]."""
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        factor = (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * factor
    return (x + delta).clamp(0.0, 1.0)


def input_gradient(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the mean cross-entropy (torchattacks' loss) at x_adv."""
    x_adv = x_adv.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    return torch.autograd.grad(loss, x_adv)[0]


def _step(x_adv: torch.Tensor, grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    if norm == "Linf":
        return x_adv.detach() + alpha * grad.sign()
    return x_adv.detach() + alpha * grad / _flat_norm(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, eps: float, norm: str, ids, seed: int, salt: str) -> torch.Tensor:
    """Uniform point of the L∞ ball, or a uniformly random direction and radius in the L2 ball."""
    if norm == "Linf":
        return (x + eps * per_sample_noise(x, ids, seed, salt, "uniform")).clamp(0.0, 1.0)
    direction = per_sample_noise(x, ids, seed, salt + "/dir", "normal")
    direction = direction / _flat_norm(direction).clamp_min(1e-12)
    radius = per_sample_noise(x[:, :1, :1, :1], ids, seed, salt + "/radius", "unit")
    return (x + eps * radius * direction).clamp(0.0, 1.0)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    random_start_: bool,
    restarts: int,
    ids,
    seed: int,
    on_step=None,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al. 2018), L∞ or L2, with restarts.

    With several restarts, a sample keeps the first restart's iterate that fools the model; samples
    never fooled keep the last restart's final iterate (the worst case over restarts). ``on_step``, if
    given, is called with (restart, step, iterate) after every step (diagnostics trace the loss with it).
    """
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for r in range(restarts):
        x_adv = random_start(x, eps, norm, ids, seed, f"pgd/{r}") if random_start_ else x.clone()
        for step in range(steps):
            x_adv = project(_step(x_adv, input_gradient(model, x_adv, y), alpha, norm), x, eps, norm).detach()
            if on_step is not None:
                on_step(r, step, x_adv)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            newly = (model(x_adv).argmax(1) != y) & ~fooled
        keep = newly | ~fooled
        best[keep] = x_adv[keep]
        fooled |= newly
    return best


def rfgsm(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int, ids, seed: int
) -> torch.Tensor:
    """R-FGSM as torchattacks defines it: a random ±alpha step, then ``steps`` sign steps of size alpha."""
    x_adv = (x + alpha * per_sample_noise(x, ids, seed, "rfgsm", "sign")).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv = project(_step(x_adv, input_gradient(model, x_adv, y), alpha, "Linf"), x, eps, "Linf").detach()
    return x_adv


def torchattacks_run(attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run a torchattacks attack without its model-mode side effects (``forward``, not ``__call__``)."""
    attack.set_device(x.device)
    return attack.forward(x, y)


def fmn(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, steps: int, max_stepsize: float, gamma: float
) -> torch.Tensor:
    """Fast Minimum-Norm (Pintor et al., NeurIPS 2021), foolbox 3.3.4's ``LInfFMNAttack`` / ``L2FMNAttack``.

    Per sample the closest adversarial the attack found within the image box (the input itself where it
    found none; clean-misclassified samples return at distance 0). Deterministic: no random start, and each
    sample's iterates depend only on its own gradients (BN in eval mode). Run through foolbox's ``run``,
    which has no budget; the model keeps the mode the engine set (foolbox only warns about train mode,
    when it wraps the model, so it is wrapped in eval mode and the engine's mode restored).
    """
    import foolbox as fb

    attack_cls = fb.attacks.LInfFMNAttack if norm == "Linf" else fb.attacks.L2FMNAttack
    attack = attack_cls(steps=steps, max_stepsize=max_stepsize, gamma=gamma)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        wrapped = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
    finally:
        for module, training in modes:
            module.training = training
    x_adv = attack.run(wrapped, x.detach(), fb.criteria.Misclassification(y))
    return x_adv.detach().clamp(0.0, 1.0)
