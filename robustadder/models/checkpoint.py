"""Checkpoint I/O for every format seen in the wild (docs/design.md §3), never unpickling code.

Formats read:

* bare state dicts, with or without the ``module.`` prefix of ``DataParallel``;
* the legacy (non-zip) torch serialization of the official AdderNet release;
* tensors saved on ``cuda:N`` (mapped to the CPU or the requested device);
* wrappers ``{'state_dict': ..., 'epoch': ..., 'best_prec1': ...}`` (also ``model``/``net`` keys);
* the project's own format: ``{'format': 'robustadder-checkpoint', 'version': 1, 'meta': {...},
  'state_dict': {...}}`` whose metadata names the architecture, normalization, dataset, recipe,
  measured accuracy and the sha256 of the weights; written atomically (temp file + rename).

Every read is ``torch.load(..., weights_only=True, map_location=...)``: a checkpoint is data, and a
file that needs arbitrary unpickling is refused rather than executed. Anything wrong with a file a user
handed us becomes a :class:`UserError` that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .._version import __version__
from ..errors import UserError
from ..fileio import atomic_write, note_input
from ..nn import AWN_FORMS, awn_layers, set_awn_form
from .registry import architecture, create_model
from .resnet import CIFAR10_MEAN, CIFAR10_STD, CifarResNet
from .spec import ModelSpec

FORMAT_TAG = "robustadder-checkpoint"
FORMAT_VERSION = 1
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


@dataclass
class LoadedModel:
    """A model ready for evaluation, with what is known about where it came from."""

    model: nn.Module
    name: str
    arch: ModelSpec
    weights_sha256: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


# -- reading ----------------------------------------------------------------------------------------
def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load`` a user's file safely, turning every failure into one clear UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path} (check the path, or use a zoo name from 'robustadder models')")
    if not path.is_file():
        raise UserError(f"checkpoint path is not a file: {path}")
    note_input(path, "a checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "GLOBAL" in msg:
            raise UserError(
                f"refusing to load {path}: it contains Python objects beyond tensors and plain "
                "containers, which could run code when unpickled; re-save its state_dict with torch.save"
            ) from None
        raise UserError(f"{path} is not a readable PyTorch checkpoint (unreadable pickle data; truncated or corrupt?)") from None
    except Exception as exc:  # zip errors, EOF, bad magic numbers: all mean "not a usable file"
        reason = str(exc).split("\n")[0][:160] or type(exc).__name__
        raise UserError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt? {reason})") from None


def unwrap(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and metadata from any supported container; strips ``module.`` prefixes."""
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_TAG:
        raw_meta = obj.get("meta") or {}
        if not isinstance(raw_meta, Mapping):
            raise UserError(f"{source}: its metadata is a {type(raw_meta).__name__}, not a mapping; the checkpoint is damaged")
        meta = dict(raw_meta)
        check_meta(meta, source)
        obj = obj.get("state_dict")
    elif isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                meta = {k: v for k, v in obj.items() if k != key and isinstance(v, (int, float, str))}
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{source} holds no state dict (found {type(obj).__name__}); save model.state_dict()")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{source}: state dict entry '{bad[0]}' is not a tensor; is this a model checkpoint?")
    for key, t in obj.items():  # before anything reads a tensor whole: a view may declare far more than the file holds
        held = t.untyped_storage().nbytes()
        if t.numel() * t.element_size() > held:
            raise UserError(
                f"{source}: tensor '{key}' declares shape {tuple(t.shape)} ({t.numel():,} values) over {held:,} bytes "
                "of data; the checkpoint is malformed"
            )
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, meta


#: the types of the metadata fields the loader reads (a wrong type used to end in a traceback)
_META_TYPES: dict[str, type | tuple[type, ...]] = {"arch": str, "num_classes": int, "normalization": Mapping,
                                                   "awn_variant": Mapping, "weights_sha256": str, "dataset": str}  # fmt: skip


def check_meta(meta: Mapping[str, Any], source: str) -> None:
    """The metadata fields the loader reads have their types, and a normalization is usable (finite, std > 0)."""
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UserError(f"{source}: metadata field '{key}' is a {type(value).__name__}; the checkpoint is damaged")
    norm = meta.get("normalization") or {}
    for key in ("mean", "std"):
        values = norm.get(key)
        if values is None:
            continue
        ok = (
            isinstance(values, (list, tuple))
            and values
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        )
        if not ok or (key == "std" and min(values) <= 0):
            raise UserError(
                f"{source}: its normalization {key} {values!r} is not a list of finite numbers"
                + (" > 0" if key == "std" else "")
                + "; the checkpoint is damaged"
            )


