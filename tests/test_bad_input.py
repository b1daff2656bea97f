"""Studies that never mislabel a result, and one clear line for every bad input (issue: a sweep of ~60 bad inputs).

Each test below names the defect it covers; each failed on the code before the change. The studies run through
papermill with the smoke preset; the command lines run in process (`cli.main`) so that no interpreter start is paid."""
import contextlib, json, os, shutil, subprocess
from pathlib import Path

import pytest
import torch
import yaml

from segaug_simclr import cli
from segaug_simclr.checkpoint import CHECKPOINT
from segaug_simclr.evaluate import load_encoder
from segaug_simclr.pretrain_cli import main as pretrain_main
from segaug_simclr.study import StudyFailed, run_study, resolve_params
from segaug_simclr.train import PretrainConfig
from fakes import write_imagefolder


def run_cli(argv, capsys) -> tuple[int, str]:
    "Exit status and stderr of `segaug-simclr argv`, in process (argparse's own errors included)."
    try: rc = cli.main(list(map(str, argv)))
    except SystemExit as e: rc = e.code
    err = capsys.readouterr().err
    return rc, err


def one_error_line(err: str) -> str:
    "The message, checked to be one `error:` line (argparse adds a usage line before its own) with no traceback."
    assert 'Traceback' not in err, err
    lines = [l for l in err.strip().splitlines() if not l.startswith('usage:') and not l.startswith('  ')]
    assert len(lines) == 1 and 'error:' in lines[0], err
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    "A small real filesystem (tmpfs) that fills up: root only, else the test is skipped."
    mnt = tmp_path / 'small'; mnt.mkdir()
    def mount(size='256k', ro=False):
        opts = f'size={size}' + (',ro' if ro else '')
        if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', str(mnt)]).returncode:
            pytest.skip('needs root to mount a small tmpfs (a real full or read-only disk)')
        return mnt
    yield mount
    subprocess.run(['umount', '-l', str(mnt)], capture_output=True)  # lazily: a kernel may still be closing its files


def fill(folder: Path):
    "Fill the filesystem of `folder` up to the last byte."
    with contextlib.suppress(OSError), open(folder / 'filler', 'wb') as f:
        while True: f.write(b'\0' * 4096); f.flush()


# ---- 1. an explicit value equal to the notebook's default is not dropped under a preset; 4. out_dir works

@pytest.fixture
def explicit(made_once):
    "cifar10_validation, smoke preset, amp 'bf16' given explicitly (the notebook's default; smoke's is 'none'), into -p out_dir."
    return made_once('explicit', lambda out: run_study('cifar10_validation', 'smoke', dict(amp='bf16', out_dir=str(out)), progress=False))


@pytest.mark.slow
def test_explicit_default_wins_under_a_preset(explicit):
    assert resolve_params('cifar10_validation', dict(preset='smoke'))['amp'] == 'none'
    assert yaml.safe_load((explicit / 'params.yaml').read_text())['amp'] == 'bf16'
    configs = [json.loads(p.read_text()) for p in explicit.glob('pretrain/*/config.json')]
    assert len(configs) == 1 and {c['amp'] for c in configs} == {'bf16'}
    P = resolve_params('segaug_vs_standard', dict(preset='cifar10', epochs=8))
    assert P['epochs'] == 8  # the cifar10 preset's 100 does not replace an explicit 8


@pytest.mark.slow
def test_out_dir_parameter_is_where_the_study_goes(explicit):
    assert (explicit / 'results.md').exists() and (explicit / 'cifar10_validation.ipynb').exists()


@pytest.fixture
def finished(smoke_runs, tmp_path):
    "A copy of the shared smoke run of segaug_vs_standard (five methods, two seeds), which stays as it was for the other tests."
    shutil.copytree(smoke_runs('segaug_vs_standard'), tmp_path / 'study')
    return tmp_path / 'study'


# ---- 3. a failed rerun cannot damage a finished folder; 4. figures of methods no longer run are removed

