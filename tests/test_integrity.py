"Issue 10: no silent wrong results. Each test reproduces one way a run, a record or a cache went silently wrong."
import json, os, re, subprocess, sys
from pathlib import Path

import pytest
import torch

from segaug_simclr.pretrain_cli import main as pretrain_main
from segaug_simclr.core import read_jsonl
from segaug_simclr.checkpoint import CHECKPOINT, CONFIG, METRICS, load_checkpoint
from segaug_simclr.train import resolve_recipe, RESUME_MAY_CHANGE, PretrainConfig, pretrain

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
    old = getattr(resolve_recipe(cfg), name)  # the run recorded its settings with the recipe's values filled in
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
    # (that a resume with unchanged settings is bit-identical is test_train.py::test_resume_is_exact)
    assert {'stop_after', 'progress', 'log_every', 'out', 'resume'} <= set(RESUME_MAY_CHANGE)
    assert not {'workers', 'lr', 'temperature', 'seed', 'num_images', 'spurious', 'augment', 'epochs', 'batch_size', 'amp'} & set(RESUME_MAY_CHANGE)
    import shutil; shutil.copytree(Path(run1.out), tmp_path / 'moved')  # a moved folder (--out differs)
    orig, first = (tmp_path / 'moved' / CONFIG).read_text(), load_checkpoint(tmp_path / 'moved' / CHECKPOINT)['config']
    res = pretrain(tiny_cfg(out=str(tmp_path / 'moved'), resume=True, log_every=3, knn_every=1, knn_images=32, knn_k=5))
    resumed = load_checkpoint(res['checkpoint'])
    assert resumed['epoch'] == 2 and 'knn_acc' in res['history'][0]
    assert (tmp_path / 'moved' / CONFIG).read_text() == orig  # the run's settings as first recorded
    assert resumed['config'] == first  # the checkpoint keeps the first invocation's settings
    assert json.loads(orig)['resume'] is False and first['stop_after'] == 1


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


def test_pickle_payload_refused_on_resume_and_load_encoder(tiny_cfg, run1, tmp_path, capsys):
    from segaug_simclr.evaluate import load_encoder
    cfg = run1
    ckpt, marker = Path(cfg.out) / CHECKPOINT, tmp_path / 'ran-code'
    _poisoned(ckpt, marker)
    with pytest.raises(ValueError, match='refused to load .*checkpoint.pt.*could run code'):
        pretrain(tiny_cfg(resume=True))
    with pytest.raises(ValueError, match='refused to load'):
        load_encoder(ckpt)
    assert not marker.exists()
    rc = pretrain_main(['--dataset', 'synthetic', '--num-images', '128', '--depth', '18', '--width', '0.25', '--batch-size', '32',
                        '--epochs', '2', '--lr', '0.5', '--warmup-epochs', '0', '--device', 'cpu', '--no-progress', '--out', cfg.out, '--resume'])
    err = capsys.readouterr().err
    assert rc == 2 and 'refused to load' in err and 'Traceback' not in err, err
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


def test_partial_last_metrics_line_and_orphans_do_not_block_resume(tiny_cfg, run1):
    cfg = run1
    out = Path(cfg.out)
    with open(out / METRICS, 'a') as f: f.write('{"kind": "step", "epoch": 1, "lo')  # killed mid-write
    for n in ('.checkpoint.pt.x1.tmp', '.metrics.jsonl.x2.tmp', '.config.json.x3.tmp'): (out / n).write_bytes(b'x')
    with pytest.warns(UserWarning, match='metrics.jsonl: dropped 1 line'):
        pretrain(tiny_cfg(resume=True, log_every=1))
    recs = read_jsonl(Path(cfg.out) / METRICS)  # parses: the partial line is gone
    assert _epochs(cfg.out) == [0, 1] and [r['batch'] for r in recs if r['kind'] == 'step'] == [1, 2, 3, 4] * 2
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, CONFIG, METRICS]  # orphan temporary files removed


def test_lost_epoch_record_restored_from_checkpoint(tiny_cfg, run1):
    cfg = run1
    m = Path(cfg.out) / METRICS  # a kill between the checkpoint's rename and the append: the epoch record is lost
    before = read_jsonl(m)
    m.write_text(''.join(json.dumps(r) + '\n' for r in before if r['kind'] != 'epoch'))
    pretrain(tiny_cfg(resume=True, log_every=1))
    after = read_jsonl(m)
    assert after[:len(before)] == before  # epoch 0 exactly as it was written, its epoch record from the checkpoint
    assert [(r['kind'], r['epoch']) for r in after[len(before):]] == [('step', 1)] * 4 + [('epoch', 1)]


