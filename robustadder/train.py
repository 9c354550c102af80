"""Training of the zoo models with the official AdderNet recipe (docs/design.md §3), resumable and deterministic.

Recipe (defaults): SGD with momentum 0.9, weight decay 5e-4 on all parameters, learning rate 0.1 with a
cosine schedule (per iteration) over the run, batch 256, random crop 32 with 4-pixel zero padding and
horizontal flip; adder layers use the full-precision weight gradient with the adaptive scaling (η = 0.2)
and back-propagate the surrogate (HardTanh) input gradient, as the official training does. AWN
variants train the raw weights and the per-filter gains. Only the number of epochs differs from the
official 400: the CPU budget decides it, and it is recorded with the checkpoint.

Determinism and resumption: the initialization comes from ``torch.manual_seed(seed)``; each epoch's
sample order and augmentation come from a numpy generator seeded by (seed, epoch) — nothing depends on
how many epochs ran in this process. After every epoch the whole training state (model, optimizer,
scheduler, torch RNG, epoch, metrics) is written atomically; ``resume=True`` continues from it and gives
bit-identical weights to an uninterrupted run on the same machine.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import DEFAULT_DATASET, ImageSet, open_dataset, to_tensor
from .errors import UserError
from .fileio import atomic_write
from .models import REGISTRY, CifarResNet, save_checkpoint
from .nn import AWN_FORMS, adder_layers, awn_layers, awn_raw_weight, set_awn_form, set_backend, set_grad_mode
from .summary import proportion_interval

STATE_FORMAT = "robustadder-train-state"
TRAIN_SHAPE = (3, 32, 32)  # the CIFAR ResNets' input; image folders are read at this size


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (recorded as the checkpoint's recipe)."""

    arch: str = "resnet20"
    kind: str = "adder"
    awn: bool = False
    epochs: int = 400
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eta: float = 0.2
    seed: int = 0
    crop_padding: int = 4
    flip: bool | None = None  # None: the dataset's default (no flips for digits)
    train_subset: int | None = None
    test_subset: int | None = None
    dataset: str = DEFAULT_DATASET
    # AWN variants (issue 16's ablation, reports/awn-ablation): weight normalization trains better than the
    # standardization of docs/design.md §4 and keeps BN as tame (README, AWN); the other three keep the original reading
    awn_form: str = "norm"  # what the layers compute: norm γW/rms(W), or standardize γ(W−μ)/σ
    awn_eta: str = "raw"  # the adaptive learning rate acts on the raw weight's gradient, or on the normalized one's
    awn_gain_decay: bool = True  # weight decay on the per-filter gain γ
    # γ starts at 4 (the scale of the templates a model without AWN learns: at γ = 1 the adder terms |W − X| sit in
    # the HardTanh gradient's linear range, where the model without AWN has them saturated; README, AWN), at 1
    # ("one", every AWN model trained before), at each filter's own scale ("scale": Ŵ equals W at start) or at
    # another positive number
    awn_gain_init: str = "4"

    @property
    def arch_name(self) -> str:
        """Registry name of the architecture, e.g. resnet20_adder_awn."""
        return f"{self.arch}_{self.kind}" + ("_awn" if self.awn else "")

    def validate(self) -> None:
        """Reject impossible configurations before any work starts."""
        if self.arch_name not in REGISTRY or not REGISTRY[self.arch_name].cifar_resnet:
            raise UserError(f"unknown architecture {self.arch} / {self.kind}: choose resnet20/32/56 and adder/conv")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError("--lr must be a positive number")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)) or not 0 <= self.momentum < 1:
            raise UserError("--weight-decay must be a finite number >= 0 and --momentum in [0, 1)")
        if not (self.eta > 0 and math.isfinite(self.eta)):
            raise UserError("--eta must be a positive number")
        if gain_init_value(self.awn_gain_init) is None and self.awn_gain_init not in ("one", "scale"):
            raise UserError(f"--awn-gain-init must be one, scale or a positive number, not {self.awn_gain_init}")
        choices = {"awn_form": AWN_FORMS, "awn_eta": ("raw", "normalized")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, not {getattr(self, name)}")
        defaults = TrainConfig()
        changed = [
            f.name for f in fields(self) if f.name.startswith("awn_") and getattr(self, f.name) != getattr(defaults, f.name)
        ]
        if changed and not self.awn:
            raise UserError(f"--{changed[0].replace('_', '-')} applies to AWN models: add --awn")
        for name in ("train_subset", "test_subset"):  # 0 used to mean "everything" without a word
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (leave it out for the whole set)")


def gain_init_value(text: str) -> float | None:
    """The number in a numeric ``--awn-gain-init`` (a finite value > 0), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


#: What a training state written before a setting existed was trained with: CIFAR-10 and AWN as docs/design.md §4
#: reads it (the default form has changed since; an old state must resume as what it was).
PREDATING: dict[str, Any] = {"dataset": "cifar10", "awn_form": "standardize", "awn_eta": "raw", "awn_gain_decay": True,
                             "awn_gain_init": "one"}  # fmt: skip


def augment(x: np.ndarray, rng: np.random.Generator, padding: int, flip: bool) -> np.ndarray:
    """Random crop (zero padding) and horizontal flip of uint8 HWC images, vectorized over the batch."""
    n, h, w, _ = x.shape
    if padding:
        padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        dy = rng.integers(0, 2 * padding + 1, n)
        dx = rng.integers(0, 2 * padding + 1, n)
        rows = dy[:, None] + np.arange(h)[None, :]
        cols = dx[:, None] + np.arange(w)[None, :]
        x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mask = rng.random(n) < 0.5
        x = x.copy()
        x[mask] = x[mask, :, ::-1]
    return x


@torch.no_grad()
def bn_statistics(model: torch.nn.Module) -> dict[str, float]:
    """Magnitudes of the BN running statistics inside the residual blocks (after the adder / conv layers).

    The quantity the AWN paper says adder layers inflate (docs/design.md §4: running means of hundreds to
    thousands without AWN): the mean and the largest |running mean| over all channels of the blocks' BN
    layers, and their mean running variance. The stem's and the logits' BN are left out.
    """
    means, variances = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and name.startswith("layer") and module.running_mean is not None:
            means.append(module.running_mean.abs().flatten())
            variances.append(module.running_var.flatten())
    if not means:
        return {}
    m, v = torch.cat(means), torch.cat(variances)
    return {"bn_abs_mean": round(float(m.mean()), 4), "bn_abs_mean_max": round(float(m.max()), 4),
            "bn_var_mean": round(float(v.mean()), 4)}  # fmt: skip


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 HWC training images (for a dataset that states none)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    std = np.maximum(flat.std(0), 1e-3)  # a constant channel must not divide by zero
    return tuple(float(v) for v in flat.mean(0)), tuple(float(v) for v in std)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def _cosine(total_steps: int):
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, data: ImageSet, batch_size: int = 500) -> float:
    """Clean accuracy in percent (eval mode)."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.tensors(slice(i, i + batch_size))
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was)
    return 100.0 * correct / len(data)