def _snapshot(folder: Path) -> dict:
    names = ['params.yaml', 'results.md', 'run.json', 'segaug_vs_standard.ipynb'] + [f'figures/{p.name}' for p in (folder / 'figures').iterdir()]
    return {n: (folder / n).read_bytes() for n in names}


@pytest.mark.slow
def test_failed_rerun_leaves_the_finished_folder_as_it_was(finished, tmp_path, capsys):
    before = _snapshot(finished)
    data = tmp_path / 'tiny'  # 30 images in all: the pretraining (batch 64) fails in the kernel, after setup
    write_imagefolder(data / 'train', classes=[f'c{i}' for i in range(10)], per_class=3, size=(32, 32))
    write_imagefolder(data / 'test', classes=[f'c{i}' for i in range(10)], per_class=1, size=(32, 32))
    rc, err = run_cli(['run', 'segaug_vs_standard', '--preset', 'smoke', '--no-progress', '-p', 'batch_size', '64',
                       '-p', 'methods', '[standard, segaug]', '--seeds', '1', '-p', 'dataset', 'imagefolder', '-p', 'data_root', data, '-p', 'num_images', 'null',
                       '-p', 'segmenter', 'saliency', '-p', 'spurious', '0', '--out', finished], capsys)
    assert rc == 1 and 'failed in cell' in err and 'larger than the dataset' in err, err
    assert _snapshot(finished) == before  # parameters, results, figures and the executed notebook: all the first run's
    assert (finished / 'segaug_vs_standard.failed.ipynb').exists()
    rc, err = run_cli(['run', 'segaug_vs_standard', '--preset', 'smoke', '-p', 'temperature', '0', '--out', finished], capsys)
    assert rc == 2 and 'temperature' in one_error_line(err)
    assert _snapshot(finished) == before


@pytest.mark.slow
def test_rerun_with_fewer_methods_removes_their_figures(finished):
    out = finished
    assert (out / 'figures' / 'mask_examples.png').exists()
    run_study('segaug_vs_standard', 'smoke', dict(methods=['standard'], seeds=1), out=out, progress=False)
    assert not (out / 'figures' / 'mask_examples.png').exists() and (out / 'figures' / 'accuracy_bars.png').exists()
    assert '| segaug | top1 | not run |' in (out / 'results.md').read_text()
    assert not (out / 'segaug_vs_standard.failed.ipynb').exists()
    assert not any((out / '.staging').iterdir())  # nothing left staged


# ---- 2. records are keyed by the data they were computed on

@pytest.mark.slow
def test_records_are_not_reused_across_data(tmp_path):
    roots = []
    for name, seed_size in (('A', (32, 32)), ('B', (32, 32))):
        root = tmp_path / name
        write_imagefolder(root / 'train', classes=[f'c{i}' for i in range(4)], per_class=10, size=seed_size)
        write_imagefolder(root / 'test', classes=[f'c{i}' for i in range(4)], per_class=5, size=seed_size)
        roots.append(root)
    out = tmp_path / 'study'
    keys = []
    for root in roots:
        run_study('linear_width', 'smoke', dict(dataset='imagefolder', data_root=str(root), num_images=32, eval_images=None,
                                                test_images=None), out=out, progress=False)
        keys.append({json.dumps(json.loads(p.read_text())['key']['data']) for p in (out / 'records').glob('*.json')})
    assert len(keys[0]) == 1 and len(keys[1]) == 2, keys  # B's evaluations were computed, not A's reused
    assert len(list(out.glob('pretrain/*'))) == 2  # and B's pretraining too


# ---- 4. inputs that made the result meaningless

