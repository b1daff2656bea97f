"""`--tensorboard DIR`: the TensorBoardLog hook's event files, read back as TensorBoard reads them, and the one-line
error when the optional tensorboard package is missing."""
import sys
from pathlib import Path

import pytest

from segaug_simclr.core import read_jsonl
from segaug_simclr.checkpoint import METRICS
from segaug_simclr.pretrain_cli import main, parse_config
from segaug_simclr.train import pretrain

pytest.importorskip('tensorboard')  # a dev requirement: installed wherever the tests run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


def _events(folder):
    acc = EventAccumulator(str(folder), size_guidance={'images': 0, 'scalars': 0}).Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()['scalars']}, acc.Images('views')


def test_tensorboard_logs_a_resumed_segaug_run(tiny_cfg, tmp_path):
    tb = tmp_path / 'tb'
    cfg = tiny_cfg(augment='segaug', segmenter='oracle', mask_cache=str(tmp_path / 'masks'), knn_every=1, knn_images=64,
                   knn_k=5, log_every=1, tensorboard=str(tb))
    pretrain(tiny_cfg(**vars(cfg) | dict(stop_after=1)))
    with SummaryWriter(str(tb)) as killed:  # what a run killed in epoch 2 wrote after its checkpoint (step 4)
        killed.add_scalar('train/loss', 99.0, 5); killed.add_scalar('epoch/loss', 99.0, 8)
    res = pretrain(tiny_cfg(**vars(cfg) | dict(resume=True)))
    scalars, views = _events(tb)
    recs = read_jsonl(Path(res['out']) / METRICS)
    steps, epochs = [r for r in recs if r['kind'] == 'step'], [r for r in recs if r['kind'] == 'epoch']
    # 128 images in batches of 32: 4 steps an epoch, a step record at every one; the killed run's leftovers are hidden
    assert scalars['train/loss'] == [(r['step'], pytest.approx(r['loss'])) for r in steps] and len(steps) == 8
    assert scalars['train/lr'] == [(r['step'], pytest.approx(r['lr'])) for r in steps]
    for k in ('loss', 'probe_acc', 'knn_acc', 'fallback_share'):  # one value per epoch, at the epoch's last step
        assert scalars[f'epoch/{k}'] == [(4, pytest.approx(epochs[0][k])), (8, pytest.approx(epochs[1][k]))], k
    assert [v.step for v in views] == [1, 5]  # the first batch of each epoch
    assert (views[0].height, views[0].width) == (2 * 33 + 1, 8 * 33 + 1)  # 8 images of 32 px, view 1 above view 2


def test_tensorboard_changes_nothing_the_run_computes(tiny_cfg, tmp_path):
    plain = pretrain(tiny_cfg(out=str(tmp_path / 'plain'), log_every=1))
    logged = pretrain(tiny_cfg(out=str(tmp_path / 'logged'), log_every=1, tensorboard=str(tmp_path / 'tb')))
    assert [r['loss'] for r in logged['history']] == [r['loss'] for r in plain['history']]


def test_missing_tensorboard_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    assert parse_config(['--tensorboard', 'runs/tb']).tensorboard == 'runs/tb'  # the flag comes from PretrainConfig
    monkeypatch.setitem(sys.modules, 'tensorboard', None)  # as if it were not installed
    out = tmp_path / 'run'
    status = main(['--dataset', 'synthetic', '--num-images', '64', '--batch-size', '32', '--depth', '18', '--width', '0.25',
                   '--device', 'cpu', '--no-progress', '--out', str(out), '--tensorboard', str(tmp_path / 'tb')])
    err = capsys.readouterr().err
    assert status == 2 and err.count('\n') == 1, err
    assert err.startswith('error: --tensorboard needs the tensorboard package') and 'pip install tensorboard' in err
    assert not out.exists() and not (tmp_path / 'tb').exists()  # refused before any work