def _check_writable(path: Path) -> None:
    """The output's directory exists and takes files (checked before any epoch is spent)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name like models/ann20.pt")
    if not folder.is_dir():
        raise UserError(f"--out {path}: directory {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"--out {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def build_training(config: TrainConfig, **model_args: Any) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model (``model_args``: classes, normalization, channels) and its optimizer, as a run of ``config`` starts.

    One place for the recipe's model side (η on the adder layers, the surrogate gradient, the AWN variant, weight
    decay per parameter group), shared by :class:`Trainer` and ``bench train``, whose timing must be of this step.
    """
    spec = REGISTRY[config.arch_name].spec
    model = CifarResNet(spec.depth, spec.kind, spec.awn, **model_args)
    for layer in adder_layers(model):
        layer.eta = config.eta
    set_grad_mode(model, "surrogate")
    set_backend(model, "auto")
    _apply_awn_variant(model, config)
    return model, torch.optim.SGD(_param_groups(model, config), lr=config.lr, momentum=config.momentum)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """One SGD step on a batch (the model in train mode); returns the logits and the loss, detached."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach(), loss.detach()


def _apply_awn_variant(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """The AWN form and where η acts (all layers), and γ's initial value (before any step)."""
    if not cfg.awn:
        return
    set_awn_form(model, cfg.awn_form)
    for layer in adder_layers(model):
        layer.awn_eta = cfg.awn_eta
    start = gain_init_value(cfg.awn_gain_init)
    if start is not None:
        with torch.no_grad():
            for layer in awn_layers(model):
                layer.awn_gain.fill_(start)
    elif cfg.awn_gain_init == "scale":
        with torch.no_grad():
            for layer in awn_layers(model):
                raw = awn_raw_weight(layer)
                flat = raw.reshape(raw.shape[0], -1)
                scale = flat.std(1, unbiased=False) if cfg.awn_form == "standardize" else flat.pow(2).mean(1).sqrt()
                layer.awn_gain.copy_(scale)