def test_meaningless_values_are_refused(capsys, tmp_path):
    for argv, says in ((['-p', 'epochs', 'yes'], "epochs='yes' should be a whole number"),
                       (['-p', 'temperature', 'inf'], 'temperature=inf is not allowed'),
                       (['-p', 'image_size', '100000'], 'image_size must be from 8 to 1024'),
                       (['-p', 'methods', '[]'], 'methods is an empty list')):
        rc, err = run_cli(['run', 'segaug_vs_standard', '--preset', 'smoke', *argv, '--out', tmp_path / 'never'], capsys)
        assert rc == 2 and says in one_error_line(err), err
    assert not (tmp_path / 'never').exists()
    with pytest.raises(ValueError, match='temperature must be a finite number'):
        PretrainConfig(temperature=float('inf')).validate()
    rc = pretrain_main(['--dataset', 'synthetic', '--temperature', 'inf', '--out', str(tmp_path / 'run')])
    assert rc == 2 and 'temperature' in one_error_line(capsys.readouterr().err)
    with pytest.raises(ValueError, match=r"unknown key 'widht'.*the keys are \['depth', 'width', 'cifar_stem', 'seed'\]"):
        load_encoder('random:depth=18,widht=0.125')
    with pytest.raises(ValueError, match="width='abc' is not a number"):
        load_encoder('random:depth=18,width=abc')
    rc, err = run_cli(['eval', 'random:depth=18', '--dataset', 'synthetic', '--linear-epochs', '0'], capsys)
    assert rc == 2 and '--linear-epochs: must be at least 1' in one_error_line(err)


def test_numbers_read_as_numbers():
    from segaug_simclr.study import parse_value
    assert parse_value('1e-3') == 0.001 and parse_value('yes') == 'yes' and parse_value('true') is True
    assert resolve_params('walkthrough', dict(preset='smoke', lr=parse_value('1e-3')))['lr'] == 0.001


# ---- 5. tracebacks where one error line was promised

@pytest.mark.slow
def test_run_problems_are_one_line(capsys, tmp_path, tmpfs):
    (tmp_path / 'file').write_text('')
    for argv, code, says in ((['--kernel', 'nosuch'], 2, "no Jupyter kernel 'nosuch'"),
                             (['--out', tmp_path / 'file'], 2, 'is a file, not a folder'),
                             (['--out', tmp_path / 'file' / 'under'], 2, 'is a file, not a folder'),
                             (['--timeout', '0'], 2, '--timeout: must be at least 1')):
        rc, err = run_cli(['run', 'walkthrough', '--preset', 'smoke', '--no-progress', *argv], capsys)
        assert rc == code and says in one_error_line(err), err
    rc, err = run_cli(['run', 'segaug_vs_standard', '--preset', 'smoke', '--no-progress', '--timeout', '1', '--out', tmp_path / 't'], capsys)
    assert rc == 1 and 'time limit' in err and 'Traceback' not in err, err
    ro = tmpfs(ro=True)
    rc, err = run_cli(['run', 'walkthrough', '--preset', 'smoke', '--out', ro / 'study'], capsys)
    assert rc == 2 and 'cannot write into --out' in one_error_line(err), err


def test_full_disk_is_reported_with_free_space(capsys, tmpfs):
    small = tmpfs('256k')
    rc = pretrain_main(['--dataset', 'synthetic', '--num-images', '64', '--batch-size', '32', '--depth', '18', '--width', '0.125',
                        '--epochs', '1', '--device', 'cpu', '--no-progress', '--out', str(small / 'run')])
    msg = one_error_line(capsys.readouterr().err)
    assert rc == 1 and 'no space left on the device' in msg and 'MiB free' in msg, msg
    assert not (small / 'run' / CHECKPOINT).exists() and not list((small / 'run').glob('.*.tmp'))  # nothing half-written
    fill(small)
    rc, err = run_cli(['run', 'walkthrough', '--preset', 'smoke', '--no-progress', '--out', small / 'study'], capsys)
    assert rc == 1 and 'no space left on the device' in one_error_line(err)


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    "Image folders: mixed image sizes; a class missing from the test split."
    root = tmp_path_factory.mktemp('folders')
    write_imagefolder(root / 'mixed' / 'train', classes=('a', 'b'), per_class=4, size=(40, 30))
    write_imagefolder(root / 'mixed' / 'train', classes=('a', 'b'), per_class=2, size=(24, 36))  # overwrites two of each
    write_imagefolder(root / 'mixed' / 'test', classes=('a', 'b'), per_class=2, size=(50, 20))
    write_imagefolder(root / 'gap' / 'train', classes=('a', 'b', 'c'), per_class=3)
    write_imagefolder(root / 'gap' / 'test', classes=('a', 'b'), per_class=2)
    return root


