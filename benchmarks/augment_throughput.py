"""Two-view augmentation throughput (images/s, one process) at 32, 96 and 224 pixels.

Each image yields two independent views, as in pretraining. Sources are synthetic-benchmark images held in
memory as uint8 tensors (side = output side x 8/7, so the crop has something to cut). 32 px uses the CIFAR
variant (no blur, s = 0.5); 96 and 224 px the full SimCLR pipeline with blur. DataLoader workers multiply these
figures by about the number of cores.

    python benchmarks/augment_throughput.py [--seconds 5] [--out outputs/benchmarks]
"""
import argparse, json, platform, time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from segaug_simclr.augment import TwoViews, cifar_augment, simclr_augment
from segaug_simclr.data import synthetic_shapes


def throughput(aug, size, seconds):
    src = synthetic_shapes(64, size=round(size * 8 / 7), seed=0)
    src.transform = TwoViews(aug)
    loader = DataLoader(src, batch_size=32, shuffle=True, num_workers=0)
    next(iter(loader))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for (v1, v2), _ in loader:
            n += len(v1)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=5)
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for size, name, aug in ((32, 'cifar (no blur, s=0.5)', cifar_augment(32)), (96, 'simclr (blur)', simclr_augment(96)),
                            (224, 'simclr (blur)', simclr_augment(224))):
        ips = throughput(aug, size, args.seconds)
        rows.append(dict(size=size, pipeline=name, images_per_s=round(ips, 1)))
        print(f"{size:>4} px  {name:<24} {ips:8.1f} images/s (two views each)", flush=True)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    dest = out / 'augment_throughput_cpu.json'
    dest.write_text(json.dumps(dict(torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.machine(),
                                    seconds=args.seconds, results=rows), indent=2))
    print(f"written to {dest}")


if __name__ == '__main__':
    main()
