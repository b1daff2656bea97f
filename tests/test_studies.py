"""The run notebooks (nbs/runs/): executed through papermill with the smoke preset, their outputs checked."""
import ast, json, re, shutil, subprocess, sys

import torch
from pathlib import Path

import pytest

import yaml
from PIL import Image

from segaug_simclr.report import references
from segaug_simclr.study import METHODS, PRESETS, STUDIES, notebook_path, resolve_params, run_study, segaug_data

ROOT = Path(__file__).resolve().parents[1]
NUM = r'[\d.]+(?: ± [\d.]+)? \(n=\d+\)'
# rows each study's results.md must hold: ours where the smoke preset runs it, the references beside
EXPECTED = {
    'walkthrough': [rf'\| SimCLR \| top1 \| {NUM} \|', rf'\| random init \| top1 \| {NUM} \|'],
    'segaug_vs_standard': [rf'\| standard \| top1 \| {NUM} \| — \| 34\.6 \|', rf'\| segaug \| top1 \| {NUM} \| — \| 35\.2 \|',
                           r'\| segaug \| standard \| top1 \| [+-][\d.]+ \|',
                           rf'\| segaug \| top5 \| {NUM} \| — \| 60\.11 \|', rf'\| random init \| top1 \| {NUM} \|'],
    'cifar10_validation': [rf'\| B32-E1 \| top1 \| {NUM} \|', r'\| thesis-b1024 \| top1 \| not run \| — \| 68\.5 \|',
                           r'\| thesis-224 \| top1 \| not run \| — \| 86\.0 \|'],
    'linear_width': [rf'\| r18-0.125x \| top1 \| {NUM} \|', r'\| r50-1x \| top1 \| not run \| 69\.3 \| 34\.6 \|',
                     r'\| r50-4x \| top5 \| not run \| 93\.2 \| 61\.2 \|'],
    'finetune_fractions': [rf'\| r18-0.125x-10% \| top1 \| {NUM} \|', r'\| r50-1x-1% \| top1 \| not run \| 48\.3 \| 19\.2 \|'],
    'transfer': [rf'\| standard-synthetic \| top1 \| {NUM} \|', rf'\| segaug-synthetic \| top1 \| {NUM} \|',
                 r'\| standard-cifar10 \| top1 \| not run \| — \| 82\.4 \|', r'\| segaug-flowers102 \| top1 \| not run \| — \| 67\.9 \|'],
    'mask_ablation': [rf'\| oracle sp=0.8 \| top1 \| {NUM} \|', rf'\| none sp=0.8 \| top1 \| {NUM} \|'],
}


def test_every_study_has_a_notebook_and_expectations():
    assert sorted(EXPECTED) == sorted(STUDIES)
    assert sorted(p.stem for p in (ROOT / 'nbs' / 'runs').glob('*.ipynb')) == sorted([*STUDIES, 'reproduction'])


@pytest.mark.parametrize('study', sorted(STUDIES))
def test_every_preset_resolves(study):
    "Each preset sets only parameters the study declares, with values of the right type and in the allowed sets."
    assert {'smoke', 'demo', 'cifar10', 'paper'} <= set(STUDIES[study].presets) <= set(PRESETS)
    for preset in STUDIES[study].presets:
        P = resolve_params(study, dict(preset=preset))
        assert P['preset'] == preset and set(P) == set(STUDIES[study].params)


@pytest.mark.parametrize('study', sorted(STUDIES))
def test_parameters_cell_holds_the_demo_defaults_as_literals(study):
    nb = json.loads(notebook_path(study).read_text())
    tagged = [c for c in nb['cells'] if 'parameters' in c['metadata'].get('tags', [])]
    assert len(tagged) == 1, 'exactly one cell tagged parameters'
    values = {}
    for node in ast.parse(''.join(tagged[0]['source'])).body:
        assert isinstance(node, ast.Assign), 'the parameters cell holds assignments only'
        values[node.targets[0].id] = ast.literal_eval(node.value)  # raises for anything but a literal
    assert values == STUDIES[study].params


