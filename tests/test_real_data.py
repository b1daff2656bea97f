"""Real CIFAR-10 images (JPEG, ImageFolder layout) from ../shared/data/cifar10-jpeg, where that folder exists."""
import subprocess
from pathlib import Path

import pytest
import torch

from segaug_simclr.augment import to_float_image
from segaug_simclr.data import get_dataset
from segaug_simclr.models import resnet
from segaug_simclr.features import knn_accuracy
from segaug_simclr.train import PretrainConfig, pretrain

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'cifar10-jpeg'
pytestmark = pytest.mark.skipif(not (SHARED / 'train.tar.gz').exists(),
                                reason=f'real CIFAR-10 JPEGs not available ({SHARED} is absent); the project never requires them')


@pytest.fixture(scope='module')
def cifar_jpeg(tmp_path_factory):
    "200 training images per class and 100 test images per class, extracted from the archives."
    root = tmp_path_factory.mktemp('cifar10-jpeg')
    subprocess.run(['tar', 'xzf', SHARED / 'train.tar.gz', '-C', root, '--wildcards', 'train/*/0[0-1]??.jpg'], check=True)
    subprocess.run(['tar', 'xzf', SHARED / 'test.tar.gz', '-C', root, '--wildcards', 'test/*/00??.jpg'], check=True)
    return root


def test_imagefolder_reads_real_cifar(cifar_jpeg):
    ds = get_dataset('imagefolder', cifar_jpeg, 'train', transform=to_float_image())
    assert ds.classes == ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    assert len(ds) == 2000 and torch.bincount(ds.targets).tolist() == [200] * 10 and ds.skipped == []
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1


@pytest.mark.slow
def test_brief_pretraining_beats_random_encoder_under_knn(cifar_jpeg, tmp_path):
    bank = get_dataset('imagefolder', cifar_jpeg, 'train', transform=to_float_image())
    query = get_dataset('imagefolder', cifar_jpeg, 'test', transform=to_float_image())
    torch.manual_seed(0)
    random_acc = knn_accuracy(resnet(18, 0.25, cifar_stem=True), bank, query, 10, k=50)
    cfg = PretrainConfig(dataset='imagefolder', data_root=str(cifar_jpeg), depth=18, width=0.25, epochs=5, batch_size=128,
                         lr=1.0, temperature=0.2, warmup_epochs=1, amp='bf16', channels_last=True, device='cpu',
                         out=str(tmp_path / 'run'), progress=False)
    res = pretrain(cfg)
    losses = [h['loss'] for h in res['history']]
    assert losses[-1] < losses[0]
    acc = knn_accuracy(res['model'].encoder, bank, query, 10, k=50)
    print(f'kNN top-1 on 1000 real CIFAR-10 test images: random encoder {random_acc:.3f}, after 5 epochs {acc:.3f}')
    assert acc > random_acc + 0.04
