import json, math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import segaug_simclr.core as core
from segaug_simclr.core import read_jsonl
from segaug_simclr.checkpoint import CHECKPOINT, METRICS, load_checkpoint
from segaug_simclr.features import extract_features, knn_accuracy
from segaug_simclr.train import NonFiniteLossError, pretrain

ROOT = Path(__file__).resolve().parents[1]


def test_short_run_loss_falls_and_records_metrics(tiny_cfg):
    res = pretrain(tiny_cfg(epochs=4, num_images=256, batch_size=64, log_every=1))
    losses = [r['loss'] for r in res['history']]
    assert losses[-1] < losses[0] and min(losses[1:]) < losses[0] - 0.2, losses
    recs = read_jsonl(Path(res['out']) / METRICS)
    assert [r['epoch'] for r in recs if r['kind'] == 'epoch'] == [0, 1, 2, 3]
    steps = [r for r in recs if r['kind'] == 'step']
    assert len(steps) == 16 and all({'loss', 'lr', 'images_per_s'} <= set(r) for r in steps)
    ck = load_checkpoint(res['checkpoint'])
    assert {'model', 'optimizer', 'scheduler', 'scaler', 'probe', 'probe_optimizer', 'rng', 'epoch', 'step'} <= set(ck)
    assert {'python', 'numpy', 'torch'} <= set(ck['rng']) and ck['epoch'] == 4 and ck['step'] == 16


def _state_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_is_exact(tiny_cfg, tmp_path):
    straight = load_checkpoint(pretrain(tiny_cfg(out=str(tmp_path / 'a')))['checkpoint'])
    pretrain(tiny_cfg(out=str(tmp_path / 'b'), stop_after=1))
    assert load_checkpoint(tmp_path / 'b' / CHECKPOINT)['epoch'] == 1
    resumed = load_checkpoint(pretrain(tiny_cfg(out=str(tmp_path / 'b'), resume=True))['checkpoint'])
    assert resumed['epoch'] == straight['epoch'] == 2 and resumed['step'] == straight['step']
    assert _state_equal(straight['model'], resumed['model'])
    for sa, sb in zip(straight['optimizer']['state'].values(), resumed['optimizer']['state'].values()):
        assert torch.equal(sa['momentum_buffer'], sb['momentum_buffer'])
    a = [r['loss'] for r in read_jsonl(tmp_path / 'a' / METRICS) if r['kind'] == 'epoch']
    b = [r['loss'] for r in read_jsonl(tmp_path / 'b' / METRICS) if r['kind'] == 'epoch']
    assert a == b


def test_resume_refuses_other_architecture(tiny_cfg):
    pretrain(tiny_cfg(stop_after=1))
    with pytest.raises(ValueError, match='--width: 0.25 -> 0.5'):
        pretrain(tiny_cfg(width=0.5, resume=True))
    with pytest.raises(FileExistsError, match='--resume'):
        pretrain(tiny_cfg())


def test_interrupted_checkpoint_write_keeps_last_good(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(stop_after=1)
    pretrain(cfg)
    ckpt = Path(cfg.out) / CHECKPOINT
    good = ckpt.read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, 'r+b') as fh: fh.truncate(100)  # half-written file, then the crash
        raise OSError('No space left on device')
    monkeypatch.setattr(core.torch, 'save', crashing_save)
    with pytest.raises(OSError, match='No space'):
        pretrain(tiny_cfg(resume=True))
    monkeypatch.undo()
    assert ckpt.read_bytes() == good
    assert load_checkpoint(ckpt)['epoch'] == 1
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ['checkpoint.pt', 'config.json', 'metrics.jsonl']


