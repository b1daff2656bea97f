"""The augmentation explorer without a browser: setting a control's `.value` (what a released slider does) redraws
with the new setting; the drawing functions behind it; the committed lesson keeps the widget view and a static figure."""
import io, json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from segaug_simclr.augment import simclr_augment
from segaug_simclr.data import synthetic_shapes
from segaug_simclr.explore import (AugmentExplorer, ExploreSettings, draw_views, explore, load_images, segaug_views,
                                   standard_pipeline, view_masks)
from segaug_simclr.segment import fg_ratio

ROOT = Path(__file__).resolve().parents[1]
VIEW = 'application/vnd.jupyter.widget-view+json'


def _png(fig) -> bytes:
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=50); return buf.getvalue()


@pytest.fixture(scope='module')
def shapes():
    return synthetic_shapes(2, size=48, seed=0)


@pytest.mark.parametrize('control, value', [('color_strength', 0.3), ('blur', False), ('degrade', 'erode:2'),
                                            ('masks', 'saliency')])
def test_changing_a_control_redraws_with_the_new_setting(shapes, control, value):
    ex = AugmentExplorer(shapes.images, shapes.masks)
    first, first_png = ex.figure, ex.image.value
    assert ex.renders == 1 and ex.last_settings == ExploreSettings()
    ex.controls[control].value = value
    assert ex.renders == 2 and getattr(ex.last_settings, control) == value
    assert ex.last_settings == replace(ExploreSettings(), **{control: value}) == ex.settings
    assert ex.figure is not first and ex.image.value != first_png and _png(ex.figure) != _png(first)


def test_fallback_thresholds_mark_the_rows_that_fall_back(shapes):
    ratios = fg_ratio(shapes.masks)
    lo = float(ratios.min() + ratios.max()) / 2  # between the two images' foreground shares: one falls back
    ex = AugmentExplorer(shapes.images, shapes.masks)
    ex.controls['fg_lo'].value = round(lo, 2)
    assert ex.figure.get_suptitle().startswith('1 of 2 images fall back')
    mask_titles = [ex.figure.axes[6 * i + 1].get_title() for i in range(2)]
    assert [t.endswith('falls back') for t in mask_titles] == (ratios < round(lo, 2)).tolist()


def test_draw_views_is_deterministic_and_views_follow_the_settings(shapes):
    s = ExploreSettings(degrade='dilate:2')
    assert _png(draw_views(shapes.images, shapes.masks, s)) == _png(draw_views(shapes.images, shapes.masks, s))
    img = shapes.images[0]
    torch.manual_seed(0); ours = standard_pipeline(ExploreSettings(), 48)(img)
    torch.manual_seed(0); theirs = simclr_augment(48)(img)
    assert torch.equal(ours, theirs)  # the defaults are SimCLR's pipeline
    seg = segaug_views(ExploreSettings(bg_blur_p=0.1, fg_hi=0.7, crop_min=0.3), 48)
    assert (seg.policy.bg[0].p, seg.hi, seg.crop.scale) == (0.1, 0.7, (0.3, 1.0))
    dilated = view_masks(shapes.images, shapes.masks, s)
    assert (fg_ratio(dilated) > fg_ratio(shapes.masks)).all()


def test_images_without_masks_get_saliency_masks(tmp_path, shapes):
    for i, img in enumerate(shapes.images):
        (tmp_path / 'train' / f'c{i}').mkdir(parents=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / 'train' / f'c{i}' / 'x.png')
    images, masks = load_images('imagefolder', tmp_path, n=2, size=40)
    assert images.shape == (2, 3, 40, 40) and masks is None
    ex = AugmentExplorer(images)
    assert ex.controls['masks'].options == ('saliency',) and ex.last_settings.masks == 'saliency'
    with pytest.raises(ValueError, match="masks='saliency'"):
        draw_views(images, None, ExploreSettings())
    with pytest.raises(ValueError, match='saliency'):
        AugmentExplorer(images, None, ExploreSettings(masks='exact'))


def test_explorer_displays_as_its_widgets_with_a_short_text():
    ex = explore('synthetic', n=2, size=32)
    bundle = ex._repr_mimebundle_()
    assert bundle[VIEW]['model_id'] == ex.ui.model_id
    assert len(bundle['text/plain']) < 200 and bundle['text/plain'].startswith('AugmentExplorer(2 synthetic images')


def test_committed_lesson_shows_the_widgets_and_a_static_figure():
    nb = json.loads((ROOT / 'nbs' / '03c_explore.ipynb').read_text())
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    shown = [i for i, c in enumerate(code) if any(VIEW in o.get('data', {}) for o in c['outputs'])]
    assert shown, 'the explorer cell has no widget view: run tools/run_nbs.py nbs/03c_explore.ipynb'
    after = code[shown[-1] + 1]['outputs']
    assert any('image/png' in o.get('data', {}) for o in after), 'no static figure after the widgets'
