"""Fast backends (cpu, triton) against the reference: forward, both input-gradient modes, weight gradient."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustadder.errors import UserError
from robustadder.kernels import ReferenceBackend, backend_names, get_backend
from robustadder.kernels.cpu import BUILD_INFO, load_library
from robustadder.nn import adder2d

# batch 1 and odd sizes, stride 1/2, padding 0/1, 1x1 and 3x3, channels not multiples of 8
SHAPES = [  # (N, C, H, W, O, k, stride, padding)
    (1, 3, 7, 6, 5, 3, 1, 1),
    (3, 5, 9, 9, 7, 3, 2, 1),
    (2, 6, 8, 5, 11, 3, 1, 0),
    (1, 7, 9, 7, 9, 1, 2, 0),
    (5, 3, 6, 6, 17, 1, 1, 0),
    (2, 4, 11, 11, 3, 3, 2, 0),
    (3, 2, 33, 33, 4, 3, 1, 1),  # more positions than one tile per row; rows straddle tiles
    # stride 1 with output rows a multiple of the vector length (8 floats / 4 doubles on AVX2): tiles read in
    # place from the padded sample, then a partial last tile gathered (5 x 8 = 40 positions)
    (2, 3, 5, 8, 6, 3, 1, 1),
    (2, 3, 10, 10, 9, 3, 1, 0),  # the same without padding; O not a multiple of the filter block
    (1, 2, 4, 16, 5, 1, 1, 0),  # 1x1 kernel, 16-wide rows
]
# the interpreter is slow: tiny shapes, still batch 1 / odd, stride 1/2, padding 0/1, 1x1 and 3x3
TRITON_SHAPES = [(1, 3, 7, 6, 5, 3, 1, 1), (2, 3, 7, 7, 5, 3, 2, 1), (2, 3, 6, 5, 5, 3, 1, 0), (1, 7, 9, 7, 9, 1, 2, 0)]
HAS_TRITON = importlib.util.find_spec("triton") is not None
REF = ReferenceBackend()


def _case(shape, dtype, seed=0, scale=0.5):
    n, c, h, w, o, k, s, p = shape
    gen = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    wt = scale * torch.randn(o, c, k, k, generator=gen, dtype=dtype)
    return x, wt, s, p


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}


def _agree(backend, shape, dtype, make=None):
    """Forward, both input gradients and the weight gradient of a backend (a name or an instance) against the
    reference on the case ``make`` builds (default: signed inputs and weights)."""
    backend = get_backend(backend) if isinstance(backend, str) else backend
    x, w, s, p = (make or _case)(shape, dtype)
    y = backend.forward(x, w, s, p)
    torch.testing.assert_close(y, REF.forward(x, w, s, p), **_tol(dtype))
    g = torch.randn(y.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    for mode in ("surrogate", "exact"):
        torch.testing.assert_close(backend.grad_input(x, w, g, s, p, mode), REF.grad_input(x, w, g, s, p, mode), **_tol(dtype))
    # the weight gradient through the layer (adaptive scaling off) against the reference's direct formula
    ww = w.clone().requires_grad_()
    adder2d(x, ww, s, p, eta=None, backend=backend).backward(g)
    torch.testing.assert_close(ww.grad, REF.grad_weight(x, w, g, s, p), **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_backend_agrees_with_reference(shape, dtype):
    _agree("cpu", shape, dtype)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("shape", TRITON_SHAPES)
def test_triton_backend_agrees_with_reference(shape):
    _agree("triton", shape, torch.float64)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_float32_and_gradcheck():
    _agree("triton", TRITON_SHAPES[1], torch.float32)
    x, w, s, p = _case((1, 1, 3, 3, 2, 3, 1, 1), torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: adder2d(t, w, s, p, grad_mode="exact", backend="triton"), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_exact_gradient_is_zero_where_input_equals_weight(dtype):
    """sign(0) = 0: inputs exactly equal to a weight (zeros from ReLU and padding against zero weights, and
    copied values) contribute nothing, as in the reference, on the in-place and the gathered tile paths."""
    cpu = get_backend("cpu")
    for shape in [(2, 3, 5, 8, 6, 3, 1, 1), (2, 3, 7, 7, 5, 3, 2, 1)]:
        x, w, s, p = _case(shape, dtype)
        w[:, :, 1, 1] = 0.0
        w[0, 0] = x[0, 0, :3, :3]  # ties at many positions of sample 0
        x = torch.relu(x)
        g = torch.randn(cpu.forward(x, w, s, p).shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(cpu.grad_input(x, w, g, s, p, "exact"), REF.grad_input(x, w, g, s, p, "exact"),
                                   **_tol(dtype))  # fmt: skip


# Layers whose samples with every input >= 0 take the kernel's sign-split paths (O k^2 / s^2 >= 32): wide tiles
# read in place (output rows a multiple of the vector length, through the stride phases for strides 2 and 3; other
# rows through column-shifted copies), partial wide tiles gathered, a 1x1 kernel; channels and filters off the blocks.
SPLIT_SHAPES = [  # (N, C, H, W, O, k, stride, padding)
    (2, 3, 8, 8, 36, 3, 1, 1),  # 8-wide output rows: full wide tiles (64 float / 32 double positions), shifted on AVX-512
    (2, 5, 10, 16, 33, 3, 1, 1),  # 160 positions: full wide tiles, then a partial one
    (2, 4, 9, 9, 40, 3, 1, 1),  # 9-wide rows: one full tile from the shifted copies, a partial one gathered
    (3, 3, 16, 16, 20, 3, 2, 1),  # stride 2, 8-wide rows: through the stride phases (shifted copies on AVX-512)
    (2, 3, 11, 11, 17, 3, 2, 0),  # stride 2, 5-wide rows: shifted copies, the partial tile gathered
    (2, 2, 24, 24, 64, 3, 3, 1),  # stride 3, 8-wide rows: nine phases
    (2, 3, 17, 17, 20, 3, 2, 0),  # stride 2 without padding, 8-wide rows
    (1, 4, 16, 16, 128, 1, 2, 0),  # 1x1, stride 2: one of four phases read, the others' inputs get no gradient
    (2, 6, 8, 8, 40, 1, 1, 0),  # 1x1
]


def _nonnegative_case(shape, dtype, seed=0):
    """ReLU-like inputs (about half exact zeros) with weights on both sides of 0 and -1, exact zero weights,
    positive weights equal to inputs (exact-gradient ties), and one sample of the batch with a negative input."""
    n, c, h, w, o, k, s, p = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, c, h, w, generator=gen, dtype=dtype))
    wt = 5 * torch.randn(o, c, k, k, generator=gen, dtype=dtype)  # lists of ~45 % (forward) to ~65 % of the weights
    wt.view(-1)[::11] = 0.0
    wt[1, 0] = x[0, 0, :k, :k] + 0.25  # positive weights ...
    x[0, 0, k : 2 * k, :k] = wt[1, 0]  # ... that inputs of sample 0 equal
    x[-1, -1, -1, -1] = -0.5  # the last sample takes the general path
    return x, wt, s, p


@pytest.mark.parametrize("shape", SPLIT_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_sign_split_paths_agree_with_reference(shape, dtype):
    """Samples with inputs >= 0 skip the terms their signs decide (forward: weights <= 0; exact gradient: weights
    < 0; surrogate: weights <= -1); the results are the reference's, ties included, beside a general sample."""
    _agree("cpu", shape, dtype, make=_nonnegative_case)


