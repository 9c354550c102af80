"""The GPU path on a real CUDA device: Triton kernels against the float64 reference, gradcheck, and
evaluations end to end (device placement of models, data, attacks and the reference AutoAttack).

Every test here skips on a machine without CUDA (CI has none); the kernels' logic is covered there by
the interpreter tests in ``test_kernels.py``. Run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustadder.bench import resnet20_layer_shapes
from robustadder.kernels import ReferenceBackend, get_backend
from robustadder.nn import adder2d

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
REF = ReferenceBackend()


def _random_shapes(count: int, seed: int) -> list[tuple]:
    """Fresh random layer geometries: odd sizes, batch 1, channels not multiples of 8, 1x1 and 3x3."""
    rng = np.random.default_rng(seed)
    shapes = []
    while len(shapes) < count:
        k = int(rng.choice([1, 3, 5]))
        s, p = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        h, w = int(rng.integers(k, 20)), int(rng.integers(k, 20))
        shapes.append((int(rng.integers(1, 6)), int(rng.integers(1, 40)), h, w, int(rng.integers(1, 70)), k, s, p))
    return shapes


def _relerr(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double().cpu() - ref).norm() / ref.norm().clamp(min=1e-300))


def _check(shape, dtype, seed, realistic=False):
    """Forward, both input-gradient modes and the weight gradient on CUDA vs the float64 CPU reference."""
    n, c, h, w, o, k, s, p = shape
    gen = torch.Generator().manual_seed(seed)
    if realistic:  # trained-like magnitudes: post-ReLU activations, weights of std 5
        x64 = torch.relu(torch.randn(n, c, h, w, generator=gen, dtype=torch.float64))
        w64 = 5 * torch.randn(o, c, k, k, generator=gen, dtype=torch.float64)
    else:
        x64 = 0.5 * torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
        w64 = 0.5 * torch.randn(o, c, k, k, generator=gen, dtype=torch.float64)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    g64 = torch.randn(n, o, ho, wo, generator=gen, dtype=torch.float64)
    # the reference of the float32 case is the float64 formula on the float32-rounded inputs
    x64, w64, g64 = (t.to(dtype).double() for t in (x64, w64, g64))
    tri = get_backend("triton", "cuda")
    x, wt, g = (t.to("cuda", dtype) for t in (x64, w64, g64))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    y = tri.forward(x, wt, s, p)
    assert torch.isfinite(y).all()
    assert _relerr(y, REF.forward(x64, w64, s, p)) < tol, f"forward {shape}"
    for mode in ("surrogate", "exact"):
        dx = tri.grad_input(x, wt, g, s, p, mode)
        ref = REF.grad_input(x64, w64, g64, s, p, mode)
        assert _relerr(dx, ref) < tol * 10, f"grad_input {mode} {shape}"
    ww = wt.clone().requires_grad_()
    adder2d(x, ww, s, p, eta=None, backend=tri).backward(g)
    assert _relerr(ww.grad, REF.grad_weight(x64, w64, g64, s, p)) < tol * 10, f"grad_weight {shape}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_resnet20_layer_shape_agrees_with_the_reference(dtype):
    with torch.backends.cudnn.flags(allow_tf32=False):  # the weight gradient goes through cuDNN
        for shape in resnet20_layer_shapes():
            _check((8, shape.c, shape.h, shape.h, shape.o, shape.k, shape.stride, shape.padding), dtype, 0, realistic=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_shapes_agree_with_the_reference(dtype):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())  # fresh geometry and values every run, printed on failure
    with torch.backends.cudnn.flags(allow_tf32=False):
        for i, shape in enumerate(_random_shapes(24, seed)):
            try:
                _check(shape, dtype, seed + i)
            except AssertionError as err:
                raise AssertionError(f"seed {seed}: {err}") from None


def test_every_output_element_is_written():
    """Outputs come from torch.empty: poisoned memory must never survive into a result."""
    tri = get_backend("triton", "cuda")
    x, w = torch.rand(3, 5, 9, 9, device="cuda"), torch.rand(7, 5, 3, 3, device="cuda")
    for _ in range(3):  # the caching allocator hands back the poisoned block
        torch.full((3, 7, 5, 5), float("nan"), device="cuda")
        del _
        y = tri.forward(x, w, 2, 1)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("mode", ["exact", "surrogate"])
def test_gradcheck_on_cuda(mode):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    w = torch.rand(4, 3, 3, 3, generator=gen, dtype=torch.float64).cuda()
    if mode == "exact":  # the true subgradient: gradcheck against finite differences
        assert torch.autograd.gradcheck(lambda t: adder2d(t, w, 2, 1, grad_mode="exact", backend="triton"), (x,))
    else:  # the surrogate is not the derivative of the forward; it must equal the reference backend's
        g = torch.randn(2, 4, 3, 3, dtype=torch.float64, device="cuda")
        (dx,) = torch.autograd.grad(adder2d(x, w, 2, 1, grad_mode=mode, backend="triton"), x, g)
        ref = REF.grad_input(x.detach().cpu(), w.cpu(), g.cpu(), 2, 1, mode)
        torch.testing.assert_close(dx.cpu(), ref, rtol=1e-12, atol=1e-12)


def test_kernels_are_deterministic_on_cuda():
    tri = get_backend("triton", "cuda")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(16, 32, 16, 16, generator=gen).cuda()
    w = torch.randn(64, 32, 3, 3, generator=gen).cuda()
    g = torch.randn(16, 64, 8, 8, generator=gen).cuda()
    a = (tri.forward(x, w, 2, 1), tri.grad_input(x, w, g, 2, 1, "exact"), tri.grad_input(x, w, g, 2, 1, "surrogate"))
    b = (tri.forward(x, w, 2, 1), tri.grad_input(x, w, g, 2, 1, "exact"), tri.grad_input(x, w, g, 2, 1, "surrogate"))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # a sample's result does not depend on the others in its batch
    assert torch.equal(tri.forward(x[3:4], w, 2, 1), a[0][3:4])
    assert torch.equal(tri.grad_input(x[3:4], w, g[3:4], 2, 1, "exact"), a[1][3:4])


def test_resnet20_on_gpu_matches_the_cpu():
    """A whole AdderNet on the GPU gives the CPU's logits (float64: up to rounding; float32: predictions)."""
    from robustadder.models import create_model
    from robustadder.nn import set_backend

    torch.manual_seed(0)
    model = create_model("resnet20_adder").double().eval()
    x = torch.rand(32, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        set_backend(model, "cpu")
        cpu = model(x)
        gpu_model = model.cuda()
        set_backend(gpu_model, "triton")
        gpu = gpu_model(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-9)


def test_evaluate_on_cuda_end_to_end(tmp_path):
    """Every attack family runs on the GPU, rows match a CPU evaluation of the same cells."""
    from robustadder import evaluate

    from helpers import make_tiny

    attacks = ["fgsm", "pgd:steps=3", "rfgsm:steps=2", "noise", "apgd-ce:steps=5", "autoattack:version=standard"]
    results = {}
    for device in ("cpu", "cuda"):
        loaded, data = make_tiny("adder", n=16)
        df = evaluate(loaded, attacks, data=data, store=tmp_path / f"{device}.sqlite", device=device, dtype="float64",
                      eps="2/255", batch_size=8, progress=False)  # fmt: skip
        assert df.attrs["settings"]["device"] == device
        assert df.attrs["backend"] == ("triton" if device == "cuda" else "cpu")
        results[device] = df
    cpu, gpu = results["cpu"], results["cuda"]
    # clean predictions and the deterministic attacks agree sample by sample in float64
    np.testing.assert_array_equal(cpu["clean_pred"], gpu["clean_pred"])
    for label in ("FGSM",):
        a, b = cpu[cpu.attack == label], gpu[gpu.attack == label]
        np.testing.assert_array_equal(a["adv_pred"], b["adv_pred"])
    assert (gpu["linf"] <= 2 / 255 + 1e-6).all()


def test_float32_evaluation_on_cuda_does_not_use_tf32():
    """cuDNN would use TF32 tensor cores by default; a float32 evaluation must be float32."""
    from robustadder.engine import Settings, prepare

    from helpers import make_tiny

    loaded, _ = make_tiny("conv", n=4)
    prepare(loaded, Settings(device="cuda"))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
