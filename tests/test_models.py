import pytest
import torch
from segaug_simclr.models import ProjectionHead, count_params, resnet, simclr_model


@pytest.mark.parametrize('width,millions', [(1, 23.5), (2, 93.9), (4, 375.4)])
def test_resnet50_parameter_counts_match_simclr_table6(width, millions):
    # SimCLR Table 6 / thesis Table 1: 24M, 94M, 375M (encoder without classifier)
    with torch.device('meta'):
        n = count_params(resnet(50, width))
    assert abs(n / 1e6 - millions) < 0.1


def test_width_multiplies_every_channel_including_stem():
    with torch.device('meta'):
        e1, e2 = resnet(50, 1), resnet(50, 2)
    assert e2.conv1.out_channels == 2 * e1.conv1.out_channels == 128
    assert e2.out_dim == 4096 and e1.out_dim == 2048
    # torchvision's wide_resnet50_2 only widens the bottleneck: a different, smaller network
    from torchvision.models import wide_resnet50_2
    with torch.device('meta'):
        wrn = wide_resnet50_2()
    assert abs((count_params(wrn) - count_params(wrn.fc)) / 1e6 - 66.8) < 0.2
    assert count_params(e2) > 1.3 * (count_params(wrn) - count_params(wrn.fc))


@pytest.mark.parametrize('depth', [18, 34, 50, 101])
def test_cifar_stem_keeps_resolution(depth):
    enc = resnet(depth, width=0.25, cifar_stem=True).eval()
    x = torch.randn(2, 3, 32, 32)
    s = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
    assert s.shape[-2:] == (32, 32)
    assert enc.layer4(enc.layer3(enc.layer2(enc.layer1(s)))).shape[-2:] == (4, 4)
    assert enc(x).shape == (2, enc.out_dim)
    imagenet = resnet(depth, width=0.25).eval()
    s2 = imagenet.maxpool(imagenet.relu(imagenet.bn1(imagenet.conv1(x))))
    assert s2.shape[-2:] == (8, 8)


@pytest.mark.parametrize('width,out', [(0.25, 128), (0.5, 256), (1, 512)])
def test_fractional_widths(width, out):
    enc = resnet(18, width, cifar_stem=True)
    assert enc.out_dim == out
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, out)


def test_bad_depth_and_width_are_clear_errors():
    with pytest.raises(ValueError, match='choose one of'):
        resnet(152)
    with pytest.raises(ValueError, match='width must be positive'):
        resnet(18, 0)


def test_projection_head_structure_and_simclr_outputs():
    head = ProjectionHead(64, 32, 16)
    assert [type(m).__name__ for m in head] == ['Linear', 'BatchNorm1d', 'ReLU', 'Linear']
    assert head[0].out_features == 32 and head[3].out_features == 16
    m = simclr_model(18, 0.25, cifar_stem=True)
    h, z = m(torch.randn(3, 3, 32, 32))
    assert h.shape == (3, 128) and z.shape == (3, 128)
    assert torch.allclose(m.head(h), z)