def test_eval_problems_are_one_line(capsys, tmp_path, folders):
    (tmp_path / 'photo.jpg').write_bytes(b'\xff\xd8\xff\xe0 not weights at all')
    (tmp_path / 'file').write_text('')
    base = ['--dataset', 'imagefolder', '--data-root', folders / 'gap', '--protocol', 'knn', '--device', 'cpu']
    for argv, says in (([f'simclr-v1:{tmp_path / "photo.jpg"}', *base], 'cannot read'),
                       ([f'torchvision:{tmp_path / "photo.jpg"}', *base], 'cannot read'),
                       (['random:depth=18,width=0.125', *base, '--out', tmp_path / 'recs'], 'list different classes'),
                       (['random:depth=18', *base, '--num-images', '0'], '--num-images: must be at least 2'),
                       (['random:depth=18', *base, '--fraction', '1.5'], '--fraction: is a share of the labels'),
                       (['random:depth=18', *base, '--out', tmp_path / 'file'], 'is a file, not a folder')):
        rc, err = run_cli(['eval', *argv], capsys)
        assert rc == 2 and says in one_error_line(err), (argv, err)


def test_mixed_image_sizes_evaluate(capsys, tmp_path, folders):
    rc, err = run_cli(['eval', 'random:depth=18,width=0.125,cifar_stem=1', '--dataset', 'imagefolder', '--data-root',
                       folders / 'mixed', '--protocol', 'knn', 'linear', '--linear-epochs', '1', '--device', 'cpu',
                       '--out', tmp_path / 'recs'], capsys)
    assert rc == 0, err
    assert len(list((tmp_path / 'recs').glob('*.json'))) == 2


# ---- 6. messages that say what to do

@pytest.mark.slow
def test_damaged_record_and_foreign_checkpoint_named(finished):
    out = finished
    rec = next((out / 'records').glob('knn-*.json'))
    rec.write_text(rec.read_text()[:50])
    with pytest.raises(StudyFailed, match=f'the record {rec} is damaged .*delete it'):
        run_study('segaug_vs_standard', 'smoke', out=out, progress=False)
    ckpt = next(out.glob(f'pretrain/standard-*/{CHECKPOINT}'))
    ck = torch.load(ckpt, weights_only=True)
    ck['config']['depth'] = 34  # the weights are a ResNet-18's
    torch.save(ck, ckpt)
    with pytest.raises(ValueError) as e: load_encoder(ckpt)
    assert len(str(e.value)) < 600 and 'do not fit the network' in str(e.value), str(e.value)


# ---- found by review: flags and options that were silently wrong

def test_executor_flags_are_checked_and_mean_what_they_say(tmp_path):
    from segaug_simclr.cli import _executor_params, build_parser
    assert _executor_params(build_parser().parse_args(['demo'])) == {}  # `demo` has no executor flags
    args = build_parser().parse_args(['run', 'walkthrough', '--executor', 'slurm', '--time', '60', '--mem', '64', '--threads', '4'])
    assert _executor_params(args)['executor_options'] == dict(time='60', mem=64.0, threads=4)  # --mem 64 is GB, not MB
    with pytest.raises(ValueError, match='--detach needs --executor slurm'):
        resolve_params('walkthrough', dict(executor='local', executor_options=dict(detach=True)))
    with pytest.raises(ValueError, match='threads must be a whole number'):
        resolve_params('walkthrough', dict(executor='local', executor_options=dict(threads=0)))
    assert resolve_params('walkthrough', dict(epochs=2))['epochs'] == 2
    assert resolve_params('segaug_vs_standard', dict(methods=('standard', 'segaug')))['methods'] == ['standard', 'segaug']


