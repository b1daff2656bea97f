"""`segaug-simclr gpu-check --quick` on the CPU, in this process (interpreter start-up is expensive here): every step is
in the JSON, run or skipped with its reason, every number has its unit, and the estimate table is there. Bad input is
one `error:` line and exit status 2, with nothing written."""
import contextlib, io, json, time

import pytest
import torch

from segaug_simclr.cli import main
from segaug_simclr.gpu_check import missing_units
from segaug_simclr.study import STUDIES

STEPS = ['data', 'cuda_checks', 'pretraining', 'compile_and_memory_format', 'resnet50_224', 'nccl_ddp', 'knn', 'estimates']
CUDA_STEPS = {'cuda_checks', 'resnet50_224', 'nccl_ddp'}


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    "One quick check on the CPU through the command line: (exit status, stdout, the JSON, seconds)."
    out = tmp_path_factory.mktemp('gpu-check')
    rng = torch.get_rng_state()
    t0 = time.perf_counter()
    rc, stdout, stderr = _run(['gpu-check', '--quick', '--device', 'cpu', '--out', str(out)])
    seconds = time.perf_counter() - t0
    assert rc == 0, stdout + stderr
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is put back
    assert [p.name for p in out.iterdir()] == ['gpu_check_cpu.json']  # the JSON alone, no temporary files
    return rc, stdout, json.loads((out / 'gpu_check_cpu.json').read_text()), seconds


def test_quick_check_is_quick(quick):
    assert quick[3] < 60, f'gpu-check --quick took {quick[3]:.0f} s on the CPU (budget: 60 s)'


def test_every_step_is_there_run_or_skipped_with_its_reason(quick):
    rec = quick[2]
    assert list(rec['steps']) == STEPS
    for name, step in rec['steps'].items():
        if name in CUDA_STEPS: assert step == dict(status='skipped', reason='skipped: no CUDA'), (name, step)
        else: assert step['status'] == 'pass', (name, step)
    assert (rec['device'], rec['device_name'], rec['quick'], rec['peak_bf16_tflops']) == ('cpu', 'cpu', True, None)
    assert rec['environment']['torch'] == torch.__version__
    variants = rec['steps']['compile_and_memory_format']['results']['variants']
    assert variants['compiled_channels_last']['reason'].startswith('skipped: no CUDA (torch.compile')
    assert variants['eager_contiguous']['images_per_s'] > 0 and variants['eager_channels_last']['ratio_to_defaults'] == 1


def test_every_number_has_its_unit_and_conditions(quick):
    rec = quick[2]
    for name, step in rec['steps'].items():
        if step['status'] == 'skipped': continue
        assert missing_units(step) == [], (name, missing_units(step))
        assert step['wall_s'] >= 0 and step['summary'], name
        assert {'device_name', 'torch'} <= set(step['conditions']) or name == 'data', (name, step['conditions'])
    pre = rec['steps']['pretraining']
    assert {'batch', 'image_px', 'precision', 'device_name', 'torch'} <= set(pre['conditions'])
    for method in ('standard', 'segaug'):
        r = pre['results'][method]
        assert r['images_per_s'] > 0 and r['s_per_epoch'] > 0 and 0 <= r['data_wait_share'] <= 1, r
        assert r['mfu'] is None  # no peak for a CPU
    assert 0 <= rec['steps']['knn']['results']['top1_pretrained'] <= 1


def test_the_estimate_table(quick):
    est = quick[2]['steps']['estimates']['results']
    assert {(r['study'], r['preset']) for r in est['rows']} == {(s, p) for s in STUDIES for p in ('cifar10', 'paper')}
    for r in est['rows']: assert r['runs'] >= 1 and r['epochs'] >= r['runs'] and r['hours'] > 0, r
    assert any('estimate from these measurements' in n for n in est['notes'])
    assert 'estimated pretraining hours on this cpu' in quick[1] and 'mask_ablation' in quick[1]


@pytest.mark.parametrize('argv, says', [
    (['--device', 'cuda', '--quick'], "--device cuda"),
    (['--device', 'cpu'], 'needs a CUDA GPU'),
    (['--device', 'cpu', '--quick', '--cifar', 'MISSING'], '/train/<class>/<image>'),
])
def test_bad_input_is_one_error_line(tmp_path, argv, says):
    argv = [a.replace('MISSING', str(tmp_path / 'no-cifar')) for a in argv]
    if torch.cuda.is_available() and argv[1] == 'cuda': pytest.skip('this machine has CUDA')
    rc, stdout, stderr = _run(['gpu-check', '--out', str(tmp_path / 'out'), *argv])
    assert rc == 2 and stderr.startswith('error: ') and len(stderr.splitlines()) == 1 and says in stderr, stderr
    assert not (tmp_path / "out").exists()  # refused before the output folder is made


def test_a_step_that_raises_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    import segaug_simclr.gpu_check as gc
    def boom(*a, **kw): raise RuntimeError('compiler exploded\nsecond line')
    real = gc._method_run
    monkeypatch.setattr(gc, 'formats_step', boom)
    monkeypatch.setattr(gc, '_method_run', lambda train, cfg, *a: boom() if cfg.augment == 'segaug' else real(train, cfg, *a))
    rc, stdout, stderr = _run(['gpu-check', '--quick', '--device', 'cpu', '--out', str(tmp_path)])
    assert rc == 1, stdout + stderr  # the check ran, a step did not pass
    steps = json.loads((tmp_path / 'gpu_check_cpu.json').read_text())['steps']
    failed = steps['compile_and_memory_format']
    assert (failed['status'], failed['error']) == ('failed', 'RuntimeError: compiler exploded') and 'boom' in failed['where']
    assert steps['pretraining']['status'] == 'fail' and steps['pretraining']['results']['segaug']['status'] == 'failed'
    assert steps['pretraining']['results']['standard']['status'] == 'pass'
    assert steps['knn']['status'] == 'pass' and steps['estimates']['status'] == 'pass'  # they need the standard run only
    assert 'compile_and_memory_format  failed   RuntimeError: compiler exploded' in stdout
