"""File-based datasets: ``imagefolder:PATH`` (images in class sub-folders) and ``npz:PATH`` (arrays).

Image folders
    ``PATH`` holds one sub-folder per class (sorted names → classes 0..K-1, as torchvision's ImageFolder),
    or ``train/`` and ``val/`` (or ``test/``) folders that do. Images (jpg, png, ...) are resized so that
    the shorter side is crop / 0.875 and centre-cropped to the model's input (224 → resize 256, crop 224:
    the standard ImageNet evaluation transform), converted to RGB (grayscale for one-channel models). A
    sample's id is its position in the folder sorted by (class, path); the *order* in which samples are
    taken is round-robin over the classes, so that the first 1,000 images of an ImageNet validation folder
    cover all classes instead of the first 20.

npz files
    ``x`` uint8 (N, H, W, C) or (N, H, W), ``y`` integer labels, optionally ``ids`` (unique non-negative
    sample ids, default 0..N-1) and ``num_classes`` (else only the labels are checked against a model).
    ``npz:FILE`` is a test set; ``npz:DIR`` holds ``train.npz`` and ``test.npz``.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import UserError
from ..fileio import note_input
from .core import ImageSet, check_n, read_npz, validate
from .registry import Dataset, Shape, register_scheme

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"})
CROP_FRACTION = 0.875  # resize to crop / 0.875, centre-crop: the ImageNet evaluation transform
DEFAULT_SHAPE: Shape = (3, 224, 224)  # an image folder evaluated without a model that states its input


# -- image folders --------------------------------------------------------------------------------------
def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def split_folder(root: Path, split: str) -> Path:
    """The folder of class sub-folders for a split: ``root/train``, ``root/val`` or ``root/test``, else ``root``."""
    for name in ("train",) if split == "train" else ("val", "test"):
        candidate = root / name
        if candidate.is_dir() and _class_dirs(candidate):
            return candidate
    if split == "train":
        raise UserError(f"{root} has no train/ folder of class sub-folders (training reads PATH/train and PATH/val)")
    return root


def _images(folder: Path) -> list[Path]:
    files = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]  # fmt: skip
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


#: larger images are refused from their header: a tiny file declaring 100 megapixels decoded to a black image
MAX_PIXELS = 40 * 10**6


def _decode(path: Path, shape: Shape) -> np.ndarray:
    """One image → uint8 (H, W, C): shorter side to crop / 0.875 (bilinear), centre crop."""
    from PIL import Image

    c, h, w = shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # PIL's warnings never leak: the size check says it
            im = Image.open(path)
        with im:
            if im.size[0] * im.size[1] > MAX_PIXELS:  # checked on the header, before anything is decoded
                raise UserError(
                    f"{path}: declares {im.size[0]}x{im.size[1]} pixels, beyond the {MAX_PIXELS // 10**6} megapixels "
                    "an evaluation image can sensibly have; refusing to decode it"
                )
            im = im.convert("RGB" if c == 3 else "L")
            width, height = im.size
            short = round(max(h, w) / CROP_FRACTION)
            if width <= height:
                size = (short, max(h, int(short * height / width)))
            else:
                size = (max(w, int(short * width / height)), short)
            im = im.resize(size, Image.Resampling.BILINEAR)
            top, left = int(round((size[1] - h) / 2.0)), int(round((size[0] - w) / 2.0))
            arr = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.uint8)
    except UserError:
        raise
    except Exception as exc:  # PIL's UnidentifiedImageError, truncated files, decompression bombs
        raise UserError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    return arr if arr.ndim == 3 else arr[..., None]


@register_scheme("imagefolder")
def image_folder(path: Path) -> Dataset:
    """``imagefolder:PATH`` → a dataset resized to each model's input."""
    if not path.is_dir():
        raise UserError(f"imagefolder: {path} is not a directory")
    test = split_folder(path, "test")
    classes = _class_dirs(test)
    if not classes:
        raise UserError(f"imagefolder: {test} has no class sub-folders (one folder of images per class)")
    name = f"imagefolder:{path.resolve().name}"

    def reader(split: str, root: Path, n: int | None, shape: Shape | None) -> ImageSet:
        folder = split_folder(root, split)
        note_input(root, "an image folder read as the dataset", tree=True)
        names = [d.name for d in _class_dirs(folder)]
        if names != [d.name for d in classes]:
            raise UserError(f"{folder}: its class folders differ from those of {test} ({len(names)} vs {len(classes)})")
        per_class = [_images(folder / c) for c in names]
        total = sum(len(f) for f in per_class)
        if total == 0:
            raise UserError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in its class folders")
        check_n(n if n is not None else total, total, str(folder))
        first_id = np.cumsum([0] + [len(f) for f in per_class])  # id = position in (class, path) order
        order = [(c, k) for k in range(max(len(f) for f in per_class)) for c in range(len(names)) if k < len(per_class[c])]
        order = order[: n if n is not None else total]
        want = shape or DEFAULT_SHAPE
        x = np.empty((len(order), want[1], want[2], want[0]), dtype=np.uint8)
        for i, (c, k) in enumerate(tqdm(order, desc=f"read {folder.name}", unit="img", leave=False, disable=len(order) < 500)):
            x[i] = _decode(per_class[c][k], want)
        y = np.array([c for c, _ in order], dtype=np.int64)
        ids = np.array([first_id[c] + k for c, k in order], dtype=np.int64)
        return ImageSet(x, y, ids, str(folder), len(names), name)

    return Dataset(name, f"image folder {path.resolve().name}", len(classes), None, None, ("train", "test"), reader,
                   f"{test} (class sub-folders)", path=path)  # fmt: skip


