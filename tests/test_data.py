import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import fakes
from segaug_simclr.augment import to_float_image
from segaug_simclr.data import (DATASETS, SHAPES, get_dataset, label_fraction, load_rgb,
                                num_classes, synthetic_shapes)


@pytest.fixture
def checks_off(monkeypatch):
    fakes.patch_checksums(monkeypatch)


def test_cifar10_and_cifar100_from_pickled_batches(tmp_path, checks_off):
    fakes.write_cifar10(tmp_path); fakes.write_cifar100(tmp_path)
    tr, te = get_dataset('cifar10', tmp_path, 'train'), get_dataset('cifar10', tmp_path, 'test')
    assert (len(tr), len(te), num_classes(tr)) == (50, 20, 10)
    assert tr.images.dtype == torch.uint8 and tr.images.shape[1:] == (3, 32, 32)  # held in memory, decoded once
    c100 = get_dataset('cifar100', tmp_path, 'test')
    assert (len(c100), num_classes(c100)) == (100, 100)


def test_stl10_binary_splits(tmp_path, checks_off):
    fakes.write_stl10(tmp_path)
    sizes = {s: len(get_dataset('stl10', tmp_path, s)) for s in DATASETS['stl10'].splits}
    assert sizes == {'train': 20, 'test': 10, 'unlabeled': 5, 'train+unlabeled': 25}
    ds = get_dataset('stl10', tmp_path, 'train+unlabeled')
    assert ds.images.shape[1:] == (3, 96, 96) and num_classes(ds) == 10 and (ds.targets == -1).sum() == 5


def test_imagenet_fraction_and_subset_file(tmp_path):
    fakes.write_imagefolder(tmp_path / 'train', classes=[f'n0{i}' for i in range(4)], per_class=20)
    fakes.write_imagefolder(tmp_path / 'val', classes=[f'n0{i}' for i in range(4)], per_class=3)
    full = get_dataset('imagenet', tmp_path, 'train')
    assert (len(full), num_classes(full)) == (80, 4)
    tenth = get_dataset('imagenet', tmp_path, 'train', fraction=0.1, seed=3)
    assert torch.bincount(tenth.targets).tolist() == [2, 2, 2, 2]
    assert [f.name for f in tenth.files] == [f.name for f in get_dataset('imagenet', tmp_path, 'train', fraction=0.1, seed=3).files]
    assert [f.name for f in tenth.files] != [f.name for f in get_dataset('imagenet', tmp_path, 'train', fraction=0.1, seed=4).files]
    (tmp_path / '1percent.txt').write_text('n00_3.JPEG\nn02_7.JPEG\n')
    listed = get_dataset('imagenet', tmp_path, 'train', subset_file=tmp_path / '1percent.txt')
    assert sorted(f.name for f in listed.files) == ['n00_3.JPEG', 'n02_7.JPEG']
    assert len(get_dataset('imagenet', tmp_path, 'val')) == 12
    x, y = get_dataset('imagenet', tmp_path, 'val', transform=to_float_image())[5]
    assert x.shape == (3, 30, 40) and y == 1


def test_flowers_pets_sun_caltech(tmp_path, checks_off):
    fakes.write_flowers102(tmp_path); fakes.write_pets(tmp_path); fakes.write_sun397(tmp_path); fakes.write_caltech101(tmp_path)
    fl = {s: get_dataset('flowers102', tmp_path, s) for s in ('train', 'val', 'test')}
    assert [len(d) for d in fl.values()] == [4, 4, 4] and num_classes(fl['train']) == 102
    pets = get_dataset('pets', tmp_path, 'train')
    assert len(pets) == 6 and num_classes(pets) == 3 and len(get_dataset('pets', tmp_path, 'test')) == 6
    m = pets.mask(0)
    assert m.shape == (16, 20) and m.sum() == 80 and m[4, 5] and not m[0, 0]  # boundary (3) counts as foreground
    sun_tr, sun_te = get_dataset('sun397', tmp_path, 'train'), get_dataset('sun397', tmp_path, 'test')
    assert (len(sun_tr), len(sun_te), num_classes(sun_tr)) == (6, 6, 2)
    assert not set(sun_tr.files) & set(sun_te.files)
    cal_tr, cal_te = get_dataset('caltech101', tmp_path, 'train'), get_dataset('caltech101', tmp_path, 'test')
    assert num_classes(cal_tr) == 3  # BACKGROUND_Google is not a class
    assert torch.bincount(cal_tr.targets).tolist() == [30, 30, 30] and len(cal_te) == 15
    img, _ = cal_tr[[i for i, f in enumerate(cal_tr.files) if f.name == 'image_0005.jpg'][0]]
    assert img.mode == 'RGB'  # grayscale Caltech images arrive as RGB


def test_every_registered_dataset_is_covered():
    covered = {'cifar10', 'cifar100', 'stl10', 'imagenet', 'flowers102', 'pets', 'sun397', 'caltech101', 'imagefolder', 'synthetic'}
    assert set(DATASETS) == covered


