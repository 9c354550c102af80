"""Evaluation engine: runs models over sample ids, batch by batch.

This module owns how a model is run for evaluation — device, dtype, backend, batching — so that every
command computes accuracy the same way. Clean evaluation lives here; attacks build on the same
batching (DESIGN §1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import ImageSet
from .errors import UserError
from .kernels import get_backend
from .models import LoadedModel
from .nn import set_backend

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Settings:
    """How a model is run: the inference settings that every result records."""

    batch_size: int = 128
    backend: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self) -> None:
        """Reject settings a user can get wrong before any work starts."""
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype}")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UserError(f"unknown device '{self.device}' (use cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: no CUDA GPU is available on this machine; use --device cpu")
        get_backend(self.backend, device)  # raises UserError for unknown/unavailable backends


def prepare(loaded: LoadedModel, settings: Settings) -> torch.nn.Module:
    """Move the model to the settings' device/dtype and backend, in eval mode, weights frozen."""
    settings.validate()
    model = loaded.model.to(device=settings.device, dtype=DTYPES[settings.dtype])
    set_backend(model, settings.backend)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks need input gradients only; weight gradients are wasted work
    return model


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, settings: Settings) -> torch.Tensor:
    """Predicted labels for a batch already on the device."""
    return model(x.to(device=settings.device, dtype=DTYPES[settings.dtype])).argmax(1).cpu()


def clean_eval(
    loaded: LoadedModel, data: ImageSet, settings: Settings, *, progress: bool = True
) -> tuple[pd.DataFrame, float]:
    """Per-sample clean predictions (sample_id, label, clean_pred, clean_correct) and wall time."""
    model = prepare(loaded, settings)
    preds = np.empty(len(data), dtype=np.int64)
    start = time.perf_counter()
    bs = settings.batch_size
    for i in tqdm(range(0, len(data), bs), desc=f"clean {loaded.name}", unit="batch", disable=not progress):
        x, _ = data.tensors(slice(i, i + bs))
        preds[i : i + bs] = predict(model, x, settings).numpy()
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(
        {"sample_id": data.ids, "label": data.y, "clean_pred": preds, "clean_correct": preds == data.y}
    )
    return frame, seconds
