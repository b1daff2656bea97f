"""SegAug with cached masks against the standard SimCLR pipeline, and cached masks against segmenting every image.

1. Two-view throughput (images/s, one process) of SegAug with masks read from the on-disk cache, as a ratio to the
   standard pipeline measured in the same run (rounds interleaved; goal: ratio >= 0.7), at 32 px (CIFAR variant)
   and 96 px (with blur).
2. Mask cost per epoch: reading and unpacking the cached masks of every image, against running
   DeepLabV3-MobileNetV3 (random weights: the cost is the same as with the real ones) on every image, one at a
   time at its default input size 520, on this CPU.

    python benchmarks/segaug_throughput.py [--seconds 4] [--rounds 3]
"""
import argparse, json, statistics, tempfile, time
from pathlib import Path

import torch

from segaug_simclr.augment import TwoViews, cifar_augment, simclr_augment
from segaug_simclr.segaug import SegAugDataset, SegAugViews
from segaug_simclr.data import synthetic_shapes
from datapath import per_image_rate  # this folder: the one per-image throughput measurement
from segaug_simclr.segment import DeepLabSegmenter, OracleSegmenter, build_mask_cache


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=4)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    torch.manual_seed(0)
    cache = Path(tempfile.mkdtemp())
    results = {}
    for size in (32, 96):
        raw = synthetic_shapes(2048, size=size, seed=0)
        store = build_mask_cache(raw, OracleSegmenter(), cache, f'synthetic{size}', progress=False)
        std_aug = cifar_augment(size) if size < 96 else simclr_augment(size)
        standard = synthetic_shapes(2048, size=size, seed=0); standard.transform = TwoViews(std_aug)
        segaug = SegAugDataset(raw, store, SegAugViews(size, standard=std_aug))
        runs = {'standard': [], 'segaug': []}
        for _ in range(args.rounds):
            runs['standard'].append(per_image_rate(standard, args.seconds))
            runs['segaug'].append(per_image_rate(segaug, args.seconds))
        med = {k: statistics.median(v) for k, v in runs.items()}
        results[f'{size}px'] = dict(standard_images_per_s=round(med['standard'], 1), segaug_images_per_s=round(med['segaug'], 1),
                                    ratio=round(med['segaug'] / med['standard'], 3), fallback_share=round(segaug.fallback.float().mean().item(), 3),
                                    rounds={k: [round(x, 1) for x in v] for k, v in runs.items()})
        print(f"{size:>3} px: standard {med['standard']:.0f} img/s, SegAug (cached masks) {med['segaug']:.0f} img/s, "
              f"ratio {med['segaug'] / med['standard']:.2f}", flush=True)
    # mask cost per epoch
    raw = synthetic_shapes(2048, size=32, seed=0)
    store = build_mask_cache(raw, OracleSegmenter(), cache, 'synthetic32', progress=False)
    t0 = time.perf_counter()
    for i in range(len(store)): store[i]
    cached_per_image = (time.perf_counter() - t0) / len(store)
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large
    torch.save(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict(),
               cache / 'dl.pth')
    seg = DeepLabSegmenter('deeplabv3_mobilenet_v3_large', weights=cache / 'dl.pth')
    seg.segment_items(raw, [0], (32, 32))  # warm-up
    n = 8
    t0 = time.perf_counter()
    for i in range(n): seg.segment_items(raw, [i], (32, 32))
    deeplab_per_image = (time.perf_counter() - t0) / n
    for n_images in (5000, 50000):
        print(f"masks for an epoch of {n_images} images: cached {cached_per_image * n_images:.2f} s, "
              f"DeepLabV3-MobileNetV3 per image {deeplab_per_image * n_images:.0f} s "
              f"({deeplab_per_image / cached_per_image:.0f}x)")
    results['mask_cost'] = dict(cached_s_per_image=cached_per_image, deeplabv3_mobilenet_s_per_image=deeplab_per_image,
                                input_size=seg.input_size, ratio=round(deeplab_per_image / cached_per_image, 1),
                                per_epoch_50k_images_s=dict(cached=round(cached_per_image * 50000, 2),
                                                            deeplab=round(deeplab_per_image * 50000, 1)))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    dest = out / 'segaug_throughput_cpu.json'
    dest.write_text(json.dumps(dict(torch=torch.__version__, threads=torch.get_num_threads(), **results), indent=2))
    print(f"written to {dest}")


if __name__ == '__main__':
    main()
