"""Execute library notebooks in place so that they are committed with their outputs and figures.

    .venv/bin/python tools/run_nbs.py nbs/05_losses.ipynb [more notebooks ...]

Every code cell runs as `nbdev_test` runs it (from the notebook's folder, in one kernel), except the cells flagged
`slow`, `gpu` or `notest` (settings.ini `tst_flags`): those keep the outputs they had. Figures are stored as PNG at
100 dpi (not retina), then `nbdev_clean` strips execution counts and metadata, so that the sync check
in `tools/test.sh` finds nothing to change. A notebook whose cell fails is left untouched and the error is printed.
"""
import os, sys, time
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config
from nbdev.process import extract_directives

SKIP = set(get_config().tst_flags.split())
SMALL_FIGURES = "import matplotlib; matplotlib.rcParams['figure.dpi'] = 100"  # committed figures: sharp in JupyterLab, files still small


def _skip(cell):
    "True for cells `nbdev_test` would not run: markdown, flagged cells, `#| eval: false`."
    if cell.cell_type != 'code': return True
    directives = extract_directives(cell, remove=False)
    if directives.get('eval:', [''])[0].lower() == 'false': return True
    return bool(SKIP & directives.keys())


def run_notebook(path: Path) -> float:
    "Execute `path` in place (flagged cells skipped); returns the seconds it took."
    path = Path(path).resolve()
    nb = read_nb(path)
    start = time.time()
    shell = CaptureShell(path, mpl_format='png')
    os.environ['IN_TEST'] = '1'                       # the notebooks' own small-work switch, as under nbdev_test
    with working_directory(path.parent):
        shell.run(SMALL_FIGURES)
        shell.run_all(nb, exc_stop=True, preproc=_skip)
    write_nb(nb, path)
    return time.time() - start


if __name__ == '__main__':
    if len(sys.argv) < 2: sys.exit(__doc__)
    failed = []
    for p in sys.argv[1:]:
        try: print(f'{p}: {run_notebook(Path(p)):.0f} s', flush=True)
        except Exception as e:
            failed.append(p); print(f'{p}: FAILED ({type(e).__name__}: {e})', file=sys.stderr, flush=True)
    os.system(f'{Path(sys.executable).parent}/nbdev_clean')
    sys.exit(1 if failed else 0)