def test_cpu_sign_split_results_independent_of_threads_and_batch():
    """A sample's path is chosen by its own inputs: alone, in another batch or with one thread, the same bits."""
    cpu = get_backend("cpu")
    for shape in (SPLIT_SHAPES[1], SPLIT_SHAPES[3]):
        x, w, s, p = _nonnegative_case(shape, torch.float32)
        g = torch.randn(cpu.forward(x, w, s, p).shape, generator=torch.Generator().manual_seed(1))

        def run(xs, gs, w=w, s=s, p=p):
            return [cpu.forward(xs, w, s, p)] + [cpu.grad_input(xs, w, gs, s, p, m) for m in ("surrogate", "exact")]

        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = run(x, g)
        finally:
            torch.set_num_threads(threads)
        both = run(x, g)
        alone = [run(x[i : i + 1], g[i : i + 1]) for i in range(len(x))]
        for a, b in zip(one, both, strict=True):
            assert torch.equal(a, b)
        for i, parts in enumerate(alone):
            for a, b in zip(parts, both, strict=True):
                assert torch.equal(a[0], b[i])


def _forward_in_k_order(x, w, s, p, split):
    """The kernel's forward by its definition, summed in its order: for each output, 2 sum_k min(x, w) - (sum_k x +
    sum_k w) with every sum taken in the order of k = (c, i, j) in the input's dtype; the sign-split path (x >= 0)
    sums min(x, w) over the positive weights only and |w| instead of w (adding the skipped terms' +0 to a sum >= 0
    changes no bit, so both sums run over every k here)."""
    n, _, _, _ = x.shape
    o = w.shape[0]
    cols = torch.nn.functional.unfold(x, w.shape[2:], padding=p, stride=s)  # (N, K, L), k in (c, i, j) order
    wk = w.reshape(o, -1)
    a = torch.zeros(n, o, cols.shape[2], dtype=x.dtype)
    sx = torch.zeros(n, 1, cols.shape[2], dtype=x.dtype)
    sw = torch.zeros(o, 1, dtype=x.dtype)
    for k in range(wk.shape[1]):
        xk, wcol = cols[:, k : k + 1, :], wk[:, k : k + 1]
        a = a + (torch.minimum(xk, torch.clamp(wcol, min=0.0)) if split else torch.minimum(xk, wcol))
        sx = sx + xk
        sw = sw + (wcol.abs() if split else wcol)
    return (a + a) - (sx + sw)


