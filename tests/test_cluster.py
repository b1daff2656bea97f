"""The executors of `segaug_simclr.execute` against a real one-node SLURM (tests/cluster.py, the `slurm_cluster`
fixture): a plan through SLURM equals the same plan inline, a two-task job equals torchrun, a pretraining signalled
before its time limit requeues itself and ends bit for bit like the uninterrupted run, failures are one line.
Marked `cluster`: `make test-cluster` runs them (root, Debian's slurm-wlm and munge), `make test` does not."""
import json, operator, os, subprocess, time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
from submitit.core.utils import pickle_load

from segaug_simclr.checkpoint import CHECKPOINT, load_checkpoint
from segaug_simclr.execute import Job, JobFailed, pretrain_job, run_jobs
from segaug_simclr.pretrain_cli import torchrun_command
from segaug_simclr.study import evaluated, resolve_params
from segaug_simclr.train import PretrainConfig, pretrain

pytestmark = pytest.mark.cluster
TINY = dict(dataset='synthetic', num_images=64, depth=18, width=0.125, cifar_stem=True, epochs=2, batch_size=32, lr=0.5,
            warmup_epochs=0, progress=False, device='cpu')


@pytest.fixture
def one_thread(monkeypatch):
    "Jobs (through the environment sbatch passes on) and this process compute with one thread: bit-exact comparisons."
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same_weights(a, b) -> bool:
    "Whether the checkpoints of run folders `a` and `b` hold the same epoch, step and tensors, bit for bit."
    ca, cb = load_checkpoint(Path(a) / CHECKPOINT), load_checkpoint(Path(b) / CHECKPOINT)
    return (ca['epoch'], ca['step']) == (cb['epoch'], cb['step']) and ca['model'].keys() == cb['model'].keys() and all(
        torch.equal(ca['model'][k], cb['model'][k]) for k in ca['model'])


def index(folder) -> dict:
    return json.loads((Path(folder) / 'jobs.json').read_text())


def has_record(root) -> bool:
    return any((Path(root) / 'records').glob('knn-*.json'))


def study_plan(root):
    "A pretraining and the kNN evaluation of its encoder, as a study would declare them."
    P = resolve_params('walkthrough', dict(preset='smoke', device='cpu', out_dir=str(root)))
    cfg = PretrainConfig(**TINY, out=str(Path(root) / 'pretrain' / 'run'))
    knn = Job('knn-run', evaluated, (Path(root), Path(cfg.out), 'knn', P), after=['run'], check=partial(has_record, root))
    return [pretrain_job(cfg), knn]


def test_a_plan_through_slurm_equals_the_plan_inline(slurm_cluster, tmp_path, one_thread, capsys):
    t0 = time.time()
    inline = run_jobs(study_plan(tmp_path / 'inline'))
    work = time.time() - t0
    t0 = time.time()
    ids = run_jobs(study_plan(tmp_path / 'slurm'), 'slurm', tmp_path / 'jobs', detach=True, time=10)
    assert set(ids) == {'run', 'knn-run'}
    on_slurm = run_jobs(study_plan(tmp_path / 'slurm'), 'slurm', tmp_path / 'jobs', time=10)  # watches, submits nothing
    wall = time.time() - t0
    assert {n: r['job_id'] for n, r in index(tmp_path / 'jobs').items()} == ids
    assert {n: r['state'] for n, r in index(tmp_path / 'jobs').items()} == {'run': 'done', 'knn-run': 'done'}
    assert same_weights(tmp_path / 'inline' / 'pretrain' / 'run', tmp_path / 'slurm' / 'pretrain' / 'run')
    assert on_slurm['knn-run']['metrics'] == inline['knn-run']['metrics']
    assert on_slurm['run']['epochs_done'] == inline['run']['epochs_done'] == 2
    assert os.readlink(tmp_path / 'jobs' / 'run.err') == f"{ids['run']}_0_log.err"
    assert run_jobs(study_plan(tmp_path / 'slurm'), 'slurm', tmp_path / 'jobs', time=10) == {}  # nothing missing
    with capsys.disabled():
        print(f"\nmeasured: the plan inline {work:.1f} s, through SLURM {wall:.1f} s: {(wall - work) / 2:.1f} s per job "
              "over the work (submitting, scheduling, starting Python, collecting)")