@pytest.mark.slow
@pytest.mark.parametrize('study', sorted(STUDIES))
def test_study_smoke_run_writes_figures_records_and_results(study, smoke_runs):
    out = smoke_runs(study)
    assert (out / f'{study}.ipynb').exists()
    params = yaml.safe_load((out / 'params.yaml').read_text())
    assert params['study'] == study and params['preset'] == 'smoke'
    figures = sorted((out / 'figures').glob('*.png'))
    assert figures, 'no figure written'
    for f in figures:
        with Image.open(f) as im:
            im.verify()
            assert im.format == 'PNG' and im.size[0] > 100 and im.size[1] > 100
    records = [json.loads(p.read_text()) for p in (out / 'records').glob('*.json')]
    assert records
    for r in records:
        assert r['metrics'] and all(0 <= v <= 1 for v in r['metrics'].values()), r['metrics']
    results = (out / 'results.md').read_text()
    for pattern in EXPECTED[study]:
        assert re.search(pattern, results), f'{pattern!r} not in results.md:\n{results}'
    for ref in references(study):  # every reference number of the study is printed beside ours
        assert f"| {ref['value']} |" in results, ref
    shown = [o.get('text') or ''.join(o.get('data', {}).get('text/plain', '')) for c in json.loads((out / f'{study}.ipynb').read_text())['cells']
             for o in c.get('outputs', [])]
    warned = [t for t in map(str, shown) if re.search(r'Warning|warnings?\.warn', str(t))]
    assert not warned, f'the executed notebook shows warnings: {warned[:3]}'  # a student sees no warning box


@pytest.mark.slow
def test_second_run_into_the_same_folder_reuses_everything(smoke_runs, tmp_path):
    out = tmp_path / 'study'
    shutil.copytree(smoke_runs('segaug_vs_standard'), out)  # the shared run stays as it was; copies keep their mtimes
    before = {p: p.stat().st_mtime_ns for p in list(out.glob('pretrain/*/checkpoint.pt')) + list(out.glob('records/*.json'))}
    assert len([p for p in before if p.name == 'checkpoint.pt']) == 2 * len(METHODS)  # five methods, two seeds
    run_study('segaug_vs_standard', 'smoke', out=out, progress=False)
    after = {p: p.stat().st_mtime_ns for p in list(out.glob('pretrain/*/checkpoint.pt')) + list(out.glob('records/*.json'))}
    assert after == before, 'a finished pretraining run or evaluation was computed again'
    assert (out / 'results.md').exists()


