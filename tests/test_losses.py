import math
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from segaug_simclr.losses import nt_xent


def reference(z1, z2, tau):
    "NT-Xent written term by term from thesis eq. (1), in float64."
    z = torch.cat([z1, z2]).double()
    n2 = len(z); n = n2 // 2
    cos = lambda a, b: a @ b / (a.norm() * b.norm())
    total = 0
    for i in range(n2):
        j = (i + n) % n2
        den = sum(torch.exp(cos(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(cos(z[i], z[j]) / tau) / den)
    return total / n2


@pytest.mark.parametrize('n,d,tau', [(2, 3, 0.1), (5, 8, 0.5), (9, 16, 1.0)])
def test_values_and_gradients_match_formula(n, d, tau):
    g = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, d, generator=g, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, requires_grad=True)
    fast, slow = nt_xent(z1, z2, tau), reference(z1, z2, tau)
    assert torch.allclose(fast.double(), slow, atol=1e-5)
    for a, b in zip(torch.autograd.grad(fast, (z1, z2)), torch.autograd.grad(slow, (z1, z2))):
        assert torch.allclose(a.double(), b.double(), atol=1e-5)


def test_symmetric_in_views_and_scale_invariant():
    z1, z2 = torch.randn(7, 5), torch.randn(7, 5)
    assert torch.allclose(nt_xent(z1, z2), nt_xent(z2, z1), atol=1e-6)
    assert torch.allclose(nt_xent(3 * z1, 0.5 * z2), nt_xent(z1, z2), atol=1e-5)


def test_float32_logits_under_bf16_autocast():
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    exact = nt_xent(z1, z2, 0.1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.1)
        assert out.dtype == torch.float32
    # inputs rounded to bf16, but no bf16 matmul: the error is that of the inputs alone
    assert abs(out.item() - exact.item()) < 2e-2


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__(); self.shapes = []
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor): self.shapes.append(tuple(t.shape))
        return out


def test_no_2n_by_2n_by_d_intermediate():
    n, d = 12, 7
    z1 = torch.randn(n, d, requires_grad=True); z2 = torch.randn(n, d, requires_grad=True)
    with ShapeRecorder() as rec:
        nt_xent(z1, z2, 0.5).backward()
    assert (2 * n, 2 * n) in rec.shapes  # the one similarity matrix
    biggest = max(math.prod(s) for s in rec.shapes)
    assert biggest == (2 * n) ** 2 and biggest < (2 * n) ** 2 * d


def test_bad_inputs():
    with pytest.raises(ValueError, match='same shape'):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match='at least 2'):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match='temperature'):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0)