def test_a_two_task_job_equals_torchrun(slurm_cluster, tmp_path, one_thread):
    cfg = PretrainConfig(**TINY, out=str(tmp_path / 'torchrun'))
    r = subprocess.run(torchrun_command(cfg, 2), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    job = pretrain_job(replace(cfg, out=str(tmp_path / 'slurm')))
    res = run_jobs([job], 'slurm', tmp_path / 'jobs', time=10, cpus_per_job=2, tasks_per_node=2)
    job_id = index(tmp_path / 'jobs')[job.name]['job_id']
    second = pickle_load(tmp_path / 'jobs' / f'{job_id}_1_result.pkl')  # task 1's own result
    assert res[job.name]['task'] == dict(RANK=0, LOCAL_RANK=0, WORLD_SIZE=2)
    assert second[0] == 'success' and second[1]['task'] == dict(RANK=1, LOCAL_RANK=1, WORLD_SIZE=2)
    assert json.loads((tmp_path / 'slurm' / 'config.json').read_text())['world_size'] == 2
    assert same_weights(tmp_path / 'torchrun', tmp_path / 'slurm')


def test_a_signalled_pretraining_requeues_and_ends_like_the_uninterrupted_run(slurm_cluster, tmp_path, one_thread):
    cfg = PretrainConfig(**TINY | dict(num_images=128, epochs=4, workers=1), out=str(tmp_path / 'straight'))
    pretrain(cfg)
    job = pretrain_job(replace(cfg, out=str(tmp_path / 'run')))
    job_id = run_jobs([job], 'slurm', tmp_path / 'jobs', detach=True, time=10)[job.name]
    deadline = time.time() + 120
    while not (tmp_path / 'run' / CHECKPOINT).exists():  # the first epoch is done: the signal comes mid-run
        assert time.time() < deadline, slurm_cluster.job_info(job_id)
        time.sleep(0.2)
    slurm_cluster.run('scancel', '--signal=USR2', job_id)  # what SLURM sends before the time limit (--signal=USR2@90)
    slurm_cluster.release_requeued(job_id)                # requeued; let it start again now, not in 120 s
    res = run_jobs([job], 'slurm', tmp_path / 'jobs', time=10)
    assert res[job.name]['epochs_done'] == 4
    assert int(slurm_cluster.job_info(job_id)['Restarts']) == 1
    log = (tmp_path / 'jobs' / f'{job_id}_0_log.out').read_text()
    assert 'Requeued job' in log, log[-2000:]
    assert same_weights(tmp_path / 'straight', tmp_path / 'run')
    assert run_jobs([job], 'slurm', tmp_path / 'jobs', time=10) == {}  # running again submits no job
    rec = index(tmp_path / 'jobs')[job.name]
    assert (rec['job_id'], rec['earlier'], rec['state']) == (job_id, [], 'done')


def test_a_failed_job_is_one_line_with_its_log_tail_and_a_rerun_submits_only_what_is_missing(slurm_cluster, tmp_path):
    note, jobs = tmp_path / 'note.txt', tmp_path / 'jobs'
    def plan(divisor):
        return [Job('write', Path.write_text, (note, 'ok'), check=partial(Path.exists, note)),
                Job('divide', operator.truediv, (1, divisor)), Job('after-divide', operator.add, (1, 1), after=['divide'])]
    with pytest.raises(JobFailed) as e: run_jobs(plan(0), 'slurm', jobs, time=5)
    first, *tail = str(e.value).splitlines()
    divide = index(jobs)['divide']
    log = jobs / f"{divide['job_id']}_0_log.err"
    assert first == (f"job 'divide' (slurm job {divide['job_id']}) failed: ZeroDivisionError: division by zero; its log is "
                     f"{log} (not run because of it: after-divide)"), first
    assert 0 < len(tail) <= 10 and any('ZeroDivisionError: division by zero' in l for l in tail), tail
    assert {n: r['state'] for n, r in index(jobs).items()} == {'write': 'done', 'divide': 'failed', 'after-divide': 'skipped'}
    written = index(jobs)['write']['job_id']
    assert run_jobs(plan(4), 'slurm', jobs, time=5) == {'divide': 0.25, 'after-divide': 2}
    assert index(jobs)['write']['job_id'] == written and index(jobs)['divide']['earlier'] == [divide['job_id']]


def test_what_slurm_refuses_is_one_line(slurm_cluster, tmp_path):
    with pytest.raises(ValueError) as e:
        run_jobs([Job('x', operator.add, (1, 1))], 'slurm', tmp_path / 'jobs', time=5, partition='nosuchpartition')
    assert str(e.value).startswith('sbatch refused the job: ') and 'invalid partition' in str(e.value).lower(), str(e.value)
    assert '\n' not in str(e.value)


def test_no_sbatch_is_one_line_that_suggests_the_local_executor(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # a PATH without SLURM's commands
    with pytest.raises(ValueError) as e: run_jobs([Job('x', operator.add, (1, 1))], 'slurm', tmp_path / 'jobs', time=5)
    assert 'sbatch' in str(e.value) and "executor='local'" in str(e.value) and '\n' not in str(e.value)


def test_a_study_through_slurm_equals_it_inline_and_a_rerun_submits_nothing(slurm_cluster, tmp_path, capsys):
    "`segaug-simclr run segaug_vs_standard --preset smoke --executor slurm`: jobs, the inline results byte for byte, then nothing."
    from segaug_simclr import cli
    base = ['run', 'segaug_vs_standard', '--preset', 'smoke', '--no-progress']
    t0 = time.time()
    assert cli.main(base + ['--out', str(tmp_path / 'inline')]) == 0
    t1 = time.time()
    slurm = base + ['--executor', 'slurm', '--time', '10', '--out', str(tmp_path / 'slurm')]
    assert cli.main(slurm) == 0
    t2 = time.time()
    err = capsys.readouterr().err
    with capsys.disabled(): print(f'\nmeasured: the smoke study inline {t1 - t0:.0f} s, through SLURM {t2 - t1:.0f} s')
    assert 'sacct' not in err and 'Traceback' not in err, err
    assert (tmp_path / 'slurm' / 'results.md').read_bytes() == (tmp_path / 'inline' / 'results.md').read_bytes()
    jobs = index(tmp_path / 'slurm' / 'jobs')
    assert len(jobs) >= 2 and {j['kind'] for j in jobs.values()} == {'pretrain', 'eval'}, jobs
    assert cli.main(slurm) == 0  # again: every run and record is there, so nothing is submitted
    assert index(tmp_path / 'slurm' / 'jobs') == jobs