@pytest.mark.parametrize("march", ["native", "x86-64", "haswell", "skylake-avx512"])
def test_cpu_forward_is_the_same_bits_on_every_layout_and_build(march):
    """Which layout a tile is read from (in place, stride phases, column-shifted copies, gathered) and which vector
    build runs must not move a bit of the forward: stored per-sample results depend on it (a change would need an
    engine version). Checked against the sum in k order, general and sign-split samples, float32 and float64."""
    from robustadder.kernels.cpu import CpuBackend

    if march != "native" and not _cpu_runs(march):
        pytest.skip(f"this CPU cannot run code built for {march}")
    backend = CpuBackend(None if march == "native" else march)
    shapes = SPLIT_SHAPES + [(2, 16, 8, 8, 32, 3, 1, 1), (2, 8, 16, 16, 32, 3, 2, 1), (1, 4, 7, 7, 40, 3, 1, 1),
                             (1, 64, 24, 24, 40, 3, 1, 1)]  # 24-wide rows whose shifted copies would be too large: gathered
    for shape in shapes:
        for dtype in (torch.float32, torch.float64):
            x, w, s, p = _nonnegative_case(shape, dtype)  # its last sample has a negative input: the general path
            y = backend.forward(x, w, s, p)
            split = _forward_in_k_order(x[:-1], w, s, p, split=True).reshape(y[:-1].shape)
            general = _forward_in_k_order(x[-1:], w, s, p, split=False).reshape(y[-1:].shape)
            assert torch.equal(y[:-1], split), (shape, dtype)
            assert torch.equal(y[-1:], general), (shape, dtype)


def test_cpu_exact_mode_passes_gradcheck():
    x, w, s, p = _case((2, 3, 5, 5, 4, 3, 2, 1), torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: adder2d(t, w, s, p, grad_mode="exact", backend="cpu"), (x,))


def test_resnet_layer_shapes_agree_at_realistic_scale():
    """ResNet-20 stage shapes with trained-like magnitudes (weights std 5, post-ReLU inputs)."""
    cpu = get_backend("cpu")
    gen = torch.Generator().manual_seed(0)
    for c, h, o, k, s, p in [(16, 32, 16, 3, 1, 1), (16, 32, 32, 1, 2, 0), (32, 16, 64, 3, 2, 1), (64, 8, 64, 3, 1, 1)]:
        x = torch.relu(torch.randn(4, c, h, h, generator=gen))
        w = 5 * torch.randn(o, c, k, k, generator=gen)
        y = cpu.forward(x, w, s, p)
        ref = REF.forward(x.double(), w.double(), s, p)
        # float32 summation of up to 576 terms of magnitude ~5: relative error well under 1e-5
        assert (y.double() - ref).abs().max() / ref.abs().max() < 1e-5
        g = torch.randn(y.shape, generator=gen)
        for mode in ("surrogate", "exact"):
            torch.testing.assert_close(
                cpu.grad_input(x, w, g, s, p, mode), REF.grad_input(x, w, g, s, p, mode), rtol=1e-4, atol=1e-4
            )


