"Protocol numbers pinned to the SimCLR paper (Chen et al., 2020, appendix B) and the thesis (section 5.2)."
import pytest
import torch

from segaug_simclr.data import synthetic_shapes
from segaug_simclr.evaluate import finetune
from segaug_simclr.models import resnet


@pytest.fixture(scope='module')
def small():
    return synthetic_shapes(40, seed=0), synthetic_shapes(20, seed=1)


@pytest.mark.parametrize('batch_size, lr', [(4096, 0.8), (256, 0.05)])
def test_finetune_learning_rate_follows_the_paper(small, monkeypatch, batch_size, lr):
    "SimCLR B.5 / thesis 5.2.2: Nesterov SGD with lr 0.8 at batch 4096, i.e. 0.05 x B/256: the rate the optimiser gets."
    used = []
    class Spy(torch.optim.SGD):
        def __init__(self, params, **kw):
            used.append(kw); super().__init__(params, **kw)
    monkeypatch.setattr(torch.optim, 'SGD', Spy)
    tr, te = small
    rec = finetune(resnet(18, 0.25, cifar_stem=True), tr, te, fraction=1.0, epochs=1, batch_size=batch_size, image_size=32)
    assert len(used) == 1
    assert used[0]['lr'] == pytest.approx(lr) and rec['hparams']['lr'] == pytest.approx(lr)
    assert (used[0]['momentum'], used[0]['nesterov'], used[0]['weight_decay']) == (0.9, True, 0)


def test_recipes_pin_the_papers_and_the_thesis_numbers():
    from segaug_simclr.optim import scaled_lr
    from segaug_simclr.checkpoint import default_recipe, recipe_names, recipe_settings
    assert set(recipe_names()) == {'paper-imagenet', 'paper-cifar', 'thesis-imagenet', 'thesis-cifar', 'thesis-cifar-literal'}
    s = {r: recipe_settings(r) for r in recipe_names()}
    # colour strength: SimCLR 1.0 on ImageNet, 0.5 on CIFAR-10 (B.9); the thesis 1.0 on both (5.2.1, "same as ImageNet")
    assert [s[r]['color_strength'] for r in ('paper-imagenet', 'paper-cifar', 'thesis-imagenet', 'thesis-cifar')] == [1.0, 0.5, 1.0, 1.0]
    # blur on ImageNet, none on CIFAR (paper B.9, thesis 5.2.1); crops down to 8% of the area everywhere
    assert [s[r]['augment'] for r in recipe_names()] == ['simclr', 'cifar', 'simclr', 'cifar', 'cifar']
    assert {v['crop_min'] for v in s.values()} == {0.08}
    peak = lambda r, B: scaled_lr(s[r]['lr'], B, s[r]['lr_scaling'])
    assert peak('paper-imagenet', 4096) == pytest.approx(4.8) and peak('thesis-imagenet', 4096) == pytest.approx(4.8)
    # thesis CIFAR "Learning Rate: 1.0" at batch 1024 and 128: scaled (default) and literal readings
    assert (peak('thesis-cifar', 1024), peak('thesis-cifar', 128)) == (4.0, 0.5)
    assert (peak('thesis-cifar-literal', 1024), peak('thesis-cifar-literal', 128)) == (1.0, 1.0)
    assert [default_recipe(d, n) for d, n in (('cifar10', 32), ('cifar10', 224), ('cifar100', 32), ('imagenet', 224),
                                                ('synthetic', 32), ('synthetic', 96))] == \
        ['paper-cifar', 'paper-cifar', 'paper-cifar', 'paper-imagenet', 'paper-cifar', 'paper-imagenet']
    with pytest.raises(ValueError, match='thesis-cifar-literal'):
        recipe_settings('thesis')


