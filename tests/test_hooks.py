"""`make hooks`: notebooks saved from JupyterLab are committed clean (tools/pre-commit runs nbdev_clean on staged notebooks)."""
import json, os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pre_commit_hook_cleans_a_notebook_saved_by_jupyterlab(tmp_path):
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    shutil.copy(ROOT / 'settings.ini', tmp_path)
    (tmp_path / 'nbs').mkdir()
    clean = json.loads((ROOT / 'nbs' / '05_losses.ipynb').read_text())
    saved = json.loads(json.dumps(clean))  # what JupyterLab writes on save: kernel metadata and execution counts
    saved['metadata'] = {'kernelspec': {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'},
                         'language_info': {'name': 'python', 'version': '3.11.7'}}
    for i, c in enumerate(saved['cells']):
        if c['cell_type'] == 'code': c['execution_count'] = i; c['metadata']['scrolled'] = True
    nb = tmp_path / 'nbs' / '05_losses.ipynb'
    nb.write_text(json.dumps(saved, indent=1))
    env = os.environ | dict(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run(['git', 'add', 'nbs/05_losses.ipynb'], cwd=tmp_path, check=True)
    subprocess.run([str(ROOT / 'tools' / 'pre-commit')], cwd=tmp_path, check=True, env=env)
    staged = json.loads(subprocess.run(['git', 'show', ':nbs/05_losses.ipynb'], cwd=tmp_path, capture_output=True, text=True).stdout)
    assert staged['metadata'] == clean['metadata']  # as committed: nbdev's kernelspec, no language_info
    assert all(c.get('execution_count') is None and 'scrolled' not in c['metadata'] for c in staged['cells'] if c['cell_type'] == 'code')
    assert [c.get('outputs') for c in staged['cells']] == [c.get('outputs') for c in clean['cells']]  # outputs are kept


def test_make_hooks_installs_the_hook_and_settings_ask_jupyter_to_clean_on_save():
    assert 'install -m 755 tools/pre-commit .git/hooks/pre-commit' in (ROOT / 'Makefile').read_text()
    assert 'jupyter_hooks = True' in (ROOT / 'settings.ini').read_text()
