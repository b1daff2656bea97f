import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

from dist_equivalence import build_model, fixed_batch
from segaug_simclr.losses import nt_xent
from segaug_simclr.checkpoint import CHECKPOINT, load_checkpoint

HERE = Path(__file__).resolve().parent


def _torchrun(args, nproc=2, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    r = _torchrun([str(HERE / 'dist_equivalence.py'), str(tmp_path)])
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [torch.load(tmp_path / f'rank{i}.pt') for i in range(2)]
    # the reference: one process, the whole batch, ordinary BatchNorm over all 2N samples
    model = build_model()
    v1, v2 = fixed_batch()
    h, z = model(torch.cat([v1, v2]))
    loss = nt_xent(z[:len(v1)], z[len(v1):], 0.5)
    loss.backward()
    for rk in ranks:
        assert abs(rk['loss'].item() - loss.item()) < 1e-5, (rk['loss'], loss)
        for name, p in model.named_parameters():
            assert torch.allclose(rk['grads'][name], p.grad, atol=1e-5, rtol=1e-4), name
        for name, b in model.named_buffers():
            if 'running' in name: assert torch.allclose(rk['stats'][name], b, atol=1e-6), name  # global BN statistics
    # all-gather with gradients: gathered in rank order, and each slice's gradient is the sum over processes
    w = torch.arange(12, dtype=torch.float32).view(6, 2)
    for i, rk in enumerate(ranks):
        assert torch.equal(rk['gathered'], torch.cat([torch.full((3, 2), 1.0), torch.full((3, 2), 2.0)]))
        assert torch.equal(rk['gather_grad'], (1 + 2) * w[3 * i:3 * (i + 1)])


ARGS = ['--dataset', 'synthetic', '--num-images', '128', '--depth', '18', '--width', '0.25', '--batch-size', '32',
        '--epochs', '2', '--warmup-epochs', '0', '--accum-steps', '2', '--device', 'cpu', '--no-progress']


@pytest.mark.slow
def test_torchrun_pretraining_checkpoints_and_resumes_exactly(tmp_path):
    "The per-image path (DataLoader views, each rank its share of the epoch) under torchrun; the batched path: test_batch_augment."
    pkg = ['-m', 'segaug_simclr.pretrain_cli', '--augment-device', 'cpu']
    r = _torchrun(pkg + ARGS + ['--out', str(tmp_path / 'straight')])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _torchrun(pkg + ARGS + ['--out', str(tmp_path / 'split'), '--stop-after', '1'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / 'split').iterdir()) == ['checkpoint.pt', 'config.json', 'metrics.jsonl']
    first = load_checkpoint(tmp_path / 'split' / CHECKPOINT)
    assert first['epoch'] == 1 and first['step'] == 2  # 64 images per process = 4 batches of 16, accumulated in pairs
    assert json.loads((tmp_path / 'split' / 'config.json').read_text())['world_size'] == 2
    # resume through the CLI's own launcher (--nproc 2 starts torchrun itself)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, *pkg, *ARGS, '--out', str(tmp_path / 'split'), '--resume',
                        '--nproc', '2'], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / 'straight' / CHECKPOINT), load_checkpoint(tmp_path / 'split' / CHECKPOINT)
    assert a['epoch'] == b['epoch'] == 2 and a['step'] == b['step'] == 4
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert r.stdout.count('done: 2 epochs') == 1  # rank 0 alone reports
