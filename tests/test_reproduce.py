"""One command reproduces the thesis: every study, then one report (segaug_simclr.reproduce, nbs/runs/reproduction.ipynb)."""
import json, re, shutil

import pytest

from segaug_simclr import cli
from segaug_simclr.reproduce import TABLE_STUDIES, render_report, verdict



def test_verdict_rule_on_hand_made_numbers():
    ours = lambda m, n=3: dict(mean=m, sd=0.4, n=n)
    assert verdict(ours(35.9), 34.6, []) == ('reproduced', '+1.3 points, within 2')
    assert verdict(ours(32.0), 34.6, []) == ('not reproduced', '-2.6 points, outside 2')
    assert verdict(ours(34.6), 34.6, ['synthetic shapes instead of imagenet']) == ('not comparable', 'synthetic shapes instead of imagenet')
    assert verdict(None, 34.6, [])[0] == 'not run'


def test_unknown_study_in_only_is_refused_before_any_work(tmp_path, capsys):
    assert cli.main(['reproduce', '--preset', 'smoke', '--only', 'transfer,walkthru', '--out', str(tmp_path / 'r')]) == 2
    assert "unknown ['walkthru']" in capsys.readouterr().err and not (tmp_path / 'r').exists()


@pytest.mark.slow
def test_the_report_of_a_smoke_reproduction_with_one_study_failed(smoke_runs, tmp_path):
    "Every study's smoke run in a reproduction folder, transfer failed: the report names all, transfer as failed, Table 2 beside ours."
    root = tmp_path / 'reproduction'
    status = {}
    for study in TABLE_STUDIES:
        if study == 'transfer':
            status[study] = dict(status='failed', error='transfer failed in cell 5: RuntimeError: out of memory', wall_s=1.0); continue
        src = smoke_runs(study)
        shutil.copytree(src, root / study, ignore=shutil.ignore_patterns('pretrain', 'mask_cache', 'records', 'jobs', '.staging'))
        status[study] = dict(status='done', wall_s=10.0)
    (root / 'status.json').write_text(json.dumps(status))
    report = render_report(root, 'smoke').read_text()
    for study in TABLE_STUDIES: assert f'## {study}:' in report, study
    assert '**failed**: `transfer failed in cell 5: RuntimeError: out of memory`' in report
    assert re.search(r'\| standard \| top1 \| [\d.]+ .*\| 34\.6 \| thesis \| [+-][\d.]+ \| not comparable \| synthetic shapes instead of imagenet', report), report
    assert re.search(r'\| segaug \| top1 \| [\d.]+ .*\| 35\.2 \| thesis \|', report)
    assert re.search(r'#### .*\n\n\| setting \| metric .*\n.*\n\| oracle sp=0.8 \| top1 \| [\d.]+', report), report  # the ablation's own table
    assert '## Deviations from the published protocols' in report and '`epochs` 1 (thesis 100)' in report
    html = (root / 'REPORT.html').read_text()
    assert html.count('data:image/png;base64,') >= 5 and '<script' not in html and 'src="http' not in html
    assert (root / 'reproduction.ipynb').exists() and (root / 'figures' / 'summary.png').exists()


@pytest.mark.slow
def test_reproduce_runs_the_studies_then_the_report(smoke_runs, tmp_path, capsys):
    root = tmp_path / 'r'
    shutil.copytree(smoke_runs('cifar10_validation'), root / 'cifar10_validation')  # its runs are reused, its notebook runs again
    assert cli.main(['reproduce', '--preset', 'smoke', '--only', 'cifar10_validation', '--no-progress', '--out', str(root)]) == 0
    status = json.loads((root / 'status.json').read_text())
    assert list(status) == ['cifar10_validation'] and status['cifar10_validation']['status'] == 'done'
    report = (root / 'REPORT.md').read_text()
    assert '| cifar10_validation | done |' in report and '| linear_width | not run |' in report
    assert 'report: ' in capsys.readouterr().out
