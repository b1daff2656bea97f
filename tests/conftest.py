import os, runpy, sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch

if os.environ.get('PYTEST_XDIST_WORKER'):  # pytest -n 2: one thread per worker (and per process it starts), not two each
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
from segaug_simclr.train import PretrainConfig


TINY = dict(dataset='synthetic', num_images=128, depth=18, width=0.25, cifar_stem=True, epochs=2,
            batch_size=32, lr=0.5, warmup_epochs=0, progress=False, device='cpu')


@pytest.fixture
def tiny_cfg(tmp_path):
    "A CPU-sized pretraining config: ResNet-18 at width 0.25 on 128 synthetic images."
    def make(**kw):
        base = TINY | dict(out=str(tmp_path / 'run'))
        base.update(kw)
        return PretrainConfig(**base)
    return make


@pytest.fixture(scope='session')
def slurm_cluster():
    """A throwaway one-node SLURM for the session (tests/cluster.py), found by every command through SLURM_CONF. Skipped
    where it cannot run (not root, SLURM not installed); under CI=true that is a failure instead."""
    from cluster import one_node_cluster, unavailable
    why = unavailable()
    if why:
        if os.environ.get('CI', '').lower() in ('true', '1'): pytest.fail(f'CI is set and {why}', pytrace=False)
        pytest.skip(why)
    with one_node_cluster() as cluster, patch.dict(os.environ, SLURM_CONF=str(cluster.conf)):
        yield cluster


@pytest.fixture(scope='session')
def made_once(tmp_path_factory):
    """`made_once(name, make)`: the folder `name`, made by `make(folder)` once per session for every xdist worker. The
    first test that needs it makes it under a file lock in the session's common temporary folder; the others wait and
    read it. Tests must not change these folders: copy one first (shutil.copytree keeps the mtimes)."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'made-once'
    root.mkdir(exist_ok=True)
    def get(name, make):
        out, done = root / name, root / f'{name}.done'
        with FileLock(str(root / f'{name}.lock')):
            if not done.exists():
                make(out)
                done.touch()
        return out
    return get


@pytest.fixture(scope='session')
def smoke_runs(made_once):
    "Each study executed once with the smoke preset (lazily, so -k selects what runs), shared by the workers (`made_once`)."
    from segaug_simclr.study import run_study
    return lambda study: made_once(f'smoke-{study}', lambda out: run_study(study, 'smoke', out=out, progress=False))


@pytest.fixture
def run_script(monkeypatch):
    """`run_script('benchmarks/blur.py', *args)`: the project's script run as `python <script> <args>` runs it (as
    `__main__`), in this process, which has torch imported already; returns its exit status."""
    def run(script, *args):
        path = Path(__file__).resolve().parents[1] / script
        monkeypatch.setattr(sys, 'argv', [str(path), *map(str, args)])
        try: runpy.run_path(str(path), run_name='__main__')
        except SystemExit as e: return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0
    return run
