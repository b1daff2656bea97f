import configparser
import yaml
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    return cfg['DEFAULT']


def test_environment_yml_mirrors_settings_ini():
    s = _settings()
    wanted = s['requirements'].split() + s['dev_requirements'].split()
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    assert '-e .' in pip
    assert sorted(p for p in pip if p != '-e .') == sorted(wanted)


def test_settings_keep_nbdev2_essentials():
    s = _settings()
    assert set(s['tst_flags'].split()) >= {'notest', 'slow', 'gpu'}
    assert 'tags' in s['allowed_cell_metadata_keys'].split()
    assert 'nbdev==2.' in s['dev_requirements']


def test_requirements_admit_the_offline_torch():
    # the offline machines install exactly torch 2.14.1 / torchvision 0.29.1: the ranges must admit them
    from packaging.requirements import Requirement
    reqs = {Requirement(r).name: Requirement(r) for r in _settings()['requirements'].split()}
    assert reqs['torch'].specifier.contains('2.14.1')
    assert reqs['torchvision'].specifier.contains('0.29.1')


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / 'README.md').read_text()
    assert 'make test' in readme and 'make demo' in readme
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