def test_cpu_results_independent_of_threads_and_batch():
    cpu = get_backend("cpu")
    x, w, s, p = _case((6, 5, 12, 12, 9, 3, 1, 1), torch.float32)
    g = torch.randn(6, 9, 12, 12)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, d1 = cpu.forward(x, w, s, p), cpu.grad_input(x, w, g, s, p, "surrogate")
    finally:
        torch.set_num_threads(threads)
    y2, d2 = cpu.forward(x, w, s, p), cpu.grad_input(x, w, g, s, p, "surrogate")
    assert torch.equal(y1, y2) and torch.equal(d1, d2)
    # a sample's result does not depend on which other samples share its batch
    y3, d3 = cpu.forward(x[2:3], w, s, p), cpu.grad_input(x[2:3], w, g[2:3], s, p, "surrogate")
    assert torch.equal(y3, y2[2:3]) and torch.equal(d3, d2[2:3])


def test_kernel_library_is_cached_across_processes(kernel_cache):
    load_library()
    assert list(kernel_cache.glob("adder_cpu-*.so")) and BUILD_INFO["seconds"] >= 0
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from robustadder.kernels.cpu import load_library, BUILD_INFO;"
         "load_library(); print(BUILD_INFO['compiled'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "False"  # the second process loads, it does not compile


def test_backend_selection():
    assert backend_names()[:1] == ("auto",) and {"reference", "cpu", "triton"} <= set(backend_names())
    assert get_backend("auto", "cpu").name == "cpu"
    assert get_backend("reference").name == "reference"


def test_triton_refused_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="cannot run on cpu"):
        get_backend("triton", "cpu")


def test_eval_uses_fast_backend_with_reference_accuracy(shared_data, thirdparty):
    from robustadder import evaluate

    fast = evaluate(str(thirdparty), n=128, data=shared_data, progress=False)
    ref = evaluate(str(thirdparty), n=128, data=shared_data, backend="reference", progress=False)
    np.testing.assert_array_equal(fast["clean_pred"], ref["clean_pred"])
    assert fast.attrs["backend"] == "cpu" and ref.attrs["backend"] == "reference"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise(given, expected):
    """Spinning OpenMP threads slow every other job on a shared CPU (3x measured); the user's setting wins."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, robustadder, torch; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def _cpu_runs(march: str) -> bool:
    """Whether this machine's CPU executes code built for ``march`` (AVX2 paths need AVX2 + FMA)."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    needs = {"haswell": ("avx2", "fma"), "skylake-avx512": ("avx512f", "avx512dq"), "x86-64": ()}[march]
    return all(f" {flag}" in flags for flag in needs)