def test_unknown_parameter_and_invalid_value_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['epoch'\]; its parameters are"):
        run_study('walkthrough', 'smoke', dict(epoch=3), out=tmp_path / 'a')
    with pytest.raises(ValueError, match=r"invalid value\(s\) \['segaugg'\]; allowed: \['standard', 'segaug', 'segaug_global'"):
        run_study('segaug_vs_standard', 'smoke', dict(methods=['standard', 'segaugg']), out=tmp_path / 'b')
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        run_study('walkthrough', 'fast', out=tmp_path / 'c')
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_missing_dataset_fails_with_a_clear_message_before_a_kernel_starts(tmp_path, capsys):
    from segaug_simclr import cli
    out = tmp_path / 'transfer'
    rc = cli.main(['run', 'transfer', '--preset', 'smoke', '--no-progress', '-p', 'targets', '[cifar100]', '-p', 'data_root',
                   str(tmp_path / 'nodata'), '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert 'transfer needs datasets that are not under' in err and '- cifar100 (train)' in err, err
    assert not out.exists()  # nothing was written, no kernel started


def test_cli_lists_studies_and_passes_pretrain_through(capsys):
    from segaug_simclr import cli
    assert cli.main(['list']) == 0
    listed = capsys.readouterr().out
    assert all(f'{s}:' in listed for s in STUDIES), listed
    p = subprocess.run([sys.executable, '-m', 'segaug_simclr.cli', 'pretrain', '--help'], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and '--batch-size' in p.stdout  # the module's own entry point, and pretrain's flags through it


def test_readme_describes_the_demo_that_make_demo_runs():
    readme = (ROOT / 'README.md').read_text()
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^demo: install.*\n\t\$\(BIN\)/segaug-simclr demo ', makefile, flags=re.M)
    P = STUDIES['segaug_vs_standard'].params  # what `segaug-simclr demo` runs (the demo preset)
    seeds = {1: 'one seed', 2: 'two seeds', 3: 'three seeds'}[P['seeds']]
    said = re.search(r'`make demo` runs the `segaug_vs_standard` study with its `demo` preset: (.*?)\n\n', readme, flags=re.S).group(1)
    said = ' '.join(said.split())
    for fact in (f"ResNet-{P['depth']} at width {P['width']:g}", f"{P['num_images']:,} images", seeds, f"{P['epochs']} epochs",
                 'spurious backgrounds'):
        assert fact in said, f'README says: {said!r}; it should say {fact!r}'


@pytest.mark.slow
def test_the_study_and_the_cli_make_the_same_record(smoke_runs, tmp_path):
    "One evaluation entry point (`evaluate.run_protocol`): `segaug-simclr eval` gives a study's record for the same encoder and data."
    from segaug_simclr import cli
    out = smoke_runs('linear_width')
    P = yaml.safe_load((out / 'params.yaml').read_text())
    recs = [json.loads(p.read_text()) for p in (out / 'records').glob('linear-*.json')]
    for rec in (next(r for r in recs if r['encoder'].startswith('random:')), next(r for r in recs if r['encoder'].endswith('.pt'))):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        assert cli.main(['eval', rec['encoder'], '--dataset', P['dataset'], '--num-images', str(P['eval_images']),
                         '--test-images', str(P['test_images']), '--protocol', 'linear', '--linear-epochs', str(P['linear_epochs']),
                         '--image-size', str(P['image_size']), '--device', 'cpu', '--out', str(folder)]) == 0
        mine = json.loads(next(folder.glob('*.json')).read_text())
        assert (mine['metrics'], mine['n_train'], mine['n_test'], mine['recipe']) == (rec['metrics'], rec['n_train'], rec['n_test'], rec['recipe'])
        assert [h['train_top1'] for h in mine['history']] == [h['train_top1'] for h in rec['history']]


@pytest.mark.slow
def test_mask_controls_change_only_where_the_masks_come_from(smoke_runs):
    "The smoke study runs every method: the shuffled masks are other images' masks, the centre prior one mask for all."
    from segaug_simclr.segment import derangement
    out = smoke_runs('segaug_vs_standard')
    P = yaml.safe_load((out / 'params.yaml').read_text())
    P.pop('study')
    real, shuf, centre = (segaug_data(P, out, m, seed=1) for m in ('segaug_global', 'shuffled_masks', 'centre_prior'))
    perm = derangement(len(real), seed=1)
    for i in range(len(real)):
        assert perm[i] != i and torch.equal(shuf.masks[i], real.masks[int(perm[i])])
    assert all(torch.equal(centre.masks[i], centre.masks[0]) for i in range(len(centre)))
    results = (out / 'results.md').read_text()
    assert re.search(r'\| segaug_global \| shuffled_masks \| top1 \| [+-][\d.]+ \| \[[+-][\d.]+, [+-][\d.]+\] \| 2 \| [+-][\d.]+, [+-][\d.]+ \|', results), results


def test_paired_interval_pairs_the_seeds():
    "Seed 0 is hard for both methods, seed 1 easy: paired, the difference is a steady +1; unpaired it would vanish in the spread."
    from segaug_simclr.report import paired_differences
    rows = [dict(setting='standard', seed=0, top1=10.0), dict(setting='standard', seed=1, top1=50.0),
            dict(setting='segaug', seed=1, top1=51.0), dict(setting='segaug', seed=0, top1=11.0)]
    (d,) = paired_differences(rows, 'standard')
    assert d['values'] == [1.0, 1.0] and d['lo'] == d['hi'] == 1.0 and d['n'] == 2
