"""The batched (device) augmentation path inside training: exact resume, the per-image default on the CPU, the CLI
flag, torchrun with per-rank streams, a GPU check where there is one, and the data-path benchmark in a small setting."""
import json, sys
from pathlib import Path

import pytest
import torch

from segaug_simclr.augment import cifar_augment, simclr_augment
from segaug_simclr.batch_augment import BatchViews, DeviceLoader, SquareFiles
from segaug_simclr.segaug import BatchSegAug, SegAugViews, fallback_share
from segaug_simclr.segment import MaskStore
from segaug_simclr.core import read_jsonl
from segaug_simclr.data import synthetic_shapes
from segaug_simclr.pretrain_cli import parse_config
from segaug_simclr.checkpoint import CHECKPOINT, METRICS, load_checkpoint
from segaug_simclr.train import PretrainConfig, pretrain



def _same_run(a: Path, b: Path):
    ca, cb = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    assert ca['epoch'] == cb['epoch'] and ca['step'] == cb['step']
    assert all(torch.equal(ca['model'][k], cb['model'][k]) for k in ca['model'])
    la = [r['loss'] for r in read_jsonl(a / METRICS) if r['kind'] == 'epoch']
    lb = [r['loss'] for r in read_jsonl(b / METRICS) if r['kind'] == 'epoch']
    assert la == lb
    return ca


@pytest.mark.parametrize('augment', ['cifar', 'segaug'])
def test_batched_path_resumes_exactly(tiny_cfg, tmp_path, augment):
    kw = dict(augment_device='batch', augment=augment, num_images=64)
    if augment == 'segaug': kw.update(segmenter='oracle', mask_cache=str(tmp_path / 'masks'))
    pretrain(tiny_cfg(out=str(tmp_path / 'a'), **kw))
    pretrain(tiny_cfg(out=str(tmp_path / 'b'), stop_after=1, **kw))
    pretrain(tiny_cfg(out=str(tmp_path / 'b'), resume=True, **kw))
    ck = _same_run(tmp_path / 'a', tmp_path / 'b')
    assert ck['epoch'] == 2 and ck['config']['augment_device'] == 'batch'
    if augment == 'segaug':
        recs = [r for r in read_jsonl(tmp_path / 'a' / METRICS) if r['kind'] == 'epoch']
        assert all(0 <= r['fallback_share'] <= 1 for r in recs)


def test_auto_on_the_cpu_picks_the_path_measured_faster(tiny_cfg, tmp_path):
    from segaug_simclr.train import BATCHED_CPU_BELOW, batched_augment, pretrain_dataset
    kw = dict(epochs=1, num_images=64)
    auto = pretrain(tiny_cfg(out=str(tmp_path / 'auto'), **kw))
    cpu = pretrain(tiny_cfg(out=str(tmp_path / 'cpu'), augment_device='cpu', **kw))
    batch = pretrain(tiny_cfg(out=str(tmp_path / 'batch'), augment_device='batch', **kw))
    a, c, b = (load_checkpoint(r['checkpoint'])['model'] for r in (auto, cpu, batch))
    assert all(torch.equal(a[k], b[k]) for k in a)           # 'auto' at 32 px on the CPU: the batched views, bit for bit
    assert not all(torch.equal(a[k], c[k]) for k in a)       # the per-image path really makes other views
    big = tiny_cfg(image_size=BATCHED_CPU_BELOW, augment='simclr', **kw)
    assert not batched_augment(big, torch.device('cpu'), pretrain_dataset(big))  # at ImageNet scale: per image


def test_augment_device_flag_and_errors(tiny_cfg):
    assert parse_config(['--augment-device', 'batch']).augment_device == 'batch'
    assert parse_config([]).augment_device == 'auto'
    with pytest.raises(ValueError, match='augment_device must be one of'):
        PretrainConfig(augment_device='gpu').validate()
    with pytest.raises(ValueError, match='--augment-device batch'):
        pretrain(tiny_cfg(augment_device='cuda'))


