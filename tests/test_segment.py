import json, math
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import fakes
from segaug_simclr.augment import cifar_augment
from segaug_simclr.segment import fg_ratio
from segaug_simclr.segaug import RegionPolicy, SegAugDataset, SegAugViews, fallback_share, region_augment
from segaug_simclr.data import get_dataset, synthetic_shapes
from segaug_simclr.segment import DeepLabSegmenter, MaskStore, OracleSegmenter, SaliencySegmenter, build_mask_cache, degrade_mask, get_segmenter, mask_iou
from segaug_simclr.train import pretrain
from segaug_simclr.core import read_jsonl


def _colourful(seed=0, size=48):
    ds = synthetic_shapes(1, size=size, seed=seed)
    return ds.images[0], ds.masks[0]


def _is_gray(x):
    return (x[0] == x[1]) & (x[1] == x[2])


def test_regions_only_receive_their_own_operations():
    img, mask = _colourful(2)
    policy = RegionPolicy(fg=[v2.Grayscale(3)], bg=[v2.RandomInvert(p=1.0)])
    x = region_augment(img, mask, policy)
    assert torch.equal(x[:, mask], v2.functional.rgb_to_grayscale(img, 3)[:, mask])  # fg: gray, never inverted
    assert torch.equal(x[:, ~mask], (255 - img)[:, ~mask])                              # bg: inverted, never gray


def test_regions_stay_separate_through_crop_and_flip():
    img, mask = _colourful(4, 64)
    views = SegAugViews(64, RegionPolicy(fg=[v2.Grayscale(3)]), scale=(0.3, 1.0), return_masks=True)
    torch.manual_seed(0)
    checked = 0
    for _ in range(20):
        (v1, v2_), (m1, m2) = views(img, mask)
        for v, m in ((v1, m1), (v2_, m2)):
            inner = (-torch.nn.functional.max_pool2d(-m.float()[None, None], 5, 1, 2))[0, 0].bool()  # away from edges
            outer = ~torch.nn.functional.max_pool2d(m.float()[None, None], 5, 1, 2)[0, 0].bool()
            vv = (v * 255).round()
            assert _is_gray(vv)[inner].all()
            if outer.any(): assert (~_is_gray(vv)[outer]).float().mean() > 0.9
            checked += int(inner.sum())
    assert checked > 1000


def test_image_and_mask_stay_aligned_through_crop_and_flip():
    _, mask = _colourful(6, 64)
    img = (mask.to(torch.uint8) * 255).expand(3, 64, 64).contiguous()  # the image *is* the mask
    views = SegAugViews(64, RegionPolicy(), lo=0.0, hi=1.0, return_masks=True)
    torch.manual_seed(1)
    flipped_views = 0
    for _ in range(30):
        (v1, _), (m1, _) = views(img, mask)
        agree = ((v1[0] > 0.5) == m1).float().mean()
        assert agree > 0.97
    # flips happen and move image and mask together: left-right asymmetric mask
    asym = torch.zeros(32, 32, dtype=torch.bool); asym[8:24, 2:12] = True
    img2 = (asym.to(torch.uint8) * 255).expand(3, 32, 32).contiguous()
    views2 = SegAugViews(32, RegionPolicy(), lo=0.0, hi=1.0, scale=(1.0, 1.0), return_masks=True)
    for _ in range(40):
        (v, _), (m, _) = views2(img2, asym)
        assert ((v[0] > 0.5) == m).float().mean() > 0.98
        flipped_views += int(m[:, 20:].any())
    assert 8 < flipped_views < 32


@pytest.mark.parametrize('share', [0.0, 0.02, 0.95, 1.0])
def test_fallback_is_the_standard_pipeline(share):
    img, _ = _colourful(8, 32)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask.view(-1)[:round(share * 1024)] = True
    standard = cifar_augment(32)
    views = SegAugViews(32, standard=standard)
    assert views.falls_back(mask)
    for seed in range(5):
        torch.manual_seed(seed); a = views(img, mask)
        torch.manual_seed(seed); b = (standard(img), standard(img))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ok = torch.zeros(32, 32, dtype=torch.bool); ok[8:24, 8:24] = True  # 25%: SegAug proper
    assert not views.falls_back(ok)


def test_thresholds_are_configurable():
    views = SegAugViews(32, lo=0.3, hi=0.5)
    m = torch.zeros(10, 10, dtype=torch.bool); m[:5, :5] = True  # 25%
    assert views.falls_back(m) and not SegAugViews(32, lo=0.2, hi=0.5).falls_back(m)
    assert fallback_share(torch.tensor([0.01, 0.5, 0.95, 0.3]), 0.05, 0.9) == 0.5


