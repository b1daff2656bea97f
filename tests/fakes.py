"""Tiny datasets written in the real on-disk formats that torchvision's classes read.

The datasets cannot be downloaded on these machines; these files exercise the real loading code. Their
checksums are not the official ones, so tests patch torchvision's md5 checks (`patch_checksums`)."""
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def _img(size=(40, 30), mode='RGB'):
    a = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


def patch_checksums(monkeypatch):
    import torchvision.datasets.cifar as cifar, torchvision.datasets.flowers102 as fl, torchvision.datasets.stl10 as stl
    ok = lambda *a, **k: True
    for mod in (cifar, fl, stl): monkeypatch.setattr(mod, 'check_integrity', ok)
    monkeypatch.setattr(stl.STL10, '_check_integrity', lambda self: True)


def write_cifar10(root, n_train=50, n_test=20):
    base = Path(root) / 'cifar-10-batches-py'; base.mkdir(parents=True)
    per = n_train // 5
    for i in range(1, 6):
        batch = {'data': RNG.integers(0, 256, (per, 3072), dtype=np.uint8), 'labels': [j % 10 for j in range(per)]}
        pickle.dump(batch, open(base / f'data_batch_{i}', 'wb'))
    pickle.dump({'data': RNG.integers(0, 256, (n_test, 3072), dtype=np.uint8), 'labels': [j % 10 for j in range(n_test)]},
                open(base / 'test_batch', 'wb'))
    pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, open(base / 'batches.meta', 'wb'))


def write_cifar100(root, n_train=200, n_test=100):
    base = Path(root) / 'cifar-100-python'; base.mkdir(parents=True)
    for name, n in (('train', n_train), ('test', n_test)):
        pickle.dump({'data': RNG.integers(0, 256, (n, 3072), dtype=np.uint8), 'fine_labels': [j % 100 for j in range(n)]},
                    open(base / name, 'wb'))
    pickle.dump({'fine_label_names': [f'f{i}' for i in range(100)]}, open(base / 'meta', 'wb'))


def write_stl10(root, n_train=20, n_test=10, n_unlabeled=5):
    base = Path(root) / 'stl10_binary'; base.mkdir(parents=True)
    for split, n in (('train', n_train), ('test', n_test)):
        RNG.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(base / f'{split}_X.bin')
        (np.arange(n) % 10 + 1).astype(np.uint8).tofile(base / f'{split}_y.bin')
    RNG.integers(0, 256, n_unlabeled * 3 * 96 * 96, dtype=np.uint8).tofile(base / 'unlabeled_X.bin')
    (base / 'class_names.txt').write_text('\n'.join(f's{i}' for i in range(10)))
    (base / 'fold_indices.txt').write_text('\n'.join(' '.join(map(str, range(i, n_train, 10))) for i in range(10)))


def write_imagefolder(folder, classes=('a', 'b', 'c'), per_class=4, size=(40, 30)):
    for c in classes:
        (Path(folder) / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class): _img(size).save(Path(folder) / c / f'{c}_{i}.JPEG')


def write_flowers102(root, n=12):
    from scipy.io import savemat
    base = Path(root) / 'flowers-102'; (base / 'jpg').mkdir(parents=True)
    for i in range(1, n + 1): _img().save(base / 'jpg' / f'image_{i:05d}.jpg')
    savemat(base / 'imagelabels.mat', {'labels': np.array([(i % 3) + 1 for i in range(n)])})
    ids = np.arange(1, n + 1)
    savemat(base / 'setid.mat', {'trnid': ids[0::3], 'valid': ids[1::3], 'tstid': ids[2::3]})


def write_pets(root, breeds=('Abyssinian', 'beagle', 'Bengal'), per_breed=4):
    base = Path(root) / 'oxford-iiit-pet'
    (base / 'images').mkdir(parents=True); (base / 'annotations' / 'trimaps').mkdir(parents=True)
    lines = {'trainval': [], 'test': []}
    for b, breed in enumerate(breeds):
        for i in range(1, per_breed + 1):
            name = f'{breed}_{i}'
            _img((20, 16)).save(base / 'images' / f'{name}.jpg')
            tri = np.full((16, 20), 2, np.uint8); tri[4:12, 5:15] = 1; tri[4, 5:15] = 3  # fg, bg, boundary
            Image.fromarray(tri).save(base / 'annotations' / 'trimaps' / f'{name}.png')
            species = 1 if breed[0].isupper() else 2
            lines['trainval' if i <= per_breed // 2 else 'test'].append(f'{name} {b + 1} {species} 1')
    for split, ls in lines.items(): (base / 'annotations' / f'{split}.txt').write_text('\n'.join(ls) + '\n')


def write_sun397(root, classes=('a/abbey', 'b/bakery/shop'), per_class=6):
    base = Path(root) / 'SUN397'; base.mkdir(parents=True)
    (base / 'ClassName.txt').write_text(''.join(f'/{c}\n' for c in classes))
    for c in classes:
        (base / c).mkdir(parents=True)
        for i in range(per_class): _img().save(base / c / f'sun_{c.replace("/", "")}{i}.jpg')


def write_caltech101(root, categories=('Faces', 'accordion', 'airplanes'), per_class=35):
    base = Path(root) / 'caltech101' / '101_ObjectCategories'
    for c in categories + ('BACKGROUND_Google',):
        (base / c).mkdir(parents=True)
        for i in range(1, per_class + 1):
            _img((24, 20), 'L' if i % 5 == 0 else 'RGB').save(base / c / f'image_{i:04d}.jpg')  # some grayscale, as in Caltech