class PoisonedViews(Dataset):
    "Two-view random images; every image is NaN when `poisoned`."
    classes = ['a', 'b']
    def __init__(self, poisoned): self.poisoned = poisoned
    def __len__(self): return 64
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        v = torch.rand(3, 32, 32, generator=g)
        if self.poisoned: v = v * float('nan')
        return (v, v.flip(-1)), i % 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg):
    cfg = tiny_cfg(stop_after=1)
    pretrain(cfg, train_data=PoisonedViews(False))
    ckpt = Path(cfg.out) / CHECKPOINT
    before = ckpt.read_bytes()
    with pytest.raises(NonFiniteLossError, match=r'loss became nan at epoch 2.*after epoch 1.*--resume'):
        pretrain(tiny_cfg(resume=True), train_data=PoisonedViews(True))
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)['epoch'] == 1


def test_gradient_accumulation_steps_and_lr(tiny_cfg):
    # 128 images / batch 32 = 4 batches per epoch; accumulating 2 -> 2 optimiser steps per epoch
    res = pretrain(tiny_cfg(accum_steps=2, epochs=2, lr_scaling='linear', lr=1.0, warmup_epochs=0))
    ck = load_checkpoint(res['checkpoint'])
    assert ck['step'] == 4
    assert ck['scheduler']['base_lrs'][0] == pytest.approx(1.0 * 64 / 256)  # scaled by the effective batch


def test_accumulation_gradient_is_mean_of_microbatches():
    "Dividing each micro-batch loss by accum_steps makes the summed gradient the mean of the micro-batch gradients."
    from segaug_simclr.losses import nt_xent
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4)
    batches = [(torch.randn(8, 6), torch.randn(8, 6)) for _ in range(3)]
    for a, b in batches: (nt_xent(lin(a), lin(b)) / 3).backward()
    acc = lin.weight.grad.clone(); lin.zero_grad()
    mean = sum(torch.autograd.grad(nt_xent(lin(a), lin(b)), lin.weight)[0] for a, b in batches) / 3
    assert torch.allclose(acc, mean, atol=1e-6)


def test_bf16_channels_last_and_knn_monitor(tiny_cfg):
    from segaug_simclr.augment import to_float_image
    from segaug_simclr.data import get_dataset
    from segaug_simclr.models import simclr_model
    res = pretrain(tiny_cfg(epochs=1, amp='bf16', channels_last=True, knn_every=1, knn_images=64, knn_k=10))
    rec = res['history'][0]
    # the monitor scored the trained encoder on 64 train / 64 test images: recompute it from the checkpoint
    ck = load_checkpoint(res['checkpoint'])
    model = simclr_model(18, 0.25, True); model.load_state_dict(ck['model'])
    kw = dict(transform=to_float_image(), num_images=64, seed=0)
    bank, query = get_dataset('synthetic', split='train', **kw), get_dataset('synthetic', split='test', **kw)
    assert rec['knn_acc'] == pytest.approx(knn_accuracy(model.encoder, bank, query, 10, k=10), abs=1e-6)
    # an epoch of bf16 training stays near NT-Xent's chance level, log(2B - 1) for batch B = 32, and finite
    assert load_checkpoint(res['checkpoint'])['config']['amp'] == 'bf16' and 0 < rec['loss'] < math.log(63) + 0.5


def test_fp16_on_cpu_is_refused(tiny_cfg):
    with pytest.raises(ValueError, match='bf16 on the CPU'):
        pretrain(tiny_cfg(amp='fp16'))


