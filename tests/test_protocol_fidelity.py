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