def infer_arch(state: Mapping[str, torch.Tensor], source: str) -> ModelSpec:
    """Architecture from the keys and shapes alone (no metadata needed)."""
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise UserError(
            f"{source}: the state dict does not look like a CIFAR ResNet (no 'conv1.weight' / 'fc.weight'); "
            "pass --arch if it is one"
        )
    kind = "adder" if any(k.endswith(".adder") for k in state) else "conv"
    awn = any(k.endswith(".awn_gain") for k in state)
    counts = []
    for stage in (1, 2, 3):
        prefix = f"layer{stage}."
        counts.append(len({k.split(".")[1] for k in state if k.startswith(prefix)}))
    if len(set(counts)) != 1 or counts[0] == 0:
        raise UserError(f"{source}: blocks per stage {counts} do not match a CIFAR ResNet; pass --arch if it is one")
    depth = 6 * counts[0] + 2
    num_classes = int(state["fc.weight"].shape[0])
    return ModelSpec.cifar_resnet(depth, kind, awn, num_classes)


def parse_arch(name: str) -> ModelSpec:
    """The description of a registered architecture named by a user (``--arch``, a zoo manifest)."""
    return architecture(name).spec


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Content hash of the weights, independent of file format, key order and device.

    Hashes every entry's name, dtype, shape and bytes in sorted key order, so the same weights saved
    as legacy, zip, prefixed or wrapped files hash alike — this is the identity results are keyed on.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights with NaN or infinity: they would silently yield garbage accuracy."""
    for key, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{source}: weight '{key}' contains NaN or infinite values; the checkpoint is broken")


def build_model(
    state: dict[str, torch.Tensor], spec: ModelSpec, source: str, meta: Mapping[str, Any] | None = None
) -> CifarResNet:
    """Instantiate ``spec`` with the normalization from ``meta`` and load ``state`` strictly."""
    meta = meta or {}
    norm = meta.get("normalization") or {}
    channels = int(state["conv1.weight"].shape[1]) if "conv1.weight" in state else 3
    mean, std = tuple(norm.get("mean", CIFAR10_MEAN)), tuple(norm.get("std", CIFAR10_STD))
    if len(mean) != channels:  # e.g. a grayscale model without metadata: channel-averaged CIFAR statistics
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    model = CifarResNet(spec.depth, spec.kind, spec.awn, num_classes=spec.num_classes, mean=mean, std=std, in_channels=channels)
    load_strictly(model, state, f"{source} does not fit architecture {spec.name}")
    if spec.awn:  # the AWN form changes what the layers compute; checkpoints before it had forms: standardize
        form = (meta.get("awn_variant") or {}).get("form", "standardize")
        if form not in AWN_FORMS:
            raise UserError(f"{source}: unknown AWN form '{form}' in its metadata (known: {', '.join(AWN_FORMS)})")
        set_awn_form(model, form)
    return model


def load_strictly(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, hint: str = "check --arch") -> None:
    """Load ``state`` into ``model`` with every key and shape matching, else one line starting with ``what``.

    Very old checkpoints (torch < 0.4.1) lack ``num_batches_tracked``; it does not affect inference and is
    the one key allowed to be missing.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = [f"missing {len(missing)} keys (e.g. '{missing[0]}')"] if missing else []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. '{unexpected[0]}')")
    if wrong:
        parts.append(f"'{wrong[0]}' has shape {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}")
    if parts:
        raise UserError(f"{what}: {', '.join(parts)}" + (f"; {hint}" if hint else ""))
    model.load_state_dict({k: state.get(k, expected[k]) for k in expected}, strict=True)


# -- writing ----------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: Mapping[str, Any] | None = None) -> dict:
    """Save ``model`` in the project's format; returns the metadata written.

    The metadata always carries the architecture, variant, normalization and weights sha256; callers
    add dataset, recipe and measured accuracy. Values must be plain (str/int/float/bool/list/dict) so
    that the file stays loadable with ``weights_only=True``.
    """
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    full_meta: dict[str, Any] = {}
    if isinstance(model, CifarResNet):
        full_meta.update(
            arch=model.spec.name,
            variant=model.spec.variant,
            num_classes=model.spec.num_classes,
            normalization=model.normalization,
        )
    forms = {layer.awn_form for layer in awn_layers(model)}
    if len(forms) > 1:
        raise ValueError(f"AWN layers with different forms ({sorted(forms)}) cannot be described by one checkpoint")
    if forms:
        full_meta["awn_variant"] = {"form": forms.pop()}
    full_meta.update(meta or {})
    full_meta["weights_sha256"] = weights_sha256(state)
    full_meta.setdefault("code_version", __version__)
    payload = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "meta": full_meta, "state_dict": state}
    atomic_write(path, lambda fh: torch.save(payload, fh))
    return full_meta


__all__ = [
    "FORMAT_TAG",
    "LoadedModel",
    "atomic_write",
    "build_model",
    "check_finite",
    "create_model",
    "infer_arch",
    "load_strictly",
    "read_checkpoint_file",
    "save_checkpoint",
    "unwrap",
    "weights_sha256",
]
