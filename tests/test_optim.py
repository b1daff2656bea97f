import math
import pytest
import torch
from torch import nn
from segaug_simclr.models import simclr_model
from segaug_simclr.optim import (LARS, lars_excluded_names, make_optimizer, scaled_lr, warmup_cosine,
                                 warmup_cosine_scheduler)


def test_excludes_biases_and_batchnorm_only():
    net = simclr_model(18, 0.25, cifar_stem=True)
    excluded = set(lars_excluded_names(net, LARS(net.parameters(), lr=1)))
    for name, mod in net.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            full = f'{name}.{pname}'
            is_norm_or_bias = isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) or pname == 'bias'
            assert (full in excluded) == is_norm_or_bias, full


@pytest.mark.parametrize('nesterov', [False, True])
def test_two_steps_against_formula(nesterov):
    g = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(5, 4, generator=g)); b = nn.Parameter(torch.randn(5, generator=g))
    lr, m, wd, eta = 0.7, 0.9, 1e-3, 1e-3
    opt = LARS([w, b], lr=lr, momentum=m, weight_decay=wd, eta=eta, nesterov=nesterov)
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    ew, eb = w.detach().clone(), b.detach().clone()
    for _ in range(2):
        gw, gb = torch.randn(5, 4, generator=g), torch.randn(5, generator=g)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        dw = gw + wd * ew
        sw = lr * eta * ew.norm() / dw.norm()
        vw = m * vw + sw * dw; vb = m * vb + lr * gb  # bias: no weight decay, no trust ratio
        ew = ew - (m * vw + sw * dw if nesterov else vw)
        eb = eb - (m * vb + lr * gb if nesterov else vb)
        assert torch.allclose(w, ew, atol=1e-6) and torch.allclose(b, eb, atol=1e-6)


def test_trust_ratio_is_one_for_zero_weights():
    w = nn.Parameter(torch.zeros(3, 3)); w.grad = torch.ones(3, 3)
    LARS([w], lr=0.1, weight_decay=0, momentum=0).step()
    assert torch.allclose(w, torch.full((3, 3), -0.1))


def test_lr_scaling():
    assert scaled_lr(0.3, 4096) == pytest.approx(4.8)
    assert scaled_lr(1.0, 128) == pytest.approx(0.5)
    assert scaled_lr(0.075, 4096, 'sqrt') == pytest.approx(4.8)
    assert scaled_lr(1.0, 999, 'none') == 1.0


def test_schedule_shape_per_optimiser_step():
    total, warm = 200, 20
    p = nn.Parameter(torch.ones(2, 2))
    opt = LARS([p], lr=2.0); sched = warmup_cosine_scheduler(opt, total, warm)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]['lr']); p.grad = torch.ones_like(p); opt.step(); sched.step()
    assert lrs[0] == 0 and lrs[warm] == pytest.approx(2.0)
    assert all(lrs[i + 1] - lrs[i] == pytest.approx(0.1) for i in range(warm))  # linear warm-up
    assert all(a > b for a, b in zip(lrs[warm:-1], lrs[warm + 1:]))  # strictly decreasing cosine
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(1.0, abs=1e-9)
    assert lrs[-1] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * (total - 1 - warm) / (total - warm))))
    assert warmup_cosine(total, total, warm) == pytest.approx(0.0)  # no restart after the end
    assert warmup_cosine(5 * total, total, warm) == pytest.approx(0.0)


def test_make_optimizer_variants():
    net = simclr_model(18, 0.25, cifar_stem=True)
    sgd = make_optimizer('sgd', net, 0.1, weight_decay=1e-4)
    assert sgd.param_groups[0]['nesterov'] and sgd.param_groups[1]['weight_decay'] == 0
    assert all(p.ndim <= 1 for p in sgd.param_groups[1]['params'])
    assert isinstance(make_optimizer('lars', net, 1.0), LARS)
    with pytest.raises(ValueError, match='choose one of'):
        make_optimizer('lamb', net, 1.0)