class Counting:
    "A segmenter wrapper that counts batches and can fail after a number of them."
    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.batches = inner, fail_after, 0
        self.name, self.input_size, self.fingerprint = inner.name, inner.input_size, inner.fingerprint
    def segment_items(self, ds, idx, size):
        if self.fail_after is not None and self.batches >= self.fail_after: raise KeyboardInterrupt('interrupted')
        self.batches += 1
        return self.inner.segment_items(ds, idx, size)


def test_cache_survives_interrupted_precompute(tmp_path):
    ds = synthetic_shapes(100, seed=0)
    seg = Counting(SaliencySegmenter(input_size=32), fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        build_mask_cache(ds, seg, tmp_path, 'syn', batch_size=10, progress=False)
    folder = tmp_path / 'syn__saliency__32'
    assert not (folder / 'manifest.json').exists() and json.loads((folder / 'progress.json').read_text())['done'] == 30
    resumed = Counting(SaliencySegmenter(input_size=32))
    store = build_mask_cache(ds, resumed, tmp_path, 'syn', batch_size=10, progress=False)
    assert resumed.batches == 7  # only the 70 missing images
    clean = build_mask_cache(ds, SaliencySegmenter(input_size=32), tmp_path / 'clean', 'syn', batch_size=10, progress=False)
    assert all(torch.equal(store[i], clean[i]) for i in range(100))
    assert torch.equal(store.fg_ratio, clean.fg_ratio)
    assert sorted(p.name for p in folder.iterdir()) == ['fg_ratio.npy', 'manifest.json', 'masks.npy']


def test_cache_detects_changed_dataset_and_weights(tmp_path):
    ds = synthetic_shapes(50, seed=0)
    first = Counting(OracleSegmenter())
    build_mask_cache(ds, first, tmp_path, 'syn', progress=False)
    again = Counting(OracleSegmenter())
    build_mask_cache(ds, again, tmp_path, 'syn', progress=False)
    assert again.batches == 0  # reused
    changed = synthetic_shapes(50, seed=0); changed.images[7, 0, 0, 0] ^= 1  # one pixel
    with pytest.raises(ValueError, match='dataset_fingerprint'):
        build_mask_cache(changed, OracleSegmenter(), tmp_path, 'syn', progress=False)
    store = build_mask_cache(changed, OracleSegmenter(), tmp_path, 'syn', rebuild=True, progress=False)
    assert store.manifest['n'] == 50
    other = OracleSegmenter(); other.fingerprint = 'other-weights'
    with pytest.raises(ValueError, match="weights: cached 'ground-truth' vs now 'other-weights'"):
        build_mask_cache(changed, other, tmp_path, 'syn', progress=False)


def test_masks_and_ratios_stored_compactly(tmp_path):
    ds = synthetic_shapes(64, seed=3)
    store = build_mask_cache(ds, OracleSegmenter(), tmp_path, 'syn', progress=False)
    assert (store.folder / 'masks.npy').stat().st_size < 64 * 32 * 32 / 8 + 200  # bit-packed
    assert torch.allclose(store.fg_ratio, fg_ratio(ds.masks))
    # readable from DataLoader workers (the memory map is reopened in each process)
    sd = SegAugDataset(ds, store, SegAugViews(32))
    n = sum(len(y) for _, y in DataLoader(sd, batch_size=16, num_workers=2))
    assert n == 64


def test_deeplab_end_to_end_with_random_weights_from_file(tmp_path):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large
    torch.manual_seed(0)
    torch.save(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict(),
               tmp_path / 'dl.pth')
    fakes.write_imagefolder(tmp_path / 'data' / 'train', classes=('a', 'b'), per_class=3, size=(40, 30))
    ds = get_dataset('imagefolder', tmp_path / 'data', 'train')
    seg = get_segmenter('deeplabv3_mobilenet_v3_large', weights=tmp_path / 'dl.pth', input_size=96)
    assert isinstance(seg, DeepLabSegmenter) and seg.fingerprint
    store = build_mask_cache(ds, seg, tmp_path / 'cache', 'folder', mask_size=24, batch_size=4, progress=False)
    assert len(store) == 6 and store[0].shape == (24, 24) and store[0].dtype == torch.bool
    # the same as running the network by hand: argmax over the 21 VOC classes, not background
    x = v2.functional.to_dtype(v2.functional.resize(v2.functional.to_image(ds[0][0]), [96, 96]), torch.float32, scale=True)
    with torch.no_grad():
        out = seg.model(((x - seg.mean) / seg.std)[None])['out']
    expect = torch.nn.functional.interpolate((out.argmax(1) != 0)[:, None].float(), size=(24, 24), mode='nearest')[0, 0].bool()
    assert torch.equal(store[0], expect)


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    def offline(*a, **k): raise URLError('no network')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    with pytest.raises(FileNotFoundError, match=r'not in torchvision.s cache.*oracle, saliency'):
        get_segmenter('deeplabv3_resnet50')
    with pytest.raises(ValueError, match='choose one of'):
        get_segmenter('sam')


def test_oracle_reads_pet_trimaps(tmp_path, monkeypatch):
    fakes.patch_checksums(monkeypatch)
    fakes.write_pets(tmp_path)
    pets = get_dataset('pets', tmp_path, 'train')
    store = build_mask_cache(pets, OracleSegmenter(), tmp_path / 'c', 'pets', mask_size=(16, 20), progress=False)
    assert torch.equal(store[0], pets.mask(0)) and store[0].sum() == 80


def test_degradation_lowers_iou_monotonically():
    m = synthetic_shapes(1, size=64, seed=1).masks[0]
    for kind, amounts in (('erode', (1, 2, 3)), ('dilate', (1, 2, 3)), ('shift', (1, 3, 6)), ('blocks', (0.05, 0.15, 0.3))):
        ious = [mask_iou(m, degrade_mask(m, kind, a, seed=0)) for a in amounts]
        assert 1 > ious[0] > ious[1] > ious[2], (kind, ious)
    assert degrade_mask(m, 'erode', 2).sum() < m.sum() < degrade_mask(m, 'dilate', 2).sum()


def test_pretrain_with_segaug_logs_fallback_and_reuses_masks(tiny_cfg, tmp_path):
    cfg = tiny_cfg(augment='segaug', segmenter='oracle', mask_cache=str(tmp_path / 'masks'), epochs=2, fg_lo=0.3)
    pretrain(cfg)
    recs = [r for r in read_jsonl(Path(cfg.out) / 'metrics.jsonl') if r['kind'] == 'epoch']
    assert len(recs) == 2 and all(0 < r['fallback_share'] < 1 for r in recs)
    folder = next((tmp_path / 'masks').iterdir())
    store = MaskStore(folder)
    manifest_time = (folder / 'manifest.json').stat().st_mtime_ns
    pretrain(tiny_cfg(augment='segaug', segmenter='oracle', mask_cache=str(tmp_path / 'masks'), out=str(tmp_path / 'again'), epochs=1))
    assert (folder / 'manifest.json').stat().st_mtime_ns == manifest_time  # computed once
    assert abs(recs[0]['fallback_share'] - fallback_share(store.fg_ratio, 0.3, 0.9)) < 0.1
    losses = [r['loss'] for r in recs]
    assert all(math.isfinite(l) for l in losses), losses


def test_degraded_segmenter_feeds_its_own_cache(tmp_path):
    ds = synthetic_shapes(40, seed=2)
    good = build_mask_cache(ds, get_segmenter('oracle'), tmp_path, 'syn', progress=False)
    bad = build_mask_cache(ds, get_segmenter('oracle', degrade='blocks:0.3'), tmp_path, 'syn', progress=False)
    assert good.folder != bad.folder and bad.manifest['weights'].endswith('blocks 0.3 seed 0')
    ious = [mask_iou(good[i], bad[i]) for i in range(40)]
    assert 0.3 < sum(ious) / 40 < 0.9
    with pytest.raises(ValueError, match="look like 'erode:2'"):
        get_segmenter('oracle', degrade='erode')


def test_segmenter_benchmark_on_an_image_folder(tmp_path, run_script):
    "benchmarks/segmenters.py on a small image folder: every weight-free segmenter timed, its foreground share in [0, 1]."
    fakes.write_imagefolder(tmp_path / 'photos' / 'test', classes=['a', 'b'], per_class=8, size=(32, 32))
    assert run_script('benchmarks/segmenters.py', '--root', tmp_path / 'photos', '--out', tmp_path) == 0
    out = json.loads((tmp_path / 'segmenters_cpu.json').read_text())
    assert out['images'] == 16 and out['machine']['cpu_count'] >= 1
    for name in ('saliency', 'random_walker', 'centre'):
        assert out[name]['masks_per_s'] > 0 and 0 <= out[name]['fg_share'] <= 1, out[name]
    assert out['saliency']['ratio_to_saliency'] == 1.0 and out['centre']['fg_share'] > 0  # the ellipse is never empty
