"""Kernel benchmark: adder backends against ``F.conv2d`` of the same shape, measured in one run.

Every number is measured in the run that prints it, against a baseline timed the same way in the same
process: for each distinct adder-layer shape of ResNet-20 on 32×32 inputs, the backend's op and the
convolution's op are timed alternately (warm-up first, then the median of the repeats), so that
machine noise hits both alike and ``ratio_to_conv`` is meaningful even where absolute times drift.

Rows: ``{"layer", "op", "backend", "ms", "conv_ms", "ratio_to_conv", "peak_mib"}`` where ``op`` is
``forward``, ``forward+grad_input(surrogate)`` or ``forward+grad_input(exact)``. Baselines besides the
convolution: ``reference`` (this project's chunked formula) and ``official`` (the formula of the
official AdderNet code, materializing the (O, C·k², N·L) difference). Extra rows: the first-use compile
cost of the CPU kernel (cold, in a fresh cache, and cached, each in a fresh process) and end-to-end
rows of ANN-20 vs CNN-20 of the same architecture: clean evaluation of 1,000 images and one attack step
per adder gradient, with untrained weights and with the zoo's trained pair (the kernel's paths depend on
the weights). The per-layer inputs are
uniform in [0, 1], like the ReLU outputs adder layers read, so the cpu backend takes its sign-split paths;
``general path`` rows time the paths a sample with a negative input takes, ``trained layer`` rows the zoo's
trained ``ann20`` on the inputs and output gradients of an attack step (the paths depend on the data).
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._version import __version__
from .kernels import get_backend
from .kernels.cpu import load_library
from .models import create_model
from .nn import Adder2d, adder_layers, set_backend, set_grad_mode

OPS = ("forward", "forward+grad_input(surrogate)", "forward+grad_input(exact)")


@dataclass(frozen=True)
class LayerShape:
    """One distinct adder-layer shape: input (C, H, W), filters O, kernel k, stride, padding."""

    name: str
    c: int
    h: int
    o: int
    k: int
    stride: int
    padding: int


def resnet20_layer_shapes() -> list[LayerShape]:
    """Distinct adder-layer shapes of ResNet-20 on 32×32 inputs, found by running the model."""
    model = create_model("resnet20_adder").eval()
    set_backend(model, "cpu")
    names = {m: n for n, m in model.named_modules()}
    seen: dict[tuple, LayerShape] = {}

    def hook(module: Adder2d, inputs, _out) -> None:
        x = inputs[0]
        key = (x.shape[1], x.shape[2], module.out_channels, module.kernel_size, module.stride, module.padding)
        seen.setdefault(key, LayerShape(names[module], *key))

    handles = [m.register_forward_hook(hook) for m in adder_layers(model)]
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    for h in handles:
        h.remove()
    return list(seen.values())


def _official_forward(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """The official AdderNet formula (adder.py), as a speed/memory baseline: no chunking."""
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    ho, wo = (h - k + 2 * padding) // stride + 1, (wd - k + 2 * padding) // stride + 1
    cols = F.unfold(x, k, padding=padding, stride=stride).permute(1, 2, 0).reshape(-1, ho * wo * n)
    out = -(w.reshape(o, -1).unsqueeze(2) - cols.unsqueeze(0)).abs().sum(1)
    return out.view(o, ho, wo, n).permute(3, 0, 1, 2).contiguous()


def _official_grad_input(x, w, g, stride, padding, mode):
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    cols = F.unfold(x, k, padding=padding, stride=stride).permute(1, 2, 0).reshape(c * k * k, -1)
    gcol = g.permute(1, 2, 3, 0).reshape(o, -1)
    d = w.reshape(o, -1).unsqueeze(2) - cols.unsqueeze(0)
    f = d.clamp(-1, 1) if mode == "surrogate" else d.sign()
    dcols = (f * gcol.unsqueeze(1)).sum(0)  # (C·k², L·N)
    dcols = dcols.view(c * k * k, -1, n).permute(2, 0, 1)
    return F.fold(dcols, (h, wd), k, padding=padding, stride=stride)


def _peak_tracker(device: torch.device) -> tuple[Callable[[], None], Callable[[], float]]:
    """(reset, read peak MiB above the level at reset) for the device's memory."""
    if device.type == "cuda":

        def reset() -> None:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            reset.base = torch.cuda.memory_allocated()  # type: ignore[attr-defined]

        def read() -> float:
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - reset.base) / 2**20  # type: ignore[attr-defined]

        return reset, read

    def status(field: str) -> float:
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return float(line.split()[1]) / 1024
        return float("nan")

    def reset_cpu() -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets the peak RSS (VmHWM) of this process
        except OSError:
            pass
        reset_cpu.base = status("VmRSS:")  # type: ignore[attr-defined]

    def read_cpu() -> float:
        return max(0.0, status("VmHWM:") - reset_cpu.base)  # type: ignore[attr-defined]

    return reset_cpu, read_cpu


