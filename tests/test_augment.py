import torch
from torch.utils.data import DataLoader

from segaug_simclr.augment import TwoViews, cifar_augment, crop_flip, ramp_probe, record_draws, simclr_augment
from segaug_simclr.data import ImageTensorDataset, epoch_generator

N = 1500


def test_simclr_pipeline_rates_and_ranges():
    torch.manual_seed(1)
    r = record_draws(simclr_augment(64, s=1.0), ramp_probe(), N)
    assert abs(r['flipped'] / N - 0.5) < 0.05
    assert abs(len(r['jitter']) / N - 0.8) < 0.04
    assert abs(r['gray'] / N - 0.2) < 0.04
    assert abs(len(r['blur_sigma']) / N - 0.5) < 0.05
    assert len(r['crop']) == N
    sig = torch.tensor(r['blur_sigma'])
    assert sig.min() >= 0.1 and sig.max() <= 2.0 and sig.min() < 0.3 and sig.max() > 1.8
    b = torch.tensor([j['brightness_factor'] for j in r['jitter']])
    h = torch.tensor([j['hue_factor'] for j in r['jitter']])
    assert b.min() >= 0.2 and b.max() <= 1.8 and b.min() < 0.3 and b.max() > 1.7  # 0.8 s with s = 1
    assert h.abs().max() <= 0.2 and h.abs().max() > 0.18  # 0.2 s
    orders = {tuple(j['fn_idx']) for j in r['jitter']}
    assert len(orders) > 12  # jitter operations in random order


def test_crop_area_and_ratio_ranges():
    "The pipeline's own crop, drawn on a 512 px image so that whole-pixel rounding stays under 0.5%."
    crop = next(t for t in simclr_augment(224).transforms if type(t).__name__ == 'RandomResizedCrop')
    torch.manual_seed(3)
    big = [torch.zeros(3, 512, 512)]
    hw = [(p['height'], p['width']) for p in (crop.make_params(big) for _ in range(5000))]
    areas = torch.tensor([h * w / 512 ** 2 for h, w in hw]); ratios = torch.tensor([w / h for h, w in hw])
    assert areas.min() >= 0.079 and areas.max() <= 1.0 and areas.min() < 0.09 and areas.max() > 0.97
    assert ratios.min() >= 0.745 and ratios.max() <= 1.34 and ratios.min() < 0.77 and ratios.max() > 1.3
    assert abs(areas.median() - 0.54) < 0.1  # uniform area in [0.08, 1] (less the rejected draws)


def test_cifar_variant_never_blurs_and_uses_strength():
    torch.manual_seed(2)
    r = record_draws(cifar_augment(32, s=0.5), ramp_probe(32), N)
    assert r['blur_sigma'] == [] and 'GaussianBlur' not in repr(cifar_augment())
    b = torch.tensor([j['brightness_factor'] for j in r['jitter']])
    assert b.min() >= 0.6 and b.max() <= 1.4 and b.max() > 1.35  # 0.8 s with s = 0.5
    assert abs(len(r['jitter']) / N - 0.8) < 0.04 and abs(r['gray'] / N - 0.2) < 0.04


def test_two_views_of_one_image_differ():
    img = ramp_probe(32)
    for _ in range(20):
        v1, v2 = TwoViews(cifar_augment())(img)
        assert not torch.equal(v1, v2)


def _views(ds, workers, epoch, seed=0):
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers, generator=epoch_generator(seed, epoch))
    return torch.cat([torch.cat([v1, v2]) for (v1, v2), _ in loader])


def test_streams_differ_per_image_worker_and_epoch_and_replay():
    # 32 copies of one image: any repeated random stream would produce a repeated view
    imgs = ramp_probe(32).expand(32, 3, 32, 32).contiguous()
    ds = ImageTensorDataset(imgs, torch.zeros(32), transform=TwoViews(simclr_augment(32)))
    e0, e1 = _views(ds, 2, 0), _views(ds, 2, 1)
    allv = torch.cat([e0, e1]).flatten(1)
    assert len(torch.unique(allv, dim=0)) == len(allv) == 128
    assert torch.equal(e0, _views(ds, 2, 0))  # the same epoch replays exactly (resume)
    # worker count changes the streams (each worker has its own), but never repeats within a run
    assert len(torch.unique(_views(ds, 0, 0).flatten(1), dim=0)) == 64


def test_crop_flip_has_no_colour_ops():
    t = crop_flip(32)
    assert 'ColorJitter' not in repr(t) and 'Grayscale' not in repr(t)
    assert t(ramp_probe(64)).shape == (3, 32, 32)


def test_blur_benchmark_quick(tmp_path, run_script):
    "benchmarks/blur.py in a small setting: both blurs agree to one grey level, and it writes its JSON."
    import json
    assert run_script('benchmarks/blur.py', '--sizes', '16', '40', '--rounds', '1', '--out', tmp_path) == 0
    rows = json.loads((tmp_path / 'blur_cpu.json').read_text())['rows']
    assert [row['size'] for row in rows] == [16, 40]
    assert all(row['max_abs_diff'] <= 1 for row in rows), rows  # the same blur, up to a rounding tie
    assert all(row['matrix_us'] > 0 and row['conv_us'] > 0 for row in rows)