def test_recipe_reaches_the_run_and_explicit_settings_win(tiny_cfg, monkeypatch):
    import json
    from pathlib import Path
    from segaug_simclr import train
    from segaug_simclr.core import read_jsonl
    made, opt = [], []
    real_aug, real_opt = train.make_augment, train.make_optimizer
    monkeypatch.setattr(train, 'make_augment', lambda *a, **k: made.append(a) or real_aug(*a, **k))
    monkeypatch.setattr(train, 'make_optimizer', lambda *a, **k: opt.append(a) or real_opt(*a, **k))
    cfg = tiny_cfg(recipe='thesis-cifar-literal', lr=None, color_strength=0.7, epochs=1)
    res = train.pretrain(cfg)
    assert cfg.lr is None and cfg.augment is None  # the caller's config is not changed
    assert made == [('cifar', 32, 0.7, 0.08)]       # the recipe's pipeline, the explicit strength
    assert opt[0][2] == 1.0                          # literal reading: lr 1.0 whatever the batch (32 here)
    conf = json.loads((Path(res['out']) / train.CONFIG).read_text())
    assert (conf['recipe'], conf['lr'], conf['lr_scaling'], conf['color_strength']) == ('thesis-cifar-literal', 1.0, 'none', 0.7)
    assert conf['recipe_overrides'] == {'color_strength': 0.7}
    assert conf['recipe_set'] == {'augment': 'cifar', 'crop_min': 0.08, 'lr': 1.0, 'lr_scaling': 'none'}
    epochs = [r for r in read_jsonl(Path(res['out']) / train.METRICS) if r['kind'] == 'epoch']
    assert epochs and all(r['recipe'] == 'thesis-cifar-literal' and r['recipe_overrides'] == {'color_strength': 0.7}
                          for r in epochs)


def test_cli_recipe_flag_and_help():
    from segaug_simclr.pretrain_cli import build_parser, parse_config
    from segaug_simclr.train import resolve_recipe
    c = resolve_recipe(parse_config(['--dataset', 'imagenet', '--image-size', '224', '--recipe', 'thesis-imagenet',
                                     '--crop-min', '0.2']))
    assert (c.recipe, c.augment, c.color_strength, c.crop_min, c.lr) == ('thesis-imagenet', 'simclr', 1.0, 0.2, 0.3)
    c = resolve_recipe(parse_config(['--dataset', 'imagenet', '--image-size', '224']))  # the paper's, by default
    assert (c.recipe, c.color_strength) == ('paper-imagenet', 1.0)
    text = ' '.join(build_parser().format_help().split())
    assert 'thesis-cifar-literal' in text and 'explicit flags override it' in text
    with pytest.raises(ValueError, match='recipe .nope. is unknown'):
        resolve_recipe(parse_config(['--recipe', 'nope'])).validate()


def test_linear_eval_history_per_epoch(small):
    from segaug_simclr.evaluate import linear_eval
    tr, te = small
    enc = resnet(18, 0.25, cifar_stem=True)
    for protocol in ('cached', 'augmented'):
        rec = linear_eval(enc, tr, te, protocol, epochs=3, batch_size=16, val_ds=te)
        assert [h['epoch'] for h in rec['history']] == [1, 2, 3]
        assert all(set(h) == {'epoch', 'loss', 'train_top1', 'val_top1'} for h in rec['history'])
        assert all(0 <= h['train_top1'] <= 1 and 0 <= h['val_top1'] <= 1 and h['loss'] > 0 for h in rec['history'])
        # the validation split is the test split here, so the last point is the reported score
        assert rec['history'][-1]['val_top1'] == pytest.approx(rec['metrics']['top1'])
    rec = linear_eval(enc, tr, te, 'cached', epochs=2, batch_size=16)            # no validation split: no val_top1
    assert all('val_top1' not in h for h in rec['history']) and rec['n_val'] == 0
    rec = linear_eval(enc, tr, te, 'cached', epochs=2, batch_size=16, val_per_class=0.25)  # held out per class
    assert (rec['n_train'], rec['n_val']) == (30, 10) and all('val_top1' in h for h in rec['history'])


