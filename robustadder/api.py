"""The library entry point that the CLI is a thin layer over."""

from __future__ import annotations

import os

import pandas as pd

from .data import load_cifar10
from .engine import Settings, clean_eval
from .errors import UserError
from .kernels import get_backend
from .models import LoadedModel, resolve_model


def evaluate(
    model: str | LoadedModel,
    attack: str = "none",
    *,
    n: int | None = None,
    data: str | os.PathLike | None = None,
    batch_size: int = 128,
    backend: str = "auto",
    device: str = "cpu",
    dtype: str = "float32",
    arch: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate a model (zoo name, checkpoint path or loaded model) on the CIFAR-10 test set.

    Returns one row per sample (``sample_id``, ``label``, ``clean_pred``, ``clean_correct``); the
    frame's ``attrs`` carry the model name, architecture, weights sha256 and wall time in seconds.
    """
    if attack != "none":
        raise UserError(f"unknown attack '{attack}': only 'none' (clean accuracy) is available")
    settings = Settings(batch_size=batch_size, backend=backend, device=device, dtype=dtype)
    settings.validate()
    loaded = model if isinstance(model, LoadedModel) else resolve_model(model, arch=arch)
    dataset = load_cifar10("test", data).first(n)
    frame, seconds = clean_eval(loaded, dataset, settings, progress=progress)
    frame.attrs.update(
        model=loaded.name,
        arch=loaded.arch.name,
        variant=loaded.arch.variant,
        weights_sha256=loaded.weights_sha256,
        data=dataset.source,
        backend=get_backend(settings.backend, settings.device).name,
        seconds=seconds,
    )
    return frame