def _broken_tree(root):
    good = root / 'train' / 'good'; odd = root / 'train' / 'odd'; (root / 'train' / 'empty').mkdir(parents=True)
    fakes.write_imagefolder(root / 'train', classes=('good',), per_class=3)
    odd.mkdir()
    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert('L').save(odd / 'gray.png')
    Image.fromarray(rgb).convert('P').save(odd / 'palette.png')
    Image.fromarray(rgb).convert('RGBA').save(odd / 'rgba.png')
    Image.fromarray(rgb).convert('CMYK').save(odd / 'cmyk.jpg')
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(odd / 'sixteen.png')
    Image.fromarray(rgb).save(good / 'truncated.jpg', quality=95)
    data = (good / 'truncated.jpg').read_bytes(); (good / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (good / 'empty.jpg').write_bytes(b'')
    (good / 'notes.jpg').write_text('this is not an image')
    return root


def test_bad_files_are_skipped_listed_and_converted(tmp_path):
    _broken_tree(tmp_path)
    with pytest.warns(UserWarning) as w:
        ds = get_dataset('imagefolder', tmp_path, 'train', transform=to_float_image())
    msgs = ' '.join(str(x.message) for x in w)
    assert 'skipped 2 unreadable' in msgs and 'empty' in msgs and 'hold no images' in msgs
    assert sorted(Path(p).name for p, _ in ds.skipped) == ['empty.jpg', 'notes.jpg']
    assert ds.classes == ['empty', 'good', 'odd'] and ds.empty_classes == ['empty']
    assert len(ds) == 9  # 3 good + truncated (caught at load time) + 5 odd modes
    with pytest.warns(UserWarning, match='truncated.jpg'):
        items = [ds[i] for i in range(len(ds))]
    assert all(x.shape[0] == 3 and x.dtype == torch.float32 for x, _ in items)
    assert 'truncated.jpg' in {Path(p).name for p, _ in ds.skipped}
    # in DataLoader workers too: nothing crashes
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ds.transform = lambda im: to_float_image()(im.resize((8, 8)))
        seen = sum(len(y) for _, y in DataLoader(ds, batch_size=4, num_workers=2))
    assert seen == 9
    sixteen = load_rgb(tmp_path / 'train' / 'odd' / 'sixteen.png')
    assert sixteen.mode == 'RGB' and np.asarray(sixteen).max() > 200  # rescaled, not clipped


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'imagefolder: there is no folder .*<class>/<image>'):
        get_dataset('imagefolder', tmp_path / 'nowhere', 'train')
    (tmp_path / 'train').mkdir()
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        get_dataset('imagefolder', tmp_path, 'train')
    (tmp_path / 'train' / 'cat').mkdir()
    with pytest.raises(FileNotFoundError, match='hold no images'):
        get_dataset('imagefolder', tmp_path, 'train')
    with pytest.raises(FileNotFoundError, match=r'flowers102 was not found under .*download=True'):
        get_dataset('flowers102', tmp_path, 'train')
    with pytest.raises(FileNotFoundError, match='image-net.org'):
        get_dataset('imagenet', tmp_path, 'val')


def test_label_fraction_is_stratified_seeded_and_never_empty():
    y = torch.tensor([c for c in range(5) for _ in range([400, 100, 50, 10, 1][c])])
    for frac in (0.01, 0.1, 0.5):
        idx = label_fraction(y, frac, seed=0)
        counts = torch.bincount(y[idx], minlength=5).tolist()
        assert counts == [max(1, round(frac * n)) for n in (400, 100, 50, 10, 1)]
        assert torch.equal(idx, label_fraction(y, frac, seed=0))
        assert len(set(idx.tolist())) == len(idx)
    assert not torch.equal(label_fraction(y, 0.1, seed=0), label_fraction(y, 0.1, seed=1))
    with pytest.raises(ValueError, match='fraction'):
        label_fraction(y, 0)


def test_synthetic_is_deterministic_balanced_and_masks_are_the_shape():
    a, b = synthetic_shapes(500, seed=5), synthetic_shapes(500, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, synthetic_shapes(500, seed=6).images)
    assert torch.bincount(a.targets).tolist() == [50] * 10 and a.classes == list(SHAPES)
    x = a.images.float()
    for i in range(50):
        m = a.masks[i]
        inside, outside = x[i][:, m], x[i][:, ~m]
        assert inside.std(1).max() < 12  # flat object colour (+-5% shading)
        assert (inside.mean(1) - outside.mean(1)).abs().max() > 20 or (inside.mean(1) - outside.mean(1)).norm() > 30
    big = synthetic_shapes(40, size=96, seed=1)
    assert big.images.shape == (40, 3, 96, 96) and big.masks.shape == (40, 96, 96)


def test_synthetic_spurious_backgrounds_only_in_train_split():
    tr = get_dataset('synthetic', split='train', spurious=1.0, n=1000)
    te = get_dataset('synthetic', split='test', spurious=1.0, n=1000)
    def palette_agreement(ds):
        warm = ds.images[:, 0].float().mean((1, 2)) > ds.images[:, 2].float().mean((1, 2))
        return (warm == (ds.targets < 5)).float().mean().item()
    assert palette_agreement(tr) > 0.9
    assert abs(palette_agreement(te) - 0.5) < 0.08