def test_linear_history_tracks_training_on_a_learnable_problem():
    from segaug_simclr.evaluate import train_linear
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 8, generator=g); y = (X[:, 0] > 0).long()
    batches = lambda e: ((X[i], y[i]) for i in torch.randperm(400, generator=torch.Generator().manual_seed(e)).split(50))
    clf = train_linear(batches, 8, 2, epochs=5, steps_per_epoch=8, lr=0.5, val=(X[:100], y[:100]))
    h = clf.history
    assert h[-1]['loss'] < h[0]['loss'] and h[-1]['train_top1'] > 0.9 and h[-1]['val_top1'] > 0.9
    assert [e['epoch'] for e in h] == [1, 2, 3, 4, 5] and h[0]['train_top1'] < h[-1]['train_top1']


def test_finetune_history(small):
    tr, te = small
    rec = finetune(resnet(18, 0.25, cifar_stem=True), tr, te, fraction=1.0, epochs=2, batch_size=16, image_size=32, val_ds=te)
    assert [h['epoch'] for h in rec['history']] == [1, 2] and all('val_top1' in h for h in rec['history'])
    assert rec['history'][-1]['val_top1'] == pytest.approx(rec['metrics']['top1'])


def test_transfer_records_name_the_method_and_sgd_settings(small, monkeypatch):
    from segaug_simclr.evaluate import transfer_eval
    tr, te = small
    enc = resnet(18, 0.25, cifar_stem=True)
    lb = transfer_eval(enc, tr, te, image_size=32, grid=(1e-2, 1.0), max_iter=20)
    assert (lb['protocol'], lb['method'], lb['sgd']) == ('transfer-lbfgs', 'lbfgs', None)
    assert lb['lbfgs'] == {'grid': [1e-2, 1.0], 'max_iter': 20}
    used = []
    class Spy(torch.optim.SGD):
        def __init__(self, params, **kw):
            used.append(kw); super().__init__(params, **kw)
    monkeypatch.setattr(torch.optim, 'SGD', Spy)
    sg = transfer_eval(enc, tr, te, image_size=32, method='sgd', sgd_epochs=3, batch_size=64, sgd_base_lr=0.2,
                       sgd_weight_decay=1e-4)
    assert (sg['protocol'], sg['method'], sg['lbfgs']) == ('transfer-sgd', 'sgd', None)
    assert sg['sgd'] == dict(epochs=3, batch_size=64, base_lr=0.2, lr=0.05, momentum=0.9, nesterov=True,
                             weight_decay=1e-4, schedule='cosine', data='train+val')
    assert used == [dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)]  # what the record says is what ran
    assert len(sg['history']) == 3


def test_cifar_at_224_is_evaluated_as_trained(small):
    "Thesis 5.2.1: CIFAR images resized to 224 x 224 for a standard ResNet; evaluation resizes the whole image too."
    from segaug_simclr.augment import center_crop_eval, resize_eval
    from segaug_simclr.evaluate import default_eval_transform, image_side, knn_eval, linear_eval
    tr, te = small
    assert image_side(tr) == 32
    img = tr.images[0]
    assert torch.equal(default_eval_transform(224, image_side(tr))(img), resize_eval(224)(img))
    assert torch.equal(default_eval_transform(224, 500)(img), center_crop_eval(224, 256)(img))  # ImageNet-sized images
    enc = resnet(18, 0.25)
    _, a = linear_eval(enc, tr, te, epochs=2, batch_size=20, image_size=64, return_model=True)
    _, b = linear_eval(enc, tr, te, epochs=2, batch_size=20, image_size=64, eval_transform=resize_eval(64), return_model=True)
    _, c = linear_eval(enc, tr, te, epochs=2, batch_size=20, image_size=64, eval_transform=center_crop_eval(64, 73), return_model=True)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)
    k1 = knn_eval(enc, tr, te, k=5, image_size=64)['metrics']
    assert k1 == knn_eval(enc, tr, te, k=5, image_size=64, eval_transform=resize_eval(64))['metrics']