def test_official_weights_name_one_file_per_width(tmp_path):
    for w in (0.25, 0.5): (tmp_path / f'r50_{w:g}x.pth').write_bytes(b'x')
    P = resolve_params('linear_width', dict(official_weights=str(tmp_path / 'r50_{width}x.pth')))  # demo widths 0.25, 0.5
    assert P['official_weights'].endswith('r50_{width}x.pth')
    with pytest.raises(ValueError, match='one file for 2 widths'):
        resolve_params('linear_width', dict(official_weights=str(tmp_path / 'r50_0.25x.pth')))
    with pytest.raises(ValueError, match="without a 'simclr-v1:' prefix"):
        resolve_params('linear_width', dict(official_weights='simclr-v1:' + str(tmp_path / 'r50_{width}x.pth')))
    with pytest.raises(ValueError, match='no file'):
        resolve_params('linear_width', dict(official_weights=str(tmp_path / 'r18_{width}x.pth')))


def test_a_permuted_mask_store_reads_through_its_map_and_permutes_again(tmp_path):
    from segaug_simclr.data import synthetic_shapes
    from segaug_simclr.segment import OracleSegmenter, build_mask_cache, derangement
    from segaug_simclr.batch_augment import mask_rows
    ds = synthetic_shapes(40, seed=0)
    store = build_mask_cache(ds, OracleSegmenter(), tmp_path, 'x', progress=False)
    a, b = derangement(40, 1), derangement(40, 2)
    twice = store.permuted(a).permuted(b)
    for i in range(40): assert torch.equal(twice[i], store[int(a[b[i]])])  # image i: the mask of a[b[i]], ratios alike
    assert torch.equal(twice.fg_ratio, store.fg_ratio[a][b])
    assert torch.equal(mask_rows(twice, [3, 7]).bool(), torch.stack([twice[3], twice[7]]))


def test_a_reproduction_keeps_what_earlier_runs_did(tmp_path):
    from segaug_simclr.reproduce import _run_studies
    (tmp_path / 'status.json').write_text(json.dumps(dict(linear_width=dict(status='done', wall_s=9.0))))
    status = _run_studies('smoke', ['transfer'], tmp_path, dict(targets=['cifar100'], data_root=str(tmp_path / 'none')), progress=False)
    assert status['linear_width']['status'] == 'done' and status['transfer']['status'] == 'failed'
    assert 'transfer needs datasets' in status['transfer']['error']


def test_download_fetches_a_missing_dataset_into_data_root_and_only_then(tmp_path, monkeypatch):
    "`-p download true`: torchvision's download into data_root where the dataset is missing, never where it is there."
    import fakes
    import torchvision.datasets.cifar as cifar
    from segaug_simclr.study import check_datasets
    monkeypatch.setattr(cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))  # the fake files' sums differ
    fetched = []
    def fetch(url, download_root, **kw):  # stands in for the network: writes the files the archive holds
        fetched.append(Path(download_root)); fakes.write_cifar10(download_root, n_train=50, n_test=20)
    monkeypatch.setattr(cifar, 'download_and_extract_archive', fetch)
    P = resolve_params('segaug_vs_standard', dict(preset='smoke', dataset='cifar10', data_root=str(tmp_path), num_images=40))
    with pytest.raises(FileNotFoundError, match=r'cifar10 \(train\).*\nGet them first'):
        check_datasets('segaug_vs_standard', P)  # download is off by default: nothing is fetched
    assert fetched == []
    check_datasets('segaug_vs_standard', P | dict(download=True))
    assert fetched == [tmp_path] and (tmp_path / 'cifar-10-batches-py' / 'test_batch').exists()
    check_datasets('segaug_vs_standard', P | dict(download=True))
    assert fetched == [tmp_path]  # there now: opened, not fetched again
    with pytest.raises(ValueError, match="download='yes' should be"):
        resolve_params('segaug_vs_standard', dict(download='yes'))