def _time_pair(fn: Callable[[], object], base: Callable[[], object], device, repeats: int, budget_s: float):
    """Median ms of ``fn`` and ``base``, timed alternately after one warm-up each; stops early on budget.

    On CUDA each sample is the mean of a loop of launches between two device events (a single launch of
    a small layer takes microseconds, less than the host-side timer and launch jitter resolve), with the
    loop long enough to span about a millisecond; both ops get the same loop length.
    """
    fn(), base()
    if device.type == "cuda":
        return _time_pair_cuda(fn, base, repeats, budget_s)
    a, b = [], []
    start = time.perf_counter()
    for _ in range(repeats):
        for f, out in ((fn, a), (base, b)):
            t = time.perf_counter()
            f()
            out.append(1000 * (time.perf_counter() - t))
        if time.perf_counter() - start > budget_s and len(a) >= 3:
            break
    return statistics.median(a), statistics.median(b)


def _time_pair_cuda(fn: Callable[[], object], base: Callable[[], object], repeats: int, budget_s: float):
    def loop_ms(f: Callable[[], object], inner: int) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        begin.record()
        for _ in range(inner):
            f()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / inner

    probe = max(loop_ms(fn, 3), loop_ms(base, 3), 1e-3)
    inner = max(1, min(200, int(1.0 / probe)))
    a, b = [], []
    start = time.perf_counter()
    for _ in range(max(repeats, 5)):
        a.append(loop_ms(fn, inner))
        b.append(loop_ms(base, inner))
        if time.perf_counter() - start > budget_s and len(a) >= 3:
            break
    return statistics.median(a), statistics.median(b)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Turn TF32 of cuDNN / cuBLAS on or off inside the block (restored after).

    PyTorch lets cuDNN convolutions use TF32 tensor cores by default: a 10-bit mantissa, so a "float32"
    CNN on a GPU is not the float32 CNN of a CPU. The benchmark's baseline is plain FP32 (TF32 off),
    and TF32 is timed separately as the tensor-core ceiling.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on: CPU model and vector features, GPU, library versions."""
    import platform

    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    model, flags, ids = platform.processor() or platform.machine(), [], {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key == "flags" and not flags:
                flags = value.split()
            elif key in ("cpu family", "model") and key not in ids and value.strip().isdigit():
                ids[key] = int(value)
    except OSError:
        pass
    info["cpu"] = model
    if len(ids) == 2:  # the microarchitecture where a VM masks the model name ("AMD EPYC"): 23/1 is Zen 1
        info["cpu_family_model"] = f"{ids['cpu family']}/{ids['model']}"
    info["cpu_vector_features"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")) or f == "f16c")
    info["robustadder"] = __version__
    try:  # which kernel code measured it (the numbers of a committed file are read against a kernel that moves on)
        info["cpu_kernel"] = load_library().adder_build_variant().decode()
    except (RuntimeError, OSError) as exc:
        info["cpu_kernel"] = f"unavailable: {exc}"
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info["gpu"] = props.name
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:  # pragma: no cover - triton comes with CUDA builds of torch
            pass
    return info


def _op_fns(backend_name: str, x, w, g, stride, padding):
    """Callables for the three ops of one backend (``official`` is the official formula)."""
    if backend_name == "official":
        fwd, gin = _official_forward, _official_grad_input
    else:
        impl = get_backend(backend_name, x.device)
        fwd, gin = impl.forward, impl.grad_input
    return {
        "forward": lambda: fwd(x, w, stride, padding),
        "forward+grad_input(surrogate)": lambda: (
            fwd(x, w, stride, padding),
            gin(x, w, g, stride, padding, "surrogate"),
        ),
        "forward+grad_input(exact)": lambda: (fwd(x, w, stride, padding), gin(x, w, g, stride, padding, "exact")),
    }


def _conv_fns(x, w, g, stride, padding):
    xr = x.clone().requires_grad_()

    def fwd_bwd():
        y = F.conv2d(xr, w, stride=stride, padding=padding)
        return torch.autograd.grad(y, xr, g)

    return {op: (lambda: F.conv2d(x, w, stride=stride, padding=padding)) if op == "forward" else fwd_bwd for op in OPS}


def _layer_case(shape: LayerShape, batch_size: int, gen: torch.Generator, weight_scale: float, device: torch.device):
    """Random input, weights (``weight_scale`` × standard normal), output gradient and row label of a shape."""
    x = torch.rand(batch_size, shape.c, shape.h, shape.h, generator=gen).to(device)
    w = (weight_scale * torch.randn(shape.o, shape.c, shape.k, shape.k, generator=gen)).to(device)
    ho = (shape.h + 2 * shape.padding - shape.k) // shape.stride + 1
    g = torch.randn(batch_size, shape.o, ho, ho, generator=gen).to(device)
    return x, w, g, _shape_label(shape)


def _shape_label(shape: LayerShape) -> str:
    return f"{shape.name} {shape.c}x{shape.h}x{shape.h}->{shape.o} k{shape.k} s{shape.stride}"


def _cpu_op_rows(shape: LayerShape, x, w, g, repeats: int, prefix: str, **extra: str) -> list[dict]:
    """The cpu backend's three ops on one layer's tensors against ``F.conv2d``'s, timed alternately: a row per op.

    ``op`` is ``prefix`` and the op's name; ``extra`` columns follow it.
    """
    conv = _conv_fns(x, w, g, shape.stride, shape.padding)
    fns = _op_fns("cpu", x, w, g, shape.stride, shape.padding)
    rows = []
    for op in OPS:
        ms, conv_ms = _time_pair(fns[op], conv[op], torch.device("cpu"), repeats, 20.0)
        rows.append(
            {"layer": _shape_label(shape), "op": f"{prefix} {op}", **extra, "backend": "cpu", "ms": round(ms, 4),
             "conv_ms": round(conv_ms, 4), "ratio_to_conv": round(ms / conv_ms, 3), "peak_mib": None}
        )  # fmt: skip
    return rows


def kernel_rows(
    batch_size: int = 128,
    backends: tuple[str, ...] = ("cpu", "reference", "official"),
    device: str = "cpu",
    repeats: int = 9,
    slow_budget_s: float = 20.0,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Per-layer rows for every backend and op (see module docstring)."""
    dev = torch.device(device)
    reset, read = _peak_tracker(dev)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for shape in resnet20_layer_shapes():
        x, w, g, label = _layer_case(shape, batch_size, gen, 5.0, dev)
        conv = _conv_fns(x, w, g, shape.stride, shape.padding)
        for backend in backends:
            fns = _op_fns(backend, x, w, g, shape.stride, shape.padding)
            slow = backend in ("reference", "official")
            for op in OPS:
                if progress:
                    progress(f"{label} {backend} {op}")
                reset()
                fns[op]()
                peak = read()
                reps = 3 if slow else repeats
                with tf32(False):  # the baseline is a true FP32 convolution (no-op on the CPU)
                    ms, conv_ms = _time_pair(fns[op], conv[op], dev, reps, slow_budget_s)
                row = {
                    "layer": label,
                    "op": op,
                    "backend": backend,
                    "ms": round(ms, 4),
                    "conv_ms": round(conv_ms, 4),
                    "ratio_to_conv": round(ms / conv_ms, 3),
                    "peak_mib": round(peak, 1),
                }
                if dev.type == "cuda":
                    with tf32(True):  # the tensor-core ceiling, timed against the backend again
                        ms2, tf_ms = _time_pair(fns[op], conv[op], dev, reps, slow_budget_s)
                    row.update(conv_tf32_ms=round(tf_ms, 4), ratio_to_tf32=round(ms2 / tf_ms, 3))
                    if backend == "triton":
                        from .kernels import triton_adder

                        row["triton_config"] = triton_adder.chosen_config("grad_input" if "grad" in op else "forward")
                rows.append(row)
    return rows