def test_segaug_region_settings_default_to_the_thesis_and_reach_the_run(tiny_cfg, tmp_path, monkeypatch):
    import json
    from pathlib import Path
    from torchvision.transforms import v2
    from segaug_simclr import train
    from segaug_simclr.augment import ScaledGaussianBlur
    from segaug_simclr.segaug import thesis_policy
    c = train.PretrainConfig()
    assert (c.fg_color_strength, c.fg_color_p, c.bg_blur_p, c.bg_gray_p) == (1.0, 0.8, 0.85, 0.3)  # thesis 5.2.1
    pol = thesis_policy(224)
    (jit,), (blur, gray) = pol.fg, pol.bg
    assert jit.p == 0.8 and jit.transforms[0].brightness == (pytest.approx(0.2), pytest.approx(1.8))  # s = 1.0
    assert blur.p == 0.85 and isinstance(blur.transforms[0], ScaledGaussianBlur) and blur.transforms[0].sigma == (0.1, 2.0)
    assert isinstance(gray, v2.RandomGrayscale) and gray.p == 0.3
    seen = []
    real = train.thesis_policy
    monkeypatch.setattr(train, 'thesis_policy', lambda *a, **k: seen.append(a) or real(*a, **k))
    res = train.pretrain(tiny_cfg(augment='segaug', segmenter='oracle', mask_cache=str(tmp_path / 'masks'), epochs=1,
                                  fg_color_strength=0.4, fg_color_p=0.6, bg_blur_p=0.5, bg_gray_p=0.1, color_strength=0.9))
    assert seen == [(32, 0.4, 0.6, 0.5, 0.1)]
    conf = json.loads((Path(res['out']) / train.CONFIG).read_text())
    assert {k: conf[k] for k in ('fg_color_strength', 'fg_color_p', 'bg_blur_p', 'bg_gray_p', 'color_strength')} == \
        dict(fg_color_strength=0.4, fg_color_p=0.6, bg_blur_p=0.5, bg_gray_p=0.1, color_strength=0.9)
    with pytest.raises(ValueError, match='probabilities'):
        tiny_cfg(bg_blur_p=1.5).validate()


@pytest.mark.parametrize('sigma', [1.0, 2.0])
def test_segaug_background_blur_on_a_large_image_matches_the_standard_view(sigma):
    "The region blur runs before the crop; after the crop and resize it must be as strong as SimCLR's blur of the view."
    from torchvision.transforms import v2
    from segaug_simclr.augment import GaussianBlur, ScaledGaussianBlur
    from segaug_simclr.segaug import RegionPolicy, SegAugViews
    g = torch.Generator().manual_seed(0)
    big = (torch.rand(3, 448, 448, generator=g) * 255).to(torch.uint8)
    mask = torch.zeros(448, 448, dtype=torch.bool)                    # all background
    rough = lambda x: (x[..., :, 1:] - x[..., :, :-1]).abs().mean().item()
    views = SegAugViews(224, RegionPolicy(bg=[ScaledGaussianBlur(224, (sigma, sigma))]), lo=0.0, hi=1.0, scale=(1.0, 1.0))
    region = rough(views(big, mask)[0])                               # whole-image crop, resized to 224
    down = v2.functional.resize(big, [224, 224], antialias=True)
    standard = rough(v2.functional.to_dtype(GaussianBlur(23, sigma=(sigma, sigma))(down), torch.float32, scale=True))
    sized_for_view = rough(v2.functional.to_dtype(
        v2.functional.resize(GaussianBlur(23, sigma=(sigma, sigma))(big), [224, 224], antialias=True), torch.float32, scale=True))
    assert region == pytest.approx(standard, rel=0.05)
    assert sized_for_view > 1.5 * standard                            # the earlier, view-sized blur: far too weak
    # on an image of the view's own size the scaled blur is SimCLR's blur, draw for draw
    small = big[:, :224, :224]
    torch.manual_seed(3); a = ScaledGaussianBlur(224)(small)
    torch.manual_seed(3); b = GaussianBlur(23, sigma=(0.1, 2.0))(small)
    assert torch.equal(a, b)


