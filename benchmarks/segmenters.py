"""The weight-free segmenters on real photographs: masks per second and the foreground share, one process.

Issue 20's goal: every weight-free segmenter makes the masks of 10,000 images within a minute on two cores.
Each segmenter reads and decodes the images itself (`segment_items`, the path the mask cache takes), so the
time is what a study waits for. Ratios are to `saliency`, measured in the same run.

    python benchmarks/segmenters.py --root /tmp/cifar10 [--split test] [--num-images 10000]
    python benchmarks/segmenters.py            # no photographs at hand: the synthetic shapes
"""
import argparse, json, time
from pathlib import Path

from segaug_simclr.core import environment
from segaug_simclr.data import get_dataset, synthetic_shapes
from segaug_simclr.segment import get_segmenter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--root', help='an ImageFolder root (e.g. the extracted CIFAR-10 JPEG copy); synthetic shapes without it')
    ap.add_argument('--split', default='test')
    ap.add_argument('--num-images', type=int, default=10000)
    ap.add_argument('--size', type=int, default=32, help='mask size')
    ap.add_argument('--segmenters', nargs='+', default=['saliency', 'random_walker', 'centre'])
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    if args.root: ds, data = get_dataset('imagefolder', args.root, split=args.split), f'image folder {args.root} ({args.split})'
    else: ds, data = synthetic_shapes(args.num_images, size=args.size, seed=0), 'synthetic shapes'
    idx = list(range(min(args.num_images, len(ds))))
    out = {'data': data, 'images': len(idx), 'mask_size': args.size, 'machine': environment()}
    for name in args.segmenters:
        seg = get_segmenter(name)
        t = time.perf_counter(); masks = seg.segment_items(ds, idx, (args.size, args.size)); dt = time.perf_counter() - t
        out[name] = {'seconds': round(dt, 2), 'masks_per_s': round(len(idx) / dt, 1),
                     'seconds_per_10000': round(dt * 10000 / len(idx), 1), 'fg_share': round(masks.float().mean().item(), 3)}
    base = out.get('saliency', {}).get('masks_per_s')
    for name in args.segmenters:
        if base: out[name]['ratio_to_saliency'] = round(out[name]['masks_per_s'] / base, 3)
        print(f"{name:>14}: {out[name]['masks_per_s']:>9.1f} masks/s, {out[name]['seconds_per_10000']:>6.1f} s per 10,000, "
              f"foreground {out[name]['fg_share']:.3f}" + (f", {out[name]['ratio_to_saliency']:.2f}x saliency" if base else ''))
    path = Path(args.out) / ('segmenters_cpu.json' if args.root else 'segmenters_synthetic_cpu.json')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + '\n')
    print('wrote', path)


if __name__ == '__main__':
    main()