@pytest.mark.parametrize("march", ["x86-64", "haswell", "skylake-avx512"])
def test_every_vector_code_path_agrees_with_reference(march):
    """SSE (16-byte), AVX2 (32-byte) and AVX-512 (64-byte) builds of the kernel, whichever this CPU runs: the general
    and the sign-split paths."""
    from robustadder.kernels.cpu import CpuBackend

    if not _cpu_runs(march):
        pytest.skip(f"this CPU cannot run code built for {march}")
    backend = CpuBackend(march)
    ok, why = backend.available(torch.device("cpu"))
    if not ok:
        pytest.skip(why)
    cases = [(_case, shape) for shape in SHAPES] + [(_nonnegative_case, shape) for shape in SPLIT_SHAPES]
    for make, shape in cases:
        for dtype in (torch.float32, torch.float64):
            _agree(backend, shape, dtype, make)
            x, w, s, p = make(shape, dtype)  # and the multiplicative mode on the same case
            g = torch.randn(REF.forward(x, w, s, p).shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
            torch.testing.assert_close(backend.conv_forward(x, w, s, p), torch.nn.functional.conv2d(x, w, stride=s, padding=p),
                                       **_tol(dtype))  # fmt: skip
            xr = x.clone().requires_grad_()
            (gx,) = torch.autograd.grad(torch.nn.functional.conv2d(xr, w, stride=s, padding=p), xr, g)
            torch.testing.assert_close(backend.conv_grad_input(x, w, g, s, p), gx, **_tol(dtype))


def test_a_damaged_cached_library_is_rebuilt_not_loaded(kernel_cache, tmp_path, monkeypatch):
    """A library cut short in the cache killed every command with SIGBUS; now it is verified and rebuilt
    (cut in half, empty, random bytes)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBUSTADDER_KERNEL_CACHE", str(cache))
    code = ("from robustadder.kernels.cpu import load_library, BUILD_INFO; import torch;"
            "from robustadder.kernels import get_backend;"
            "b = get_backend('cpu'); y = b.forward(torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 1, 1), 1, 0);"
            "print(BUILD_INFO['compiled'], float(y.sum()))")  # fmt: skip
    env = {**os.environ, "ROBUSTADDER_KERNEL_CACHE": str(cache)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "-9.0"]
    (lib,) = cache.glob("adder_cpu-*.so")
    for damage in (lambda b: b[: len(b) // 2], lambda b: b"", lambda b: os.urandom(len(b))):
        lib.write_bytes(damage(lib.read_bytes()))
        again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr[-500:]
        assert again.stdout.split() == ["True", "-9.0"]  # rebuilt, then correct


def test_models_give_the_same_rows_for_any_thread_count_and_batch_size():
    """Per-sample logits and input gradients are bit-identical with 1 or 2 threads and in batches of
    3 or 12, for the CNN (deterministic convolutions) and the AdderNet (adder kernel + conv stem/head)."""
    import torch.nn.functional as F

    from robustadder.engine import Settings, prepare
    from robustadder.models import create_model
    from robustadder.models.checkpoint import LoadedModel

    torch.manual_seed(0)
    x, y = torch.rand(12, 3, 32, 32), torch.randint(0, 10, (12,))
    threads = torch.get_num_threads()
    for kind in ("conv", "adder"):
        net = create_model(f"resnet20_{kind}")
        model = prepare(LoadedModel(net, kind, net.spec, "0" * 64, "memory"), Settings())
        results = []
        try:
            for nt, bs in ((1, 12), (2, 12), (2, 3), (1, 3)):
                torch.set_num_threads(nt)
                outs, grads = [], []
                for i in range(0, 12, bs):
                    xr = x[i : i + bs].clone().requires_grad_()
                    out = model(xr)
                    (g,) = torch.autograd.grad(F.cross_entropy(out, y[i : i + bs], reduction="sum"), xr)
                    outs.append(out.detach())
                    grads.append(g)
                results.append((torch.cat(outs), torch.cat(grads)))
        finally:
            torch.set_num_threads(threads)
        for out, grad in results[1:]:
            assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1]), kind


def test_gpu_evaluations_switch_off_tf32_and_timing_based_algorithms():
    """The switch is plain torch flags, settable (and so testable) without a GPU."""
    from robustadder.engine import exact_cuda_arithmetic

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)  # fmt: skip
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = True
        exact_cuda_arithmetic()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic,
         torch.backends.cudnn.benchmark) = saved  # fmt: skip


def test_benchmark_records_the_machine_it_ran_on():
    from robustadder.bench import machine_info

    info = machine_info("cpu")
    assert info["cpu"] and info["torch"] == torch.__version__
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx2" in flags:
        assert "avx2" in info["cpu_vector_features"]
    assert ("avx512f" in info["cpu_vector_features"]) == (" avx512f" in flags)
    family = re.search(r"^cpu family\s*:\s*(\d+)", flags, re.M)
    model = re.search(r"^model\s*:\s*(\d+)", flags, re.M)
    if family and model:  # x86 Linux: the microarchitecture, which a VM's masked model name hides
        assert info["cpu_family_model"] == f"{family[1]}/{model[1]}"
    # and the kernel code that measured it: the build's vector width and the design of its paths
    assert info["cpu_kernel"] == load_library().adder_build_variant().decode()
    assert f"vector_bytes={64 if ' avx512f' in flags else 32 if ' avx2' in flags else 16}" in info["cpu_kernel"]


def _assert_timed_against_conv(rows: list[dict]) -> None:
    """Both times measured, and the ratio theirs: of the unrounded times, itself rounded to 3 decimals (so a tiny
    ratio, e.g. on a busy machine, differs from the rounded times' by up to 5e-4)."""
    for r in rows:
        ratio = pytest.approx(r["ms"] / r["conv_ms"], rel=0.02, abs=5e-4)
        assert r["ms"] > 0 and r["conv_ms"] > 0 and r["ratio_to_conv"] == ratio


def test_benchmark_times_the_general_paths_on_inputs_with_a_negative_value(monkeypatch):
    """The per-layer inputs are >= 0 (the sign-split paths); the general-path rows feed each sample a negative value."""
    import robustadder.bench as bench

    seen = []
    real = bench._op_fns
    monkeypatch.setattr(bench, "_op_fns", lambda name, x, *rest: seen.append(x) or real(name, x, *rest))
    rows = bench.general_path_rows(batch_size=2, repeats=1)
    assert len(rows) == len(bench.OPS) * len(bench.resnet20_layer_shapes())
    assert {r["op"] for r in rows} == {f"general path {op}" for op in bench.OPS}
    assert seen and all(bool((x.flatten(1).min(dim=1).values < 0).all()) for x in seen)
    _assert_timed_against_conv(rows)


def test_benchmark_times_the_deterministic_convolutions_against_conv2d():
    from robustadder.bench import deterministic_conv_rows, resnet20_layer_shapes

    rows = deterministic_conv_rows(batch_size=2, repeats=1)
    assert len(rows) == 2 * len(resnet20_layer_shapes())
    assert {r["op"] for r in rows} == {"deterministic conv forward", "deterministic conv forward+grad_input"}
    _assert_timed_against_conv(rows)


def test_benchmark_times_the_attack_step_of_the_trained_zoo_pair_through_both_gradients(monkeypatch):
    """The kernel's path depends on the weights: the end-to-end rows time the zoo's trained pair, not only untrained
    weights, and the attack step through each adder gradient (a grad=both attack runs both)."""
    import robustadder.bench as bench
    from robustadder.nn import adder_layers

    untrained, modes, timed = [], [], []
    real_create = bench.create_model
    monkeypatch.setattr(bench, "create_model", lambda name: untrained.append(real_create(name)) or untrained[-1])

    def fake_pair(fn, base, device, repeats, budget_s):  # each op once; the adder gradient it ran with
        fn(), base()
        modes.append({layer.grad_mode for m in untrained for layer in adder_layers(m)})
        timed.append(repeats)
        return 2.0, 1.0

    monkeypatch.setattr(bench, "_time_pair", fake_pair)
    rows = bench.end_to_end_rows(n_images=4, batch_size=2, backend="cpu", repeats=11)
    assert timed == [3, 11, 11] * 2  # the headline attack step as often as asked, a clean pass of 1,000 images a third
    assert [r["weights"] for r in rows] == ["untrained"] * 3 + ["zoo ann20 / cnn20"] * 3  # the zoo's files are committed
    assert [r["op"].split(",")[0] for r in rows] == ["clean eval", "fwd+input grad(surrogate)", "fwd+input grad(exact)"] * 2
    assert all(r["op"].startswith("clean eval, 4 ") or r["op"].endswith("batch 2") for r in rows)
    assert modes[1:3] == [{"surrogate"}, {"exact"}]
    assert all(r["ratio_to_conv"] == 2.0 for r in rows)


def test_benchmark_times_the_trained_layers_on_the_inputs_and_gradients_of_an_attack_step(monkeypatch):
    """The sign-split paths fold more terms on uniform [0, 1] inputs than on a trained layer's ReLU outputs: the
    trained-layer rows time the zoo's ann20 on its own weights, layer inputs and back-propagated output gradients."""
    import robustadder.bench as bench
    from robustadder.models.zoo import load_zoo
    from robustadder.nn import adder_layers

    seen = []
    real = bench._op_fns
    monkeypatch.setattr(bench, "_op_fns", lambda name, x, w, g, *rest: seen.append((x, w, g)) or real(name, x, w, g, *rest))
    rows = bench.trained_layer_rows(batch_size=2, repeats=1)
    shapes = bench.resnet20_layer_shapes()
    assert len(rows) == len(bench.OPS) * len(shapes)  # the zoo's files are committed
    assert {r["op"] for r in rows} == {f"trained layer {op}" for op in bench.OPS}
    assert all(r["weights"].startswith("zoo ann20 (") for r in rows)
    trained = [layer.adder.detach() for layer in adder_layers(load_zoo()["ann20"].load().model)]
    for (x, w, g), shape in zip(seen, shapes, strict=True):
        assert any(torch.equal(w, t) for t in trained)  # the trained weights, not random ones
        assert x.shape[1:] == (shape.c, shape.h, shape.h) and bool((x >= 0).all()) and bool((x == 0).any())  # ReLU outputs
        assert g.shape[1] == shape.o and g.abs().sum() > 0  # a back-propagated output gradient
    _assert_timed_against_conv(rows)