# -- npz files --------------------------------------------------------------------------------------------
def _num_classes(arrays: dict[str, np.ndarray], source: Path) -> int | None:
    """An npz file's ``num_classes``: absent, or one integer of at least 1 (not an array, not a float)."""
    if "num_classes" not in arrays:
        return None
    value = np.asarray(arrays["num_classes"])
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or int(value) < 1:
        raise UserError(f"{source}: 'num_classes' must be one integer >= 1, found {value.dtype} of shape {value.shape}")
    return int(value)


def _npz_peek(path: Path) -> tuple[tuple[int, ...] | None, int | None]:
    """Shape of ``x`` (read from its header, not its data) and ``num_classes`` of an npz file."""
    shape = None
    try:
        with zipfile.ZipFile(path) as z, z.open("x.npy") as fh:
            version = np.lib.format.read_magic(fh)
            header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            shape = tuple(header(fh)[0]) if header else None
        with np.load(path, allow_pickle=False) as f:
            classes = _num_classes({k: f[k] for k in f.files if k == "num_classes"}, path)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not an npz file with an array 'x' ({exc})") from None
    return shape, classes


@register_scheme("npz")
def npz_dataset(path: Path) -> Dataset:
    """``npz:FILE`` (a test set) or ``npz:DIR`` (``train.npz``, ``test.npz``) → a dataset."""
    if path.is_dir():
        files = {s: path / f"{s}.npz" for s in ("train", "test") if (path / f"{s}.npz").is_file()}
        if "test" not in files:
            raise UserError(f"npz: {path} is a directory without test.npz (npz:FILE, or a directory of train.npz / test.npz)")
    elif path.is_file():
        files = {"test": path}
    else:
        raise UserError(f"npz: {path} not found")
    shape, classes = _npz_peek(files["test"])
    input_shape = None
    if shape is not None and len(shape) in (3, 4):
        input_shape = (shape[3] if len(shape) == 4 else 1, shape[1], shape[2])
    name = f"npz:{path.name}"

    def reader(split: str, _root: Path, n: int | None, _shape: Shape | None) -> ImageSet:
        source = files[split]
        arrays = read_npz(source)
        x = arrays["x"][..., None] if arrays["x"].ndim == 3 else arrays["x"]
        k = _num_classes(arrays, source)
        y = validate(x, arrays["y"], str(source), k)
        ids = arrays.get("ids")
        if ids is None:
            ids = np.arange(len(y), dtype=np.int64)
        elif (ids.shape != y.shape or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0
              or int(ids.max()) > np.iinfo(np.int64).max or len(np.unique(ids)) != len(ids)):  # fmt: skip
            # ids above 2**63 - 1 would wrap to negative ids in the store (int64)
            raise UserError(f"{source}: 'ids' must be {len(y)} distinct non-negative integers below 2**63, one per image")
        return ImageSet(x, y, ids.astype(np.int64), str(source), k, name)

    return Dataset(name, f"{path.name}", classes, input_shape, None, tuple(files), reader, " / ".join(map(str, files.values())),
                   path=path)  # fmt: skip