def test_device_loader_takes_the_per_rank_share():
    "Two ranks of the same epoch: disjoint shares of one permutation, each with its own views."
    from segaug_simclr.train import EpochSampler, augmentation_seed
    ds = synthetic_shapes(64, seed=0)
    views = BatchViews(cifar_augment(32))
    outs = []
    for r in range(2):
        sampler = EpochSampler(64, seed=0, rank=r, world=2)
        sampler.set_epoch(3)
        g = torch.Generator().manual_seed(augmentation_seed(0, 3, r))
        (v1, _), y = next(iter(DeviceLoader(ds.images, torch.arange(64), views, sampler, 16, g, 'cpu')))
        outs.append((v1, set(y.tolist())))
    assert not outs[0][1] & outs[1][1]
    seen = EpochSampler(64, 0, 0, 2); seen.set_epoch(3)
    assert outs[0][1] | outs[1][1] == set(seen.seen(1, 16).tolist())
    assert not torch.equal(outs[0][0], outs[1][0])


@pytest.mark.slow
def test_torchrun_batched_segaug_resumes_exactly(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_distributed import ARGS, _torchrun
    args = ['-m', 'segaug_simclr.pretrain_cli', *ARGS, '--augment', 'segaug', '--segmenter', 'oracle', '--augment-device', 'batch',
            '--mask-cache', str(tmp_path / 'masks')]
    r = _torchrun(args + ['--out', str(tmp_path / 'straight')])
    assert r.returncode == 0, r.stderr[-3000:]
    caches = list((tmp_path / 'masks').iterdir())  # two processes, one mask cache: rank 0 computed it, rank 1 read it
    assert len(caches) == 1 and sorted(p.name for p in caches[0].iterdir()) == ['fg_ratio.npy', 'manifest.json', 'masks.npy']
    rec = [r for r in read_jsonl(tmp_path / 'straight' / METRICS) if r['kind'] == 'epoch'][0]
    # the share over both ranks' images of the epoch (4 batches of 32 = all 128) is the cache's share of the dataset
    assert rec['fallback_share'] == pytest.approx(fallback_share(MaskStore(caches[0]).fg_ratio), abs=1e-6)
    r = _torchrun(args + ['--out', str(tmp_path / 'split'), '--stop-after', '1'])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _torchrun(args + ['--out', str(tmp_path / 'split'), '--resume'])
    assert r.returncode == 0, r.stderr[-3000:]
    ck = _same_run(tmp_path / 'straight', tmp_path / 'split')
    assert ck['epoch'] == 2 and ck['step'] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_gpu_views_equal_cpu_views():
    "The parameters come from a CPU generator, so a GPU makes the CPU's views (to float rounding)."
    ds = synthetic_shapes(64, size=96, seed=0)
    for views, args in ((BatchViews(simclr_augment(96)), ()), (BatchSegAug(SegAugViews(96)), (ds.masks,))):
        cpu = views(ds.images, *args, torch.Generator().manual_seed(0))
        gpu = views(ds.images.cuda(), *(a.cuda() for a in args), torch.Generator().manual_seed(0))
        for a, b in zip(cpu, gpu): assert (a - b.cpu()).abs().max() < 1e-3


def test_datapath_benchmark_quick(tmp_path, run_script):
    assert run_script('benchmarks/datapath.py', '--quick', '--threads', '1', '--device', 'cpu', '--out', tmp_path) == 0
    res = json.loads((tmp_path / 'datapath_cpu.json').read_text())
    assert res['quick'] and set(res['augmentation']) == {'32px', '64px'}
    for size in res['augmentation'].values():
        assert all(size[f'{k}/{p}'] > 0 for k in ('standard', 'segaug') for p in ('per_image_cpu', 'batched_cpu'))
    rows = res['end_to_end']['results']
    assert {(r['augment'], r['path']) for r in rows} == {(a, p) for a in ('standard', 'segaug') for p in ('per_image', 'batched')}
    assert all(r['images_per_s'] > 0 and 0 <= r['data_wait_share'] <= 1 for r in rows)


@pytest.mark.parametrize('augment', ['cifar', 'segaug'])
def test_batched_path_on_image_files_resumes_exactly(tiny_cfg, tmp_path, augment):
    "An image-folder dataset on the batched path: files of two sizes decoded into squares, views made in batches."
    from fakes import write_imagefolder
    write_imagefolder(tmp_path / 'data' / 'train', classes=('a', 'b', 'c', 'd'), per_class=12, size=(40, 30))
    write_imagefolder(tmp_path / 'data' / 'train', classes=('e', 'f'), per_class=8, size=(24, 36))
    kw = dict(dataset='imagefolder', data_root=str(tmp_path / 'data'), num_images=None, augment_device='batch',
              augment=augment, batch_size=16)
    if augment == 'segaug': kw.update(segmenter='saliency', mask_cache=str(tmp_path / 'masks'))
    pretrain(tiny_cfg(out=str(tmp_path / 'a'), **kw))
    pretrain(tiny_cfg(out=str(tmp_path / 'b'), stop_after=1, **kw))
    pretrain(tiny_cfg(out=str(tmp_path / 'b'), resume=True, **kw))
    ck = _same_run(tmp_path / 'a', tmp_path / 'b')
    assert ck['epoch'] == 2 and ck['step'] == 2 * (64 // 16)
    cpu = pretrain(tiny_cfg(out=str(tmp_path / 'c'), **(kw | dict(augment_device='cpu'))))
    c = load_checkpoint(cpu['checkpoint'])['model']
    assert not all(torch.equal(ck['model'][k], c[k]) for k in c)  # the batched path did make the views


def test_an_unreadable_file_is_replaced_with_its_label_and_mask(tmp_path):
    "A file that breaks after the header check is replaced by the next readable one, and its label and mask go with it."
    import numpy as np
    from PIL import Image
    from segaug_simclr.data import get_dataset
    for k in range(6):  # image k: grey level 40 k, class k % 3
        (tmp_path / 'train' / f'c{k % 3}').mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24, 3), 40 * k, np.uint8)).save(tmp_path / 'train' / f'c{k % 3}' / f'{k}.png')
    ds = get_dataset('imagefolder', tmp_path, 'train')
    broken = 2
    ds.files[broken].write_bytes(ds.files[broken].read_bytes()[:60])  # truncated after the dataset checked it
    with pytest.warns(UserWarning, match='skipped unreadable image'):
        x, size, read = SquareFiles(ds, 16)[broken]
    assert read == broken + 1 and size.tolist() == [20, 24]
    grey = lambda i: int(np.asarray(Image.open(ds.files[i]))[0, 0, 0])
    assert int(x[0, 0, 0]) == grey(broken + 1)
    masks = torch.zeros(len(ds), 8, 8, dtype=torch.uint8)
    for i in range(len(ds)): masks[i, :, : i + 1] = 1  # mask i: i + 1 foreground columns, so each is recognisable
    order, g = list(range(len(ds))), torch.Generator().manual_seed(0)
    (_, _), y = next(iter(DeviceLoader(ds, ds.targets, BatchViews(cifar_augment(16)), order, len(ds), g, 'cpu')))
    assert y.tolist() == ds.targets[[0, 1, 3, 3, 4, 5]].tolist()  # the label of the image read
    dl = DeviceLoader(ds, ds.targets, BatchViews(cifar_augment(16)), order, len(ds), g, 'cpu', masks,
                      torch.zeros(len(ds), dtype=torch.bool))
    idx, _, _, _ = next(dl._batches())
    assert idx.tolist() == [0, 1, 3, 3, 4, 5]
    m = dl._masks(idx, idx)
    assert torch.equal(m[2], m[3]) and not torch.equal(m[1], m[2])  # the mask of the image read
    from segaug_simclr.segaug import SegAugDataset  # the per-image SegAug path does the same
    (_, _), y = SegAugDataset(ds, masks.bool(), SegAugViews(16, standard=cifar_augment(16)))[broken]
    assert y == int(ds.targets[broken + 1])