# A reference ResNet-50 (Nx) in the layout of the converted official SimCLR v1 checkpoints (simclr-converter's
# resnet_wider.py: torchvision's names, every channel count x width, stem included, stride on the 3x3 convolution,
# `downsample` registered first in each block), written here independently of segaug_simclr.models.
class _RefBlock(torch.nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        nn = torch.nn
        self.downsample = (nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
                           if stride != 1 or cin != planes * 4 else None)
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)

    def forward(self, x):
        r = torch.relu
        out = self.bn3(self.conv3(r(self.bn2(self.conv2(r(self.bn1(self.conv1(x))))))))
        return r(out + (x if self.downsample is None else self.downsample(x)))


class _RefResNet50(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1 = nn.Conv2d(3, 64 * w, 7, 2, 3, bias=False), nn.BatchNorm2d(64 * w)
        cin = 64 * w
        for i, (planes, n, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
            blocks = []
            for b in range(n):
                blocks.append(_RefBlock(cin, planes * w, stride if b == 0 else 1)); cin = planes * w * 4
            setattr(self, f'layer{i}', nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, 1000)

    def features(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5): x = getattr(self, f'layer{i}')(x)
        return x.mean((2, 3))


def _random_v1(w, seed=0):
    "A reference network with random weights and random BatchNorm statistics (so that eval mode is tested too)."
    torch.manual_seed(seed)
    ref = _RefResNet50(w).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 2.0)
    return ref


@pytest.mark.parametrize('w', [1, 2])
def test_simclr_v1_weights_load_and_match_the_reference_network(tmp_path, w):
    from segaug_simclr.evaluate import export_torchvision_state_dict, load_encoder, load_simclr_v1
    ref = _random_v1(w)
    path = tmp_path / f'resnet50-{w}x.pth'
    torch.save({'state_dict': ref.state_dict()}, path)                  # the converter's file layout
    enc = load_encoder(f'simclr-v1:{path}').eval()
    assert enc.out_dim == 2048 * w
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), ref.features(x), atol=1e-4, rtol=1e-4)
    # export -> the same dict -> the same network
    sd = export_torchvision_state_dict(enc, tmp_path / 'back.pth')
    assert all(torch.equal(sd[k], v) for k, v in ref.state_dict().items() if not k.startswith('fc.'))
    ref2 = _RefResNet50(w).eval(); ref2.load_state_dict(torch.load(tmp_path / 'back.pth') | {k: v for k, v in ref.state_dict().items() if k.startswith('fc.')})
    with torch.no_grad():
        assert torch.allclose(ref2.features(x), ref.features(x))
    with pytest.raises(ValueError, match=f'holds ResNet-50 \\({w}x\\), not \\(4x\\)'):
        load_simclr_v1(path, width=4)


def test_simclr_v1_wrong_layouts_are_refused_with_a_reason(tmp_path):
    from segaug_simclr.evaluate import load_encoder
    sd = _random_v1(1).state_dict()
    cases = {'prefixed': ({f'encoder.{k}': v for k, v in sd.items()}, 'key layout'),
             'cifar-stem': (sd | {'conv1.weight': torch.zeros(64, 3, 3, 3)}, 'stem'),
             'odd width': (sd | {'conv1.weight': torch.zeros(96, 3, 7, 7)}, 'stem'),
             'resnet-101': (sd | {'layer3.10.conv1.weight': torch.zeros(256, 1024, 1, 1)}, 'unexpected'),
             'missing': ({k: v for k, v in sd.items() if k != 'layer2.0.bn1.running_var'}, 'missing')}
    for name, (bad, msg) in cases.items():
        torch.save({'state_dict': bad}, tmp_path / 'bad.pth')
        with pytest.raises(ValueError, match=msg):
            load_encoder(f'simclr-v1:{tmp_path / "bad.pth"}')
    with pytest.raises(FileNotFoundError, match='convert'):
        load_encoder(f'simclr-v1:{tmp_path / "none.pth"}')