def _deterministic_conv_fns(impl, x, w, g, stride, padding) -> dict[str, Callable[[], object]]:
    return {
        "forward": lambda: impl.conv_forward(x, w, stride, padding),
        "forward+grad_input": lambda: (
            impl.conv_forward(x, w, stride, padding),
            impl.conv_grad_input(x, w, g, stride, padding),
        ),
    }


def deterministic_conv_rows(batch_size: int = 128, repeats: int = 9) -> list[dict]:
    """The kernel library's multiplicative mode against ``F.conv2d`` on the ResNet-20 shapes.

    CPU evaluations run every convolution in that mode (deterministic convolutions): these rows say what
    the determinism costs, or saves, a CNN on this machine.
    """
    impl = get_backend("cpu", torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    rows = []
    for shape in resnet20_layer_shapes():
        x, w, g, label = _layer_case(shape, batch_size, gen, 1.0, torch.device("cpu"))
        conv = _conv_fns(x, w, g, shape.stride, shape.padding)  # every op but "forward" is its fwd + input grad
        ours = _deterministic_conv_fns(impl, x, w, g, shape.stride, shape.padding)
        for op, fn in ours.items():
            ms, conv_ms = _time_pair(fn, conv["forward" if op == "forward" else OPS[1]], torch.device("cpu"), repeats, 20.0)
            rows.append(
                {"layer": label, "op": f"deterministic conv {op}", "backend": "cpu", "ms": round(ms, 4),
                 "conv_ms": round(conv_ms, 4), "ratio_to_conv": round(ms / conv_ms, 3), "peak_mib": None}
            )  # fmt: skip
    return rows


def general_path_rows(batch_size: int = 128, repeats: int = 9) -> list[dict]:
    """The cpu backend's general paths (a sample with a negative input) against ``F.conv2d``.

    The per-layer rows above feed inputs in [0, 1], as ReLU outputs are: those samples take the kernel's
    sign-split paths. An adder layer that reads signed inputs (or one sample of a batch with a negative
    value) takes the general paths, which compute every term; these rows say what that costs.
    """
    gen = torch.Generator().manual_seed(0)
    rows = []
    for shape in resnet20_layer_shapes():
        x, w, g, _ = _layer_case(shape, batch_size, gen, 5.0, torch.device("cpu"))
        x[:, 0, 0, 0] = -x[:, 0, 0, 0] - 1e-3  # one negative input per sample
        rows += _cpu_op_rows(shape, x, w, g, repeats, "general path")
    return rows


def _test_images(n: int, data) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first ``n`` CIFAR-10 test images and labels, or random images (labels 0) where the data is not here."""
    from .data import load_cifar10
    from .errors import UserError

    try:
        x, y = load_cifar10("test", data).first(n).tensors()
        return x, y, "CIFAR-10 test images"
    except UserError:
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        return x, torch.zeros(n, dtype=torch.long), "random images"


def trained_layer_rows(batch_size: int = 128, repeats: int = 9, data=None) -> list[dict]:
    """The cpu backend against ``F.conv2d`` on the zoo's trained ``ann20``, layer by layer, as an attack step sees it.

    Its weights, the inputs its layers read and the output gradients an attack step back-propagates. The per-layer
    rows above feed uniform [0, 1] inputs and 5·N(0, 1) weights. The sign-split gradient folds every term whose
    weight lies above the largest input of a tile, and a trained layer's ReLU inputs reach further than 1 (in the
    zoo's ann20 the largest input of a 64-position tile has a median of 0.9-1.9 per layer, and a long tail), so a
    trained layer compares more terms than the synthetic case: these rows time what an attack on a trained model
    costs, layer by layer (the first layer of each distinct shape; the CIFAR-10 test images where present, else
    random images, said in ``weights``). Empty when the zoo's ``ann20`` is not on this machine.
    """
    from .models.zoo import load_zoo

    zoo = load_zoo()
    if "ann20" not in zoo or not zoo["ann20"].present():
        return []
    model = zoo["ann20"].load().model.eval()
    set_backend(model, "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    x, y, source = _test_images(batch_size, data)
    names = {m: n for n, m in model.named_modules()}
    cases: dict[tuple, list] = {}

    def capture(module: Adder2d, inputs, out) -> None:
        xi = inputs[0].detach()
        key = (xi.shape[1], xi.shape[2], module.out_channels, module.kernel_size, module.stride, module.padding)
        if key not in cases:
            cases[key] = [LayerShape(names[module], *key), xi.clone(), module.adder.detach().clone()]
            out.register_hook(lambda g: cases[key].append(g.detach().clone()) if len(cases[key]) == 3 else None)

    handles = [m.register_forward_hook(capture) for m in adder_layers(model)]
    xb = x.clone().requires_grad_()
    torch.autograd.grad(F.cross_entropy(model(xb), y), xb)
    for h in handles:
        h.remove()
    return [row for shape, xi, w, g in cases.values()
            for row in _cpu_op_rows(shape, xi, w, g, repeats, "trained layer", weights=f"zoo ann20 ({source})")]  # fmt: skip


def compile_rows() -> list[dict]:
    """First-use cost of the CPU kernel: a cold compile into an empty cache, then a cached load.

    Each runs in a fresh process (what a user's first and second command see).
    """
    code = (
        "from robustadder.kernels.cpu import load_library, BUILD_INFO;"
        "load_library(); print(BUILD_INFO['compiled'], 1000 * BUILD_INFO['seconds'])"
    )
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ROBUSTADDER_KERNEL_CACHE": cache}
        for op in ("compile(cold cache)", "load(cached)"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            compiled, ms = out.stdout.split()
            rows.append(
                {"layer": "cpu kernel library", "op": f"{op}, compiled={compiled}", "backend": "cpu",
                 "ms": round(float(ms), 1), "conv_ms": None, "ratio_to_conv": None, "peak_mib": None}
            )  # fmt: skip
    return rows


def end_to_end_rows(
    n_images: int = 1000, batch_size: int = 128, backend: str = "auto", device: str = "cpu", data=None, repeats: int = 9
) -> list[dict]:
    """Clean evaluation of ``n_images`` by ANN-20 vs CNN-20, and one attack step per adder gradient.

    The attack step is timed ``repeats`` times (median; the headline ratio, whose run-to-run spread was about ±5 %
    with 5), the clean evaluation a third as often (each pass is 1,000 images).

    Timed on two pairs of weights: untrained ones (every machine has them), and the zoo's trained ``ann20`` /
    ``cnn20`` where their files are present — the pair a user attacks. The weights matter on the CPU: which
    kernel path a layer takes (sign-split lists, or the general per-term path) depends on how the weights lie
    against the inputs, so an untrained network does not time what an attack on a trained one costs. The
    attack step (forward + input gradient, batch ``batch_size``, true labels when the data is there) is
    timed through the surrogate and the exact adder gradient, as ``grad=both`` attacks run both. Uses the
    CIFAR-10 test images when the data is available, random images otherwise.
    """
    from .models.zoo import load_zoo

    x, y, source = _test_images(n_images, data)
    dev = torch.device(device)
    x, y = x.to(dev), y[:batch_size].to(dev)
    pairs = {"untrained": {kind: create_model(f"resnet20_{kind}") for kind in ("adder", "conv")}}
    zoo = load_zoo()
    if all(name in zoo and zoo[name].present() for name in ("ann20", "cnn20")):
        pairs["zoo ann20 / cnn20"] = {"adder": zoo["ann20"].load().model, "conv": zoo["cnn20"].load().model}

    def clean(model: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for i in range(0, len(x), batch_size):
                    model(x[i : i + batch_size])

        return run

    def step(model: torch.nn.Module) -> Callable[[], None]:
        xb = x[:batch_size].clone().requires_grad_()

        def run() -> None:
            torch.autograd.grad(F.cross_entropy(model(xb), y), xb)

        return run

    rows = []
    for weights, models in pairs.items():
        for m in models.values():
            m.to(dev).eval()
            set_backend(m, backend)
            for p in m.parameters():
                p.requires_grad_(False)
        for op, make, reps, grad in (
            (f"clean eval, {len(x)} {source}", clean, max(3, repeats // 3), "surrogate"),
            (f"fwd+input grad(surrogate), batch {batch_size}", step, repeats, "surrogate"),
            (f"fwd+input grad(exact), batch {batch_size}", step, repeats, "exact"),
        ):
            set_grad_mode(models["adder"], grad)
            with tf32(False):
                ann, cnn = _time_pair(make(models["adder"]), make(models["conv"]), dev, reps, 120.0)
            row = {"layer": "resnet20 end-to-end", "op": op, "weights": weights,
                   "backend": get_backend(backend, dev).name, "ms": round(ann, 2), "conv_ms": round(cnn, 2),
                   "ratio_to_conv": round(ann / cnn, 3), "peak_mib": None}  # fmt: skip
            if dev.type == "cuda":
                with tf32(True):
                    ann2, cnn_tf = _time_pair(make(models["adder"]), make(models["conv"]), dev, reps, 120.0)
                row.update(conv_tf32_ms=round(cnn_tf, 2), ratio_to_tf32=round(ann2 / cnn_tf, 3))
            rows.append(row)
    return rows


def imagenet_rows(batch_size: int = 8, backend: str = "auto", device: str = "cpu", repeats: int = 3) -> list[dict]:
    """Forward of the ImageNet ResNet-50 AdderNet vs the conv ResNet-50 of the same shape (224×224, random).

    The architecture a researcher brings from the AdderNet paper's ImageNet table: 25.6 M parameters, every
    block and shortcut layer an adder. Untrained weights (speed does not depend on them).
    """
    dev = torch.device(device)
    x = torch.rand(batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(dev)
    models = {}
    for kind in ("adder", "conv"):
        m = create_model(f"resnet50_{kind}_imagenet").to(dev).eval()
        set_backend(m, backend)
        models[kind] = m

    def forward(kind: str) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                models[kind](x)

        return run

    with tf32(False):
        ann, cnn = _time_pair(forward("adder"), forward("conv"), dev, repeats, 300.0)
    return [{"layer": "resnet50 imagenet end-to-end", "op": f"forward, batch {batch_size}, 224x224",
             "backend": get_backend(backend, dev).name, "ms": round(ann, 2), "conv_ms": round(cnn, 2),
             "ratio_to_conv": round(ann / cnn, 3), "peak_mib": None}]  # fmt: skip


def compare_cost_rows(
    models: list[str],
    n: int = 100,
    eps: tuple[str, ...] = ("1/255", "8/255"),
    attacks: tuple[str, ...] | None = None,
    data=None,
    batch_size: int = 128,
    device: str = "cpu",
) -> list[dict]:
    """What ``robustadder compare`` costs: compute seconds per 100 images, per model and eps, measured.

    Runs the comparison into a fresh temporary store (nothing reused), so every number is this run's
    compute time of the cells (clean, each attack, both adder gradients where they apply).
    """
    from .comparison import DEFAULT_ATTACKS, compare

    with tempfile.TemporaryDirectory() as tmp:
        table = compare(
            models, eps=list(eps), attacks=list(attacks or DEFAULT_ATTACKS), n=n, data=data,
            store=os.path.join(tmp, "cost.sqlite"), batch_size=batch_size, device=device, progress=False,
        ).table  # fmt: skip
    return [
        {
            "model": r.model,
            "eps": r.eps_label,
            "n": int(r.n),
            "seconds": round(r.seconds, 1),
            "seconds_per_100_images": round(100 * r.seconds / r.n, 1),
            "robust_accuracy": round(r.robust_accuracy, 2),
            "attacks": list(attacks or DEFAULT_ATTACKS),
        }  # fmt: skip
        for r in table.itertuples()
    ]


def minimal_cost_rows(
    model: str = "ann20",
    n: int = 100,
    eps: str = "1/255",
    minimal: str = "fmn",
    reference: str = "autoattack",
    data=None,
    batch_size: int = 128,
    device: str = "cpu",
) -> list[dict]:
    """What a minimal-perturbation run costs beside the fixed-eps cells it replaces as the headline, measured.

    The class-level protocol reads the robustness curve from one minimal attack per model instead of an
    AutoAttack cell per eps; this is worth it only if the minimal attack is much cheaper. Both run here on the
    same first ``n`` images through both adder gradients (``grad=both``, as ``compare`` runs them), into a fresh
    store, one after the other; a row per attack (compute seconds of its cells, the clean cell excluded, and the
    robust accuracy it gives at ``eps``) and a last row with the ratio measured in this run.
    """
    from .api import evaluate, resolve_attacks
    from .errors import UserError

    configs = resolve_attacks([minimal, reference], eps=eps)  # before any work: one line for a bad choice
    if not configs[0].definition.minimal:
        raise UserError(f"--minimal {minimal} is not a minimal-perturbation attack (fmn is)")
    if configs[1].definition.minimal or configs[1].name == "none":
        raise UserError(f"--reference {reference} must be a fixed-eps attack (e.g. autoattack, pgd)")
    rows, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "cost.sqlite")
        for config in configs:  # eps: the minimal cell is read at it; the reference's config already has it
            result = evaluate(model, config, eps=eps, n=n, data=data, store=store, batch_size=batch_size, device=device,
                              grad="both", progress=False)  # fmt: skip
            (s,) = result.summary
            seconds.append(s["seconds"])
            rows.append({"model": result.model, "attack": s["attack"], "eps": eps, "n": len(result.clean),
                         "grad": s["grad"], "seconds": round(s["seconds"], 3),
                         "seconds_per_100_images": round(100 * s["seconds"] / len(result.clean), 1),
                         "robust_accuracy": round(s["robust_accuracy"], 2)})  # fmt: skip
    first, second = rows
    rows.append({"model": first["model"], "attack": f"{first['attack']} / {second['attack']}", "eps": eps,
                 "n": first["n"], "ratio": round(seconds[0] / seconds[1], 3) if seconds[1] else None})  # fmt: skip
    return rows


def training_rows(
    depths: tuple[int, ...] = (20, 32), batch_size: int = 256, repeats: int = 5, train_images: int = 50000
) -> list[dict]:
    """A training step of the zoo's recipe, AdderNet vs CNN of each depth, timed alternately in this run.

    The step is :func:`robustadder.train.train_step` on models built by :func:`robustadder.train.build_training`
    (η, the surrogate gradient, SGD with momentum and weight decay): forward, backward with the weight gradients and
    the update, at the recipe's batch size on random images (the time does not depend on the pixels). Seconds per
    epoch are the step's median times the steps of an epoch of ``train_images``; the augmentation and the epoch's
    test pass, a few percent of a real epoch, are left out.
    """
    import math

    from .train import TrainConfig, build_training, train_step

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch_size,), generator=gen)
    steps = math.ceil(train_images / batch_size)
    rows = []
    for depth in depths:
        ann, cnn = (functools.partial(train_step, *build_training(TrainConfig(f"resnet{depth}", kind)), x, y)
                    for kind in ("adder", "conv"))  # fmt: skip
        ann_ms, cnn_ms = _time_pair(ann, cnn, torch.device("cpu"), repeats, 600.0)
        rows.append({"layer": f"resnet{depth} training", "op": f"train step (fwd+bwd+SGD), batch {batch_size}",
                     "backend": get_backend("auto", torch.device("cpu")).name, "ms": round(ann_ms, 1),
                     "conv_ms": round(cnn_ms, 1), "ratio_to_conv": round(ann_ms / cnn_ms, 3), "peak_mib": None,
                     "seconds_per_epoch": round(ann_ms * steps / 1000, 1),
                     "conv_seconds_per_epoch": round(cnn_ms * steps / 1000, 1)})  # fmt: skip
    return rows