def test_restart_after_kill_in_first_epoch_drops_its_records(tiny_cfg):
    cfg = tiny_cfg(log_every=1, epochs=1)
    out = Path(cfg.out); out.mkdir(parents=True)
    (out / METRICS).write_text(''.join(json.dumps(dict(kind='step', epoch=0, batch=b, step=b, loss=5.0)) + '\n' for b in (1, 2)))
    (out / '.checkpoint.pt.abc123.tmp').write_bytes(b'half')  # orphan of a killed atomic write
    pretrain(cfg)
    recs = read_jsonl(out / METRICS)
    assert [r['batch'] for r in recs if r['kind'] == 'step'] == [1, 2, 3, 4] and _epochs(out) == [0]
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, CONFIG, METRICS]



# ---- 2. one process per run folder and per mask cache

HOLD = """
import sys, time
from segaug_simclr.train import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print('locked', flush=True); time.sleep(float(sys.argv[2]))
"""


def test_second_process_on_a_run_folder_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    holder = subprocess.Popen([sys.executable, '-c', HOLD, cfg.out, '60'], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        from segaug_simclr.core import FolderLockedError
        with pytest.raises(FolderLockedError, match=f'the run folder {cfg.out} is in use by process {holder.pid}'):
            pretrain(cfg)
        r = subprocess.run([sys.executable, '-m', 'segaug_simclr.pretrain_cli', '--dataset', 'synthetic', '--num-images', '64',
                            '--depth', '18', '--width', '0.25', '--batch-size', '32', '--epochs', '1', '--device', 'cpu',
                            '--no-progress', '--out', cfg.out], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and f'in use by process {holder.pid}' in r.stderr and '--out' in r.stderr, r.stderr
        assert 'Traceback' not in r.stderr
    finally:
        holder.kill(); holder.wait()
    assert not (Path(cfg.out) / CHECKPOINT).exists() and not (Path(cfg.out) / METRICS).exists()
    pretrain(tiny_cfg(epochs=1))  # the lock died with its process (kill -9): the folder is free again


BUILD = """
import sys, time
from segaug_simclr.data import synthetic_shapes
from segaug_simclr.segment import OracleSegmenter, build_mask_cache
class Slow(OracleSegmenter):
    calls = 0
    def segment_items(self, ds, idx, size):
        Slow.calls += 1; time.sleep(0.3)
        return super().segment_items(ds, idx, size)
from pathlib import Path
import os; sync = Path(sys.argv[2]); (sync / str(os.getpid())).touch()
while len(list(sync.iterdir())) < 2: time.sleep(0.05)  # both imported: start together, whatever the load
store = build_mask_cache(synthetic_shapes(200, seed=4), Slow(), sys.argv[1], 'syn', batch_size=20, progress=False)
print(Slow.calls, len(store), float(store.fg_ratio.mean()))
"""


def test_two_builds_of_one_mask_cache(tmp_path, tmp_path_factory):
    sync = tmp_path_factory.mktemp('sync')
    procs = [subprocess.Popen([sys.executable, '-c', BUILD, str(tmp_path), str(sync)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    calls = sorted(int(o[0].split()[0]) for o in outs)
    assert calls == [0, 10], outs  # one computed all 10 batches, the other waited and reused them
    assert len({o[0].split(None, 1)[1] for o in outs}) == 1
    assert any('waiting for process' in o[1] for o in outs)
    folder, = [p for p in tmp_path.iterdir()]
    assert sorted(p.name for p in folder.iterdir()) == ['fg_ratio.npy', 'manifest.json', 'masks.npy']


# ---- 6. a damaged mask cache is detected on opening, and --rebuild-masks repairs any state

def _damage(folder, kind):
    import numpy as np
    m = folder / 'masks.npy'
    if kind == 'truncated': m.write_bytes(m.read_bytes()[:-500])
    elif kind == 'fewer rows': a = np.load(m); np.save(m, a[:-5])
    elif kind == 'no fg_ratio': (folder / 'fg_ratio.npy').unlink()
    elif kind == 'zeroed': a = np.load(m); np.save(m, np.zeros_like(a))
    elif kind == 'manifest': (folder / 'manifest.json').write_text('{"key": ')
    elif kind == 'partial': (folder / 'manifest.json').unlink(); (folder / 'progress.json').write_text('{"done": 9')


@pytest.mark.parametrize('kind', ['truncated', 'fewer rows', 'no fg_ratio', 'zeroed', 'manifest', 'partial'])
def test_damaged_mask_cache_refused_and_rebuilt(tmp_path, kind):
    from segaug_simclr.data import synthetic_shapes
    from segaug_simclr.segment import OracleSegmenter, build_mask_cache
    ds = synthetic_shapes(100, seed=5)
    good = build_mask_cache(ds, OracleSegmenter(), tmp_path, 'syn', progress=False)
    _damage(good.folder, kind)
    if kind != 'partial':  # an unfinished cache is resumed (or restarted) without --rebuild-masks
        with pytest.raises(ValueError, match=r'mask cache .* is damaged: .*--rebuild-masks'):
            build_mask_cache(ds, OracleSegmenter(), tmp_path, 'syn', progress=False)
    store = build_mask_cache(ds, OracleSegmenter(), tmp_path, 'syn', rebuild=True, progress=False)
    assert len(store) == 100 and all(torch.equal(store[i], ds.masks[i]) for i in range(100))
    assert sorted(p.name for p in store.folder.iterdir()) == ['fg_ratio.npy', 'manifest.json', 'masks.npy']


def test_pretrain_names_rebuild_masks_for_a_damaged_cache(tiny_cfg, tmp_path, capsys):
    from segaug_simclr.train import pretrain_dataset
    pretrain_dataset(tiny_cfg(augment='segaug', segmenter='oracle', mask_cache=str(tmp_path / 'masks')))
    folder, = (tmp_path / 'masks').iterdir()
    _damage(folder, 'zeroed')
    rc = pretrain_main(['--dataset', 'synthetic', '--num-images', '128', '--depth', '18', '--width', '0.25', '--batch-size', '32',
                        '--epochs', '1', '--device', 'cpu', '--augment', 'segaug', '--segmenter', 'oracle', '--mask-cache',
                        str(tmp_path / 'masks'), '--no-progress', '--out', str(tmp_path / 'second')])
    err = capsys.readouterr().err
    assert rc == 2 and 'masks.npy does not match the checksum' in err and '--rebuild-masks' in err, err


# ---- 5. evaluation checks its inputs

@pytest.fixture
def folders(tmp_path):
    from fakes import write_imagefolder
    write_imagefolder(tmp_path / 'train', classes=('cat', 'dog', 'ship'), per_class=4, size=(32, 32))
    write_imagefolder(tmp_path / 'test', classes=('cat', 'dog', 'ship'), per_class=2, size=(32, 32))
    return tmp_path


def _splits(root):
    from segaug_simclr.data import get_dataset
    return get_dataset('imagefolder', root, 'train'), get_dataset('imagefolder', root, 'test')


def test_mismatched_class_lists_refused(folders):
    from segaug_simclr.evaluate import finetune, knn_eval, linear_eval, load_encoder, transfer_eval
    (folders / 'train' / 'aardvark').mkdir()  # an extra, empty class: sorted first, it shifts every train label by one
    with pytest.warns(UserWarning, match='hold no images'):
        tr, te = _splits(folders)
    enc = load_encoder('random:depth=18,width=0.25,cifar_stem=1')
    for run in (lambda: linear_eval(enc, tr, te, epochs=1), lambda: knn_eval(enc, tr, te, k=3),
                lambda: transfer_eval(enc, tr, te, image_size=32, grid=(1.0,)), lambda: finetune(enc, tr, te, 0.5, epochs=1, image_size=32)):
        with pytest.raises(ValueError, match=r"different classes \(only in train: \['aardvark'\]; only in test: \[\]\)"):
            run()
    assert enc.training and all(p.requires_grad for p in enc.parameters())  # refused before the encoder was touched


def test_one_class_refused(tmp_path):
    from fakes import write_imagefolder
    from segaug_simclr.evaluate import knn_eval, linear_eval, load_encoder
    for s in ('train', 'test'): write_imagefolder(tmp_path / s, classes=('only',), per_class=3, size=(32, 32))
    tr, te = _splits(tmp_path)
    enc = load_encoder('random:depth=18,width=0.25,cifar_stem=1')
    with pytest.raises(ValueError, match='at least two classes'): knn_eval(enc, tr, te, k=2)
    with pytest.raises(ValueError, match='at least two classes'): linear_eval(enc, tr, te, epochs=1)


@pytest.mark.parametrize('k', [0, -1, 13, 200])
def test_knn_k_outside_1_to_n_refused(folders, k):
    from segaug_simclr.evaluate import knn_eval, load_encoder
    tr, te = _splits(folders)  # 12 training images
    with pytest.raises(ValueError, match=f'k must be between 1 and the number of training images \\(12\\), got {k}'):
        knn_eval(load_encoder('random:depth=18,width=0.25,cifar_stem=1'), tr, te, k=k)


def test_knn_records_the_k_it_used(folders):
    from segaug_simclr.evaluate import knn_eval, load_encoder
    tr, te = _splits(folders)
    rec = knn_eval(load_encoder('random:depth=18,width=0.25,cifar_stem=1'), tr, te, k=12)
    assert rec['hparams']['k'] == 12 and 0 <= rec['metrics']['top1'] <= 1


def test_knn_monitor_k_checked_before_training(tiny_cfg):
    with pytest.raises(ValueError, match='--knn-k 200 must be between 1 and the kNN bank size \\(64'):
        pretrain(tiny_cfg(knn_every=1, knn_images=64))
    assert not (Path(tiny_cfg().out) / CHECKPOINT).exists()


# ---- 8. every flag checked before any work starts, with the flag named and no traceback

def _pretrain_cli(*args) -> int:
    "`segaug-simclr pretrain` in this process (its exit status; what it printed is in capsys)."
    base = ['--dataset', 'synthetic', '--depth', '18', '--width', '0.25', '--epochs', '1', '--batch-size', '32',
            '--num-images', '64', '--no-progress', '--device', 'cpu']
    return pretrain_main([*base, *args])


BAD_FLAGS = [
    (['--image-size', '0'], '--image-size must be >= 1'),
    (['--crop-min', '5'], '--crop-min is a share'),
    (['--augment', 'segaug', '--segmenter', 'oracle', '--mask-degrade', 'erode:-3'], '--mask-degrade erode:<pixels>'),
    (['--augment', 'segaug', '--segmenter', 'oracle', '--mask-degrade', 'erode:abc'], "--mask-degrade must look like"),
    (['--augment', 'segaug', '--segmenter', 'oracle', '--mask-degrade', 'blocks:5'], 'share in [0, 1]'),
    (['--device', 'cuda:7'], "--device 'cuda:7'"),
    (['--proj-dim', '0'], '--proj-dim must be >= 2'),
    (['--num-images', '-200'], '--num-images must be at least --batch-size'),
    (['--stop-after', '0'], '--stop-after must be >= 1'),
    (['--subset-file', 'nothing.txt'], '--subset-file applies to imagenet only'),
    (['--dataset', 'imagenet', '--subset-file', 'nothing.txt'], '--subset-file nothing.txt does not exist'),
]


@pytest.mark.parametrize('args, msg', BAD_FLAGS)
def test_bad_flag_named_before_any_work(tmp_path, monkeypatch, args, msg):
    from segaug_simclr.pretrain_cli import parse_config
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(['--dataset', 'synthetic', '--batch-size', '32', '--num-images', '64', '--device', 'cpu', *args,
                        '--out', str(tmp_path / 'run')])
    with pytest.raises(ValueError, match=re.escape(msg)):
        pretrain(cfg)
    assert sorted(tmp_path.iterdir()) == []  # refused before any work: no run folder, no mask cache


@pytest.mark.parametrize('args, msg', [BAD_FLAGS[0], BAD_FLAGS[3], BAD_FLAGS[5]])
def test_bad_flag_on_the_command_line_without_traceback(tmp_path, monkeypatch, capsys, args, msg):
    monkeypatch.chdir(tmp_path)
    rc, err = _pretrain_cli(*args, '--out', str(tmp_path / 'run')), capsys.readouterr().err
    assert rc == 2 and msg in err and 'Traceback' not in err, err
    assert sorted(tmp_path.iterdir()) == []


def test_unwritable_out_refused_before_the_mask_cache(tmp_path, capsys):
    (tmp_path / 'afile').write_text('x')  # a folder cannot be made under a file, whoever runs the test
    rc = _pretrain_cli('--augment', 'segaug', '--segmenter', 'oracle', '--mask-cache', str(tmp_path / 'masks'),
                       '--out', str(tmp_path / 'afile' / 'run'))
    err = capsys.readouterr().err
    assert rc == 2 and 'cannot write into --out' in err and 'Traceback' not in err, err
    assert not (tmp_path / 'masks').exists()  # no mask was computed
    rc = _pretrain_cli('--augment', 'segaug', '--segmenter', 'oracle', '--mask-cache', str(tmp_path / 'afile' / 'm'),
                       '--out', str(tmp_path / 'run'))
    err = capsys.readouterr().err
    assert rc == 2 and 'cannot write into --mask-cache' in err, err


def test_nan_in_first_epoch_says_no_checkpoint(tiny_cfg):
    from test_train import PoisonedViews
    from segaug_simclr.train import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match='no checkpoint was written') as e:
        pretrain(tiny_cfg(), train_data=PoisonedViews(True))
    assert 'is kept' not in str(e.value) and 'continue with --resume' not in str(e.value)
    assert not (Path(tiny_cfg().out) / CHECKPOINT).exists()


def test_degenerate_masks_warn(tiny_cfg, tmp_path):
    from segaug_simclr.train import pretrain_dataset  # what pretrain calls to build its SegAug dataset
    with pytest.warns(UserWarning, match='every image takes the standard pipeline .*shift:100'):
        pretrain_dataset(tiny_cfg(augment='segaug', segmenter='oracle', mask_degrade='shift:100', mask_cache=str(tmp_path / 'masks')))
    with pytest.warns(UserWarning, match='closer to inverted'):
        PretrainConfig(augment='segaug', mask_degrade='blocks:0.9', device='cpu').validate()


# ---- 9. crash-safe writes get the umask's mode, not mkstemp's 0600

def test_written_files_follow_the_umask(tiny_cfg, run1, tmp_path):
    from segaug_simclr.data import synthetic_shapes
    from segaug_simclr.evaluate import save_record
    from segaug_simclr.segment import OracleSegmenter, build_mask_cache
    from segaug_simclr.train import repair_history
    old = os.umask(0o002)
    try:
        fresh = tiny_cfg(out=str(tmp_path / 'fresh'), epochs=1)
        pretrain(fresh)  # writes config.json and checkpoint.pt
        repair_history(run1.out, load_checkpoint(Path(run1.out) / CHECKPOINT))  # what a resume does to metrics.jsonl
        store = build_mask_cache(synthetic_shapes(40, seed=0), OracleSegmenter(), tmp_path / 'masks', 'syn', progress=False)
        rec = save_record(dict(protocol='knn', dataset='synthetic', metrics={}), tmp_path / 'records')
    finally: os.umask(old)
    files = [Path(run1.out) / METRICS, Path(fresh.out) / CONFIG, Path(fresh.out) / CHECKPOINT,
             store.folder / 'manifest.json', store.folder / 'masks.npy', store.folder / 'fg_ratio.npy', rec]
    assert {str(f): oct(f.stat().st_mode & 0o777) for f in files} == {str(f): '0o664' for f in files}


# ---- 10. save_record keeps its file inside the folder whatever the dataset is called

def test_save_record_does_not_escape(tmp_path):
    from segaug_simclr.evaluate import load_records, save_record
    folder = tmp_path / 'a' / 'b' / 'records'
    p = save_record(dict(protocol='knn', dataset='../../escaped', metrics={'top1': 0.5}), folder)
    assert p.parent == folder and list(folder.iterdir()) == [p] and not list((tmp_path / 'a').glob('*escaped*'))
    assert load_records(folder)[0]['dataset'] == '../../escaped'
    p = save_record(dict(protocol='linear/../../x', dataset='/etc/passwd'), folder)
    assert p.parent == folder


# ---- 4. a directory link loop neither multiplies nor mislabels an image folder

def test_directory_link_loop_read_once(tmp_path):
    from fakes import write_imagefolder
    from segaug_simclr.data import get_dataset
    write_imagefolder(tmp_path / 'train', classes=('cat', 'dog', 'truck'), per_class=5)
    (tmp_path / 'train' / 'truck' / 'more').mkdir()
    write_imagefolder(tmp_path / 'train' / 'truck', classes=('more',), per_class=2)  # a real sub-folder is still read
    os.symlink('..', tmp_path / 'train' / 'truck' / 'loop')                   # the loop of the issue
    os.symlink(tmp_path / 'train' / 'cat', tmp_path / 'train' / 'dog' / 'cats')  # a second path to a class
    with pytest.warns(UserWarning, match=r'skipped 2 directory link\(s\) that lead back into'):
        ds = get_dataset('imagefolder', tmp_path, 'train')
    assert len(ds) == 17 and torch.bincount(ds.targets).tolist() == [5, 5, 7]
    assert all(ds.classes[y] == f.relative_to(tmp_path / 'train').parts[0] for f, y in zip(ds.files, ds.targets.tolist()))
