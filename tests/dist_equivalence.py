"""Run under torchrun (2 processes, Gloo): one SimCLR step on this process's share of a fixed batch, with global BN,
gathered negatives and DDP; saves the global loss, the gradients and an all-gather gradient probe to <out>/rank<r>.pt."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from segaug_simclr.distributed import convert_global_bn, gather_with_grad, init_distributed
from segaug_simclr.losses import nt_xent
from segaug_simclr.models import simclr_model


def fixed_batch(n_images=8, size=16):
    g = torch.Generator().manual_seed(123)
    return torch.rand(n_images, 3, size, size, generator=g), torch.rand(n_images, 3, size, size, generator=g)


def build_model():
    torch.manual_seed(0)
    return simclr_model(18, 0.25, cifar_stem=True, proj_hidden=32, proj_dim=16)


if __name__ == '__main__':
    out = Path(sys.argv[1])
    init_distributed('cpu')
    r, W = dist.get_rank(), dist.get_world_size()
    v1, v2 = fixed_batch()
    n = len(v1) // W
    model = DDP(convert_global_bn(build_model()))
    x = torch.cat([v1[r * n:(r + 1) * n], v2[r * n:(r + 1) * n]])
    h, z = model(x)
    loss = nt_xent(z[:n], z[n:], 0.5)
    loss.backward()
    glob = loss.detach().clone(); dist.all_reduce(glob); glob /= W
    grads = {k: p.grad.clone() for k, p in model.module.named_parameters()}
    stats = {k: b.clone() for k, b in model.module.named_buffers() if 'running' in k}
    # the all-gather keeps gradients: process r's slice gets the sum of every process's gradient for it
    xr = torch.full((3, 2), float(r + 1), requires_grad=True)
    y = gather_with_grad(xr)
    (y * torch.arange(y.numel(), dtype=torch.float32).view_as(y) * (r + 1)).sum().backward()
    torch.save(dict(loss=glob, grads=grads, stats=stats, gather_grad=xr.grad, gathered=y.detach()), out / f'rank{r}.pt')
    dist.destroy_process_group()