def test_knn_on_linearly_separable_features():
    from segaug_simclr.data import ImageTensorDataset
    from segaug_simclr.augment import to_float_image
    # images whose mean colour is their class: an identity-like encoder (global mean pool) separates them
    imgs = torch.zeros(40, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(40) % 2
    imgs[labels == 0, 0] = 200; imgs[labels == 1, 2] = 200
    ds = ImageTensorDataset(imgs, labels, transform=to_float_image())
    enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    feats, ys = extract_features(enc, ds, batch_size=16)
    assert feats.shape == (40, 3) and torch.equal(ys, labels)
    assert knn_accuracy(enc, ds, ds, 2, k=5) == 1.0


@pytest.mark.slow
def test_cli_runs_resumes_and_reports_user_errors(tmp_path, monkeypatch, capsys):
    from segaug_simclr.pretrain_cli import main
    monkeypatch.chdir(tmp_path)
    args = ['--dataset', 'synthetic', '--num-images', '64', '--depth', '18', '--width', '0.25', '--batch-size', '32',
            '--epochs', '2', '--warmup-epochs', '0', '--device', 'cpu', '--no-progress', '--out', str(tmp_path / 'cli')]
    assert main([*args, '--stop-after', '1']) == 0
    assert load_checkpoint(tmp_path / 'cli' / CHECKPOINT)['epoch'] == 1
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert 'pass --resume' in err and 'Traceback' not in err, err
    assert main([*args, '--resume']) == 0
    assert 'done: 2 epochs' in capsys.readouterr().out
    assert json.loads((tmp_path / 'cli' / 'config.json').read_text())['resume'] is False  # the run's first settings, kept


def test_fraction_and_spurious_reach_the_pretraining_set(tiny_cfg):
    # 5% of each class of the 5,000 synthetic training images = 250 images = 7 full batches of 32
    res = pretrain(tiny_cfg(num_images=None, fraction=0.05, epochs=1, spurious=0.5))
    assert load_checkpoint(res['checkpoint'])['step'] == 7


@pytest.mark.slow
def test_torch_compile_trains_like_eager(tiny_cfg, tmp_path, monkeypatch):
    """`compile=True`: the model as TorchDynamo and AOTAutograd capture it (forward, backward, BatchNorm in training
    mode) trains like the eager model and saves the same checkpoint keys. The graphs run through the `aot_eager`
    backend: with Inductor's C++ code generation this run took 34-42 s on the 2-core CPU with an empty compile cache,
    with `aot_eager` 5 s (the GPU check compiles with Inductor on CUDA, where compiling pays)."""
    eager = pretrain(tiny_cfg(out=str(tmp_path / 'eager')))
    calls, compile = [], torch.compile
    def aot_eager(model, **kw):
        calls.append(type(model).__name__)
        return compile(model, **kw | dict(backend='aot_eager'))
    monkeypatch.setattr(torch, 'compile', aot_eager)
    torch._dynamo.reset()
    compiled = pretrain(tiny_cfg(out=str(tmp_path / 'compiled'), compile=True))
    assert calls == ['SimCLR'], calls  # the flag reached the model: compiled once
    a = [r['loss'] for r in eager['history']]
    b = [r['loss'] for r in compiled['history']]
    assert all(abs(x - y) < 1e-2 for x, y in zip(a, b)), (a, b)  # same data and seeds; kernels may round differently
    keys = lambda res: list(load_checkpoint(Path(res['out']) / CHECKPOINT)['model'])
    assert keys(compiled) == keys(eager)  # no '_orig_mod.' prefix: the checkpoint loads into an eager model


def test_hooks_see_every_batch_and_epoch_and_observing_changes_nothing(tiny_cfg, tmp_path):
    from segaug_simclr.train import Hook
    class Seen(Hook):
        def __init__(self): self.batches, self.epochs = [], []
        def after_batch(self, state, batch): self.batches.append((batch['epoch'], batch['batch'], state.step))
        def after_epoch(self, state, record): self.epochs.append((state.epoch, record['epoch'], len(state.history)))
    plain = pretrain(tiny_cfg(out=str(tmp_path / 'plain')))
    seen = Seen()
    hooked = pretrain(tiny_cfg(out=str(tmp_path / 'hooked')), hooks=[seen])
    assert [r['loss'] for r in hooked['history']] == [r['loss'] for r in plain['history']]
    # 128 images in batches of 32: 4 optimiser steps per epoch
    assert seen.batches == [(e, b, 4 * e + b) for e in range(2) for b in range(1, 5)], seen.batches
    assert seen.epochs == [(1, 0, 1), (2, 1, 2)], seen.epochs
