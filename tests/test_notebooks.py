"""The library notebooks read as lessons: small cells, one exported idea per cell, each followed by a demonstration or
a test that uses it, and committed executed (values and figures on the page). `tools/run_nbs.py` executes them."""
import ast, configparser, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_settings = configparser.ConfigParser(); _settings.read(ROOT / 'settings.ini')
LIBRARY = sorted((ROOT / 'nbs').glob('[0-9]*.ipynb'))
MAX_LINES = 30
FLAGS = tuple(_settings['DEFAULT']['tst_flags'].split())  # the cells nbdev_test (and tools/run_nbs.py) skip


def _cells(path):
    nb = json.loads(path.read_text())
    return [(c['cell_type'], ''.join(c['source']), c.get('outputs', [])) for c in nb['cells']]


def _directives(src):
    return [l[3:].strip() for l in src.splitlines() if l.startswith('#|')]


def _is_export(src):
    return any(d.split()[0] in ('export', 'exports') for d in _directives(src) if d)


def _flagged(src):
    return any(d.split()[0] in FLAGS for d in _directives(src) if d)


def _tree(src):
    "The cell's Python, without IPython magics (`%...`, `!...`)."
    return ast.parse('\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines()))


def _public_defs(src):
    return [n.name for n in _tree(src).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]


def _only_one_class(src):
    defs = [n for n in _tree(src).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return len(defs) == 1 and isinstance(defs[0], ast.ClassDef)


def test_there_are_library_notebooks():
    assert len(LIBRARY) >= 15, [p.name for p in LIBRARY]


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: p.stem)
def test_cells_are_small(path):
    "No code cell over 30 lines, except a cell that holds one class and nothing else."
    big = [(len(src.splitlines()), src.splitlines()[1] if len(src.splitlines()) > 1 else src)
           for kind, src, _ in _cells(path)
           if kind == 'code' and len(src.splitlines()) > MAX_LINES and not _only_one_class(src)]
    assert not big, f'{path.name}: cells over {MAX_LINES} lines (split them): {big}'


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: p.stem)
def test_one_exported_idea_per_cell(path):
    many = [defs for kind, src, _ in _cells(path) if kind == 'code' and _is_export(src)
            for defs in [_public_defs(src)] if len(defs) > 1]
    assert not many, f'{path.name}: export cells defining several public names (one per cell): {many}'


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: p.stem)
def test_every_export_is_demonstrated(path):
    "After each exported public function or class, before the next one, a plain code cell uses it."
    cells = [(src, _is_export(src)) for kind, src, _ in _cells(path) if kind == 'code']
    missing = []
    for i, (src, export) in enumerate(cells):
        if not export: continue
        for name in _public_defs(src):
            later = []
            for s, e in cells[i + 1:]:
                if e and _public_defs(s): break
                if not e: later.append(s)
            if not any(re.search(rf'\b{re.escape(name)}\b', s) for s in later): missing.append(name)
    assert not missing, f'{path.name}: exported names with no demonstration or test right after them: {missing}'


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: p.stem)
def test_checks_show_the_failing_value(path):
    hidden = [src.splitlines()[0] for kind, src, _ in _cells(path) if kind == 'code' and 'test_eq(bool(' in src]
    assert not hidden, f'{path.name}: test_eq(bool(...), True) hides the failing value: {hidden}'


def _shows_a_value(src):
    "The cell ends in a bare value (a name, attribute, index, tuple or comparison) that Jupyter displays."
    body = _tree(src).body
    return bool(body) and isinstance(body[-1], ast.Expr) and not src.rstrip().endswith(';') and isinstance(
        body[-1].value, (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.Compare, ast.BinOp, ast.List))


def _plots(src):
    return re.search(r'\bplt\.|\bplot_\w+\(|\bshow_\w+\(|\.plot\(|\bsns\.', src) is not None


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: p.stem)
def test_committed_executed(path):
    "Cells that end in a value show it, and cells that draw show the figure (run `tools/run_nbs.py` and commit)."
    blank = []
    for kind, src, outputs in _cells(path):
        if kind != 'code': continue
        errors = [o.get('ename') for o in outputs if o.get('output_type') == 'error']
        if errors: blank.append(('an error is committed', errors, src.splitlines()[0]))
        if _is_export(src) or _flagged(src): continue
        images = [o for o in outputs if 'image/png' in o.get('data', {})]
        if _plots(src) and not images: blank.append(('no figure', src.splitlines()[0]))
        elif _shows_a_value(src) and not outputs: blank.append(('no output', src.splitlines()[-1]))
    assert not blank, f'{path.name}: run `.venv/bin/python tools/run_nbs.py {path.relative_to(ROOT)}`: {blank}'


def test_index_is_the_table_of_contents():
    "nbs/index.ipynb lists every library notebook with the module it exports."
    text = ''.join(src for _, src, _ in _cells(ROOT / 'nbs' / 'index.ipynb'))
    for path in LIBRARY:
        assert path.stem in text, f'nbs/index.ipynb does not list {path.name}'
        exp = re.search(r'#\|\s*default_exp\s+(\S+)', '\n'.join(s for _, s, _ in _cells(path)))
        if exp: assert f'segaug_simclr.{exp.group(1)}' in text, f'index: module of {path.name} not named'


def test_executed_run_notebooks_are_committed_and_linked_from_the_index():
    "Every run notebook has an executed copy under outputs/, linked from the index, with no error or warning shown."
    text = ''.join(src for _, src, _ in _cells(ROOT / 'nbs' / 'index.ipynb'))
    links = {(ROOT / 'nbs' / l).resolve() for l in re.findall(r'\]\((\.\./outputs/[^)]+\.ipynb)\)', text)}
    for run in sorted((ROOT / 'nbs' / 'runs').glob('*.ipynb')):
        copies = [l for l in links if l.name == run.name]
        assert copies, f'nbs/index.ipynb links no executed copy of {run.name}'
        for copy in copies:
            assert copy.exists(), f'the index links {copy.relative_to(ROOT)}, which is not committed'
            shown = [str(o.get('text') or o.get('data', {}).get('text/plain', '')) for kind, _, outs in _cells(copy) for o in outs]
            assert shown, f'{copy.relative_to(ROOT)} has no outputs'
            bad = [s[:200] for s in shown if re.search(r'Warning|Traceback', s)]
            assert not bad, f'{copy.relative_to(ROOT)} shows: {bad[:2]}'
