"""The adder layer against the formulas of docs/design.md §2 (reference backend)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from robustadder.kernels import ReferenceBackend, get_backend
from robustadder.kernels.reference import plan_chunks
from robustadder.nn import Adder2d, adaptive_scale, adder2d, adder_layers, adder_settings, set_grad_mode

from helpers import loop_forward, loop_grads

SHAPES = [  # (N, C, H, W, O, k, stride, padding)
    (2, 3, 7, 6, 5, 3, 1, 1),
    (2, 3, 7, 6, 5, 3, 1, 0),
    (3, 4, 8, 8, 6, 3, 2, 1),
    (1, 4, 9, 7, 3, 3, 2, 0),
    (2, 5, 6, 6, 4, 1, 1, 0),
    (2, 5, 8, 8, 7, 1, 2, 0),
    (2, 5, 8, 8, 7, 1, 2, 1),
]
# whole-tensor, and budgets that force chunking over filters, columns, rows and samples
BUDGETS = [1 << 30, 1, 8 * 45 * 2, 8 * 45 * 20]


def _inputs(shape, dtype=torch.float64, seed=0):
    n, c, h, w, o, k, s, p = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    wt = torch.randn(o, c, k, k, generator=gen, dtype=dtype)
    return x, wt, s, p


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_forward_matches_loop(shape, budget):
    x, w, s, p = _inputs(shape)
    y = adder2d(x, w, s, p, backend=ReferenceBackend(budget))
    torch.testing.assert_close(y, loop_forward(x, w, s, p))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["surrogate", "exact"])
@pytest.mark.parametrize("budget", [1 << 30, 1, 8 * 45 * 2])
def test_gradients_match_hand_derived(shape, mode, budget):
    # scale the inputs so that |W − X| falls on both sides of 1: the surrogate clamp matters
    x, w, s, p = _inputs(shape)
    x, w = (0.5 * x).requires_grad_(), (0.5 * w).requires_grad_()
    y = adder2d(x, w, s, p, grad_mode=mode, eta=None, backend=ReferenceBackend(budget))
    g = torch.randn_like(y)
    y.backward(g)
    gx, gw = loop_grads(x.detach(), w.detach(), g, s, p, mode)
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(w.grad, gw)


def test_surrogate_and_exact_differ_where_clamp_acts():
    x, w, s, p = _inputs(SHAPES[0])
    grads = {}
    for mode in ("surrogate", "exact"):
        xx = (3 * x).requires_grad_()
        adder2d(xx, w, s, p, grad_mode=mode).sum().backward()
        grads[mode] = xx.grad
    assert not torch.allclose(grads["surrogate"], grads["exact"])


def test_adaptive_weight_gradient_scaling():
    x, w, s, p = _inputs(SHAPES[2])
    w = w.requires_grad_()
    y = adder2d(x, w, s, p, eta=0.2)
    g = torch.randn_like(y)
    y.backward(g)
    _, raw = loop_grads(x, w.detach(), g, s, p, "surrogate")
    expected = raw * (0.2 * math.sqrt(w.numel()) / raw.norm())
    torch.testing.assert_close(w.grad, expected)
    assert w.grad.norm().item() == pytest.approx(0.2 * math.sqrt(w.numel()))
    torch.testing.assert_close(adaptive_scale(raw, None), raw)


def test_exact_mode_passes_gradcheck():
    x, w, s, p = _inputs((2, 2, 5, 5, 3, 3, 1, 1))
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: adder2d(t, w, s, p, grad_mode="exact", eta=None), (x,))


def test_layer_bias_names_and_modes():
    layer = Adder2d(3, 4, 3, padding=1, bias=True).double()
    assert set(dict(layer.named_parameters())) == {"adder", "b"}
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    expected = loop_forward(x, layer.adder.detach(), 1, 1) + layer.b.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)
    assert set(dict(Adder2d(3, 4, 3).named_parameters())) == {"adder"}
    with pytest.raises(ValueError):
        Adder2d(3, 4, 3, grad_mode="sign")


def test_grad_mode_per_layer_and_model_wide():
    # no ReLU: adder outputs are always ≤ 0 and would be zeroed
    model = torch.nn.Sequential(Adder2d(2, 3, 3, padding=1), Adder2d(3, 2, 1))
    model[0].grad_mode = "exact"
    assert [m.grad_mode for m in adder_layers(model)] == ["exact", "surrogate"]
    with adder_settings(model, grad_mode="exact", backend="reference"):
        assert all(m.grad_mode == "exact" and m.backend == "reference" for m in adder_layers(model))
    assert [m.grad_mode for m in adder_layers(model)] == ["exact", "surrogate"]
    assert [m.backend for m in adder_layers(model)] == ["auto", "auto"]
    set_grad_mode(model, "exact")
    assert all(m.grad_mode == "exact" for m in adder_layers(model))
    # the mode really changes the gradient the model returns
    x = 3 * torch.randn(1, 2, 4, 4)
    grads = []
    for mode in ("surrogate", "exact"):
        set_grad_mode(model, mode)
        xx = x.clone().requires_grad_()
        model(xx).sum().backward()
        grads.append(xx.grad)
    assert not torch.allclose(*grads)


def test_unknown_backend_is_a_user_error():
    from robustadder.errors import UserError

    with pytest.raises(UserError, match="unknown adder backend"):
        get_backend("magic")


def test_chunk_plan_respects_budget():
    for budget in (1, 1000, 1 << 20, 256 << 20):
        for n, o, k, h, w in [(256, 16, 144, 32, 32), (1, 64, 576, 8, 8), (7, 3, 9, 5, 3)]:
            plan = plan_chunks(n, o, k, h, w, 4, budget)
            assert plan.temp_bytes(k, 4) <= max(budget, k * 4)
            assert 1 <= plan.samples <= n and 1 <= plan.filters <= o


def test_reference_memory_is_bounded_whatever_the_batch():
    """ResNet-20 stage-1 shape at batch 256: the official formula needs 2.25 GiB per temporary."""
    script = textwrap.dedent(
        """
        import resource, torch
        from robustadder.kernels import ReferenceBackend
        from robustadder.nn import adder2d
        torch.manual_seed(0)
        x = torch.randn(256, 16, 32, 32, requires_grad=True)
        w = torch.randn(16, 16, 3, 3, requires_grad=True)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        y = adder2d(x, w, 1, 1, backend=ReferenceBackend(32 * 2**20))
        y.sum().backward()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grown_mib = float(out.stdout.strip())
    # output, gradient and input-sized buffers are 16 MiB each; temporaries are capped at 32 MiB
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB"
