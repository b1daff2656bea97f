"Issue 10: no silent wrong results. Each test reproduces one way a run, a record or a cache went silently wrong."
import json, os, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from segaug_simclr.core import read_jsonl
from segaug_simclr.train import CHECKPOINT, CONFIG, METRICS, RESUME_MAY_CHANGE, PretrainConfig, load_checkpoint, pretrain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory):
    "A run folder after one of two epochs (tiny_cfg's settings, step records every batch), made once per module."
    from conftest import TINY
    out = tmp_path_factory.mktemp('base') / 'run'
    pretrain(PretrainConfig(**TINY | dict(out=str(out), stop_after=1, log_every=1)))
    return out


@pytest.fixture
def run1(one_epoch, tiny_cfg):
    "A fresh copy of `one_epoch` in tiny_cfg's --out; returns tiny_cfg's config of that run."
    import shutil
    cfg = tiny_cfg(stop_after=1, log_every=1)
    shutil.copytree(one_epoch, cfg.out)
    return cfg


# ---- 1. resume compares the whole configuration and never rewrites the run's record

@pytest.mark.parametrize('change', [dict(lr=0.1), dict(temperature=0.5), dict(num_images=96), dict(spurious=0.5),
                                    dict(augment='simclr'), dict(seed=1), dict(epochs=3)])
def test_resume_refuses_changed_settings(tiny_cfg, run1, change):
    cfg = run1
    out = Path(cfg.out)
    before = {p: (out / p).read_bytes() for p in (CHECKPOINT, CONFIG, METRICS)}
    (name, new), = change.items()
    old = getattr(cfg, name)
    with pytest.raises(ValueError) as e:
        pretrain(tiny_cfg(resume=True, **change))
    msg = str(e.value)
    assert f"--{name.replace('_', '-')}: {old!r} -> {new!r}" in msg and '--out' in msg, msg
    assert {p: (out / p).read_bytes() for p in before} == before  # nothing rewritten


def test_resume_lists_every_difference_and_new_fields_default(tiny_cfg, run1):
    with pytest.raises(ValueError) as e:
        pretrain(tiny_cfg(resume=True, lr=0.1, seed=3, stop_after=1, workers=0, log_every=1))
    msg = str(e.value)
    assert '--lr: 0.5 -> 0.1' in msg and '--seed: 0 -> 3' in msg
    assert '--stop-after' not in msg.split('Only')[0] and '--log-every' not in msg.split('Only')[0]
    # a checkpoint written before a field existed compares as that field's default
    from segaug_simclr.train import resume_differences
    saved = load_checkpoint(Path(tiny_cfg().out) / CHECKPOINT)['config']
    del saved['crop_min']
    assert resume_differences(saved, tiny_cfg()) == {}
    assert resume_differences(saved, tiny_cfg(crop_min=0.2)) == {'crop_min': (0.08, 0.2)}


def test_resume_may_change_only_what_does_not_change_the_result(tiny_cfg, run1, tmp_path):
    assert {'stop_after', 'workers', 'progress', 'log_every', 'out', 'resume'} <= set(RESUME_MAY_CHANGE)
    assert not {'lr', 'temperature', 'seed', 'num_images', 'spurious', 'augment', 'epochs', 'batch_size', 'amp'} & set(RESUME_MAY_CHANGE)
    straight = load_checkpoint(pretrain(tiny_cfg(out=str(tmp_path / 'a')))['checkpoint'])
    import shutil; shutil.copytree(Path(tiny_cfg().out), tmp_path / 'b')
    orig = (tmp_path / 'b' / CONFIG).read_text()
    res = pretrain(tiny_cfg(out=str(tmp_path / 'b'), resume=True, log_every=3, knn_every=1, knn_images=32, knn_k=5))
    resumed = load_checkpoint(res['checkpoint'])
    assert all(torch.equal(straight['model'][k], resumed['model'][k]) for k in straight['model'])
    assert (tmp_path / 'b' / CONFIG).read_text() == orig  # the run's settings as first recorded
    drop = lambda c: {k: v for k, v in c.items() if k not in ('out', 'stop_after', 'log_every')}
    assert drop(resumed['config']) == drop(straight['config'])  # the checkpoint keeps the first invocation's settings
    assert (resumed['config']['stop_after'], resumed['config']['log_every']) == (1, 1)
    assert json.loads(orig)['resume'] is False


# ---- 3. checkpoints load with weights_only=True; a pickle payload is refused without running

class Payload:
    "Unpickling this creates a marker file: the proof that loading ran code."
    marker = None
    def __reduce__(self): return (open, (str(self.marker), 'w'))


def _poisoned(path, marker):
    ck = load_checkpoint(path)
    p = Payload(); p.marker = marker
    ck['rng']['python'] = p
    torch.save(ck, path)