def _param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on every parameter (the official recipe), or on all but the AWN gains."""
    if cfg.awn_gain_decay:
        return [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not n.endswith("awn_gain")], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if n.endswith("awn_gain")], "weight_decay": 0.0},
    ]


class Trainer:
    """One training run: build, train epoch by epoch, checkpoint the state, write the final model."""

    def __init__(self, config: TrainConfig, out: str | os.PathLike, data: str | os.PathLike | None = None) -> None:
        config.validate()
        self.config = config
        self.out = Path(out)
        _check_writable(self.out)  # found out after a whole epoch before
        self.state_path = self.out.with_name(self.out.name + ".state")
        self.metrics_path = self.out.with_name(self.out.stem + ".metrics.csv")
        self.dataset = open_dataset(config.dataset)
        if config.flip is None:
            config = self.config = replace(config, flip=self.dataset.flip)
        self.train = self.dataset.load("train", data, n=config.train_subset, image_shape=TRAIN_SHAPE)
        self.test = self.dataset.load("test", data, n=config.test_subset, image_shape=TRAIN_SHAPE)
        channels, height, width = self.train.image_shape
        if (height, width) != TRAIN_SHAPE[1:]:
            raise UserError(f"train builds a CIFAR ResNet, which takes 32x32 images; {self.dataset.title} has {height}x{width}")
        classes = self.dataset.num_classes or int(max(self.train.y.max(), self.test.y.max())) + 1
        mean, std = self.dataset.normalization or _channel_stats(self.train.x)
        torch.manual_seed(config.seed)
        self.model, self.optimizer = build_training(config, num_classes=classes, mean=mean, std=std, in_channels=channels)
        self.steps_per_epoch = math.ceil(len(self.train) / config.batch_size)
        if config.batch_size == 1 or len(self.train) % config.batch_size == 1:  # BN trains on batch statistics
            raise UserError(
                f"training needs at least 2 samples per batch (BN), but {len(self.train)} training images in batches of "
                f"{config.batch_size} leave a batch of 1; choose another --batch-size or --train-subset"
            )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(config.epochs * self.steps_per_epoch))
        self.epoch = 0
        self.metrics: list[dict[str, Any]] = []

    # -- state -------------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Atomically write everything needed to continue exactly."""
        state = {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "metrics": self.metrics,
        }
        atomic_write(self.state_path, lambda fh: torch.save(state, fh))

    def load_state(self) -> None:
        """Continue from the saved state; its configuration must match this run's."""
        if not self.state_path.is_file():
            raise UserError(f"nothing to resume: {self.state_path} does not exist (start without --resume)")
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"{self.state_path} is not a readable training state ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError(f"{self.state_path} is not a robustadder training state")
        # a state written before a setting existed was trained with what that setting now names explicitly
        saved = {**{f.name: f.default for f in fields(TrainConfig) if f.name not in ("flip",)}, **PREDATING, **state["config"]}
        mine = asdict(self.config)
        relevant = [k for k in mine if k != "epochs" and (self.config.awn or not k.startswith("awn_"))]
        diff = [k for k in relevant if saved.get(k) != mine[k]]
        if diff:
            was = ", ".join(f"{k} {saved.get(k)}" for k in diff)
            raise UserError(f"{self.state_path} was trained with other settings ({was}); use the same flags")
        if saved["epochs"] != mine["epochs"]:
            raise UserError(f"{self.state_path} was started for {saved['epochs']} epochs; the cosine schedule fixes it")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.metrics = list(state["metrics"])

    def write_metrics(self) -> None:
        """The per-epoch metrics CSV (rewritten whole, atomically)."""
        if not self.metrics:
            return
        buf = io.StringIO()
        columns = list(dict.fromkeys(k for row in self.metrics for k in row))  # rows of a resumed older run lack newer columns
        writer = csv.DictWriter(buf, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.metrics)
        atomic_write(self.metrics_path, lambda fh: fh.write(buf.getvalue().encode()))

    # -- training ----------------------------------------------------------------------------------------
    def train_epoch(self, progress: bool = True) -> dict[str, Any]:
        """One epoch over the (augmented, shuffled) training set."""
        cfg = self.config
        rng = _epoch_rng(cfg.seed, self.epoch)
        order = rng.permutation(len(self.train))
        self.model.train()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False)  # fmt: skip
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = to_tensor(augment(self.train.x[idx], rng, cfg.crop_padding, cfg.flip))
            y = torch.from_numpy(self.train.y[idx])
            logits, loss = train_step(self.model, self.optimizer, x, y)
            self.scheduler.step()
            value = float(loss)
            if not math.isfinite(value):
                raise UserError(
                    f"training diverged at epoch {self.epoch + 1}, step {step} (loss {value}); lower --lr (or --eta); "
                    "the state of the last finished epoch is kept"
                )
            loss_sum += value * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
        bar.close()
        seconds = time.perf_counter() - start
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "train_loss": round(loss_sum / seen, 6),
            "train_accuracy": round(100 * correct / seen, 4),
            "test_accuracy": round(test_accuracy(self.model, self.test), 4),
            "lr": lr,
            "seconds": round(seconds, 2),
            **bn_statistics(self.model),
        }
        self.metrics.append(row)
        return row

    def run(self, *, resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict[str, Any] | None:
        """Train to the configured number of epochs (or ``stop_after`` more), then write the checkpoint.

        Returns the final checkpoint's metadata, or None when stopped early (state saved, resumable).
        """
        if self.out.exists():  # hours of training must not end by replacing a checkpoint (the zoo's, say)
            raise UserError(f"{self.out} exists: training never overwrites a checkpoint; choose another --out")
        if not resume and self.metrics_path.exists() and not self.state_path.exists():
            raise UserError(f"{self.metrics_path} exists (another run's metrics): choose another --out")
        if resume:
            self.load_state()
        elif self.state_path.exists():
            raise UserError(f"{self.state_path} exists: pass --resume to continue it, or remove it to start over")
        done_here = 0
        while self.epoch < self.config.epochs:
            if stop_after is not None and done_here >= stop_after:
                return None
            row = self.train_epoch(progress)
            done_here += 1
            self.save_state()
            self.write_metrics()
            if progress:
                tqdm.write(
                    f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.4f} "
                    f"train {row['train_accuracy']:.2f} % test {row['test_accuracy']:.2f} % ({row['seconds']:.0f} s)"
                )
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Measure the final clean accuracy on the test split used and write the checkpoint."""
        self.model.eval()
        accuracy = test_accuracy(self.model, self.test)
        recipe = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        recipe["optimizer"] = "SGD"
        recipe["schedule"] = "cosine per iteration"
        recipe["dataset"] = self.dataset.name  # a name, never a local path
        recipe["augmentation"] = f"random crop 32 (pad {self.config.crop_padding})" + (
            " + horizontal flip" if self.config.flip else ""
        )
        recipe["adder_input_gradient"] = "surrogate (HardTanh)"
        if not self.config.awn:  # AWN knobs say nothing about a model without AWN
            recipe = {k: v for k, v in recipe.items() if not k.startswith("awn_")}
        meta = {
            "dataset": self.dataset.name,
            "accuracy": round(accuracy, 2),
            "accuracy_n": len(self.test),  # an estimate on these images: its 95 % Wilson interval beside it
            "accuracy_ci": [round(v, 2) for v in proportion_interval(round(accuracy * len(self.test) / 100), len(self.test))],
            "recipe": recipe,
            "epochs_trained": self.epoch,
            "train_seconds": round(sum(m["seconds"] for m in self.metrics), 1),
            "seconds_per_epoch": round(sum(m["seconds"] for m in self.metrics) / max(1, len(self.metrics)), 1),
        }
        if self.config.awn:
            c = self.config
            meta["awn_variant"] = {
                "form": c.awn_form,
                "eta": c.awn_eta,
                "gain_decay": c.awn_gain_decay,
                "gain_init": c.awn_gain_init,
            }
        return save_checkpoint(self.out, self.model, meta)