def test_checkpoint_loads_weights_only(run1):
    ck = torch.load(Path(run1.out) / CHECKPOINT, weights_only=True)
    assert ck['epoch'] == 1 and {'python', 'numpy', 'torch'} <= set(ck['rng'])


def test_pickle_payload_refused_on_resume_and_load_encoder(tiny_cfg, run1, tmp_path):
    from segaug_simclr.evaluate import load_encoder
    cfg = run1
    ckpt, marker = Path(cfg.out) / CHECKPOINT, tmp_path / 'ran-code'
    _poisoned(ckpt, marker)
    with pytest.raises(ValueError, match='refused to load .*checkpoint.pt.*could run code'):
        pretrain(tiny_cfg(resume=True))
    with pytest.raises(ValueError, match='refused to load'):
        load_encoder(ckpt)
    assert not marker.exists()
    r = subprocess.run([sys.executable, '-m', 'segaug_simclr.pretrain', '--dataset', 'synthetic', '--num-images', '128',
                        '--depth', '18', '--width', '0.25', '--batch-size', '32', '--epochs', '2', '--lr', '0.5',
                        '--warmup-epochs', '0', '--device', 'cpu', '--no-progress', '--out', cfg.out, '--resume'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'refused to load' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not marker.exists()


@pytest.mark.parametrize('kind', ['empty', 'truncated', 'text', 'foreign'])
def test_damaged_or_foreign_checkpoint_named(tiny_cfg, run1, kind):
    cfg = run1
    ckpt = Path(cfg.out) / CHECKPOINT
    data = ckpt.read_bytes()
    if kind == 'empty': ckpt.write_bytes(b'')
    elif kind == 'truncated': ckpt.write_bytes(data[:len(data) // 2])
    elif kind == 'text': ckpt.write_text('not a checkpoint at all')
    else: torch.save({'conv1.weight': torch.zeros(1)}, ckpt)
    with pytest.raises(ValueError) as e:
        pretrain(tiny_cfg(resume=True))
    assert str(ckpt) in str(e.value) and 'expected a checkpoint.pt written by segaug_simclr' in str(e.value)


# ---- 7. metrics.jsonl is made consistent with the checkpoint after any kill

def _epochs(out): return [r['epoch'] for r in read_jsonl(Path(out) / METRICS) if r['kind'] == 'epoch']


def test_partial_last_metrics_line_does_not_block_resume(tiny_cfg, run1):
    cfg = run1
    with open(Path(cfg.out) / METRICS, 'a') as f: f.write('{"kind": "step", "epoch": 1, "lo')  # killed mid-write
    with pytest.warns(UserWarning, match='metrics.jsonl: dropped 1 line'):
        pretrain(tiny_cfg(resume=True, log_every=1))
    recs = read_jsonl(Path(cfg.out) / METRICS)  # parses: the partial line is gone
    assert _epochs(cfg.out) == [0, 1] and [r['batch'] for r in recs if r['kind'] == 'step'] == [1, 2, 3, 4] * 2


def test_lost_epoch_record_restored_from_checkpoint(tiny_cfg, run1, tmp_path):
    pretrain(tiny_cfg(out=str(tmp_path / 'full'), log_every=1))
    cfg = run1
    m = Path(cfg.out) / METRICS  # a kill between the checkpoint's rename and the append: the epoch record is lost
    m.write_text(''.join(json.dumps(r) + '\n' for r in read_jsonl(m) if r['kind'] != 'epoch'))
    pretrain(tiny_cfg(resume=True, log_every=1))
    a, b = read_jsonl(tmp_path / 'full' / METRICS), read_jsonl(m)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ('time_s', 'images_per_s')} for r in rs]
    assert strip(a) == strip(b)


def test_restart_after_kill_in_first_epoch_drops_its_records(tiny_cfg):
    cfg = tiny_cfg(log_every=1, epochs=1)
    out = Path(cfg.out); out.mkdir(parents=True)
    (out / METRICS).write_text(''.join(json.dumps(dict(kind='step', epoch=0, batch=b, step=b, loss=5.0)) + '\n' for b in (1, 2)))
    (out / '.checkpoint.pt.abc123.tmp').write_bytes(b'half')  # orphan of a killed atomic write
    pretrain(cfg)
    recs = read_jsonl(out / METRICS)
    assert [r['batch'] for r in recs if r['kind'] == 'step'] == [1, 2, 3, 4] and _epochs(out) == [0]
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, CONFIG, METRICS]


def test_orphan_temporary_files_removed_on_resume(tiny_cfg, run1):
    cfg = run1
    out = Path(cfg.out)
    for n in ('.checkpoint.pt.x1.tmp', '.metrics.jsonl.x2.tmp', '.config.json.x3.tmp'): (out / n).write_bytes(b'x')
    pretrain(tiny_cfg(resume=True))
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, CONFIG, METRICS]
