"""The per-image Gaussian blur two ways, on one thread: `separable_gaussian_blur` (two products with banded blur
matrices, reflect padding folded in) against two 1-d grouped convolutions after reflect padding (the batched path's
`gaussian_blur`, on one image), on uint8 images of each size with the SimCLR kernel (10% of the side). Reports microseconds per image (best of `--rounds`), the
convolution/matrix ratio measured in the same run, and the largest difference of the uint8 outputs.

    python benchmarks/blur.py [--sizes 32 96 224 256] [--rounds 5] [--out outputs/benchmarks]

Writes <out>/blur_cpu.json.
"""
import argparse, json, time
from pathlib import Path

import torch

from segaug_simclr.augment import blur_kernel_size, separable_gaussian_blur
from segaug_simclr.batch_augment import gaussian_blur


def conv_blur(img: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    "The batched path's blur (`batch_augment.gaussian_blur`: two 1-d grouped convolutions, reflect padding) on one uint8 image."
    y = gaussian_blur(img.float()[None], k, torch.tensor([sigma]))
    return y[0].round_().clamp_(0, 255).to(torch.uint8)


def best_of(fn, repeats: int, rounds: int) -> float:
    "Seconds per call: the best round's mean over `repeats` calls."
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats): fn()
        times.append((time.perf_counter() - t0) / repeats)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', type=int, nargs='+', default=[32, 96, 224, 256])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--sigma', type=float, default=1.3)
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for size in args.sizes:
        img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
        k, repeats = blur_kernel_size(size), 200 if size <= 96 else 30
        diff = (separable_gaussian_blur(img, k, args.sigma).int() - conv_blur(img, k, args.sigma).int()).abs().max().item()
        tm = best_of(lambda: separable_gaussian_blur(img, k, args.sigma), repeats, args.rounds)
        tc = best_of(lambda: conv_blur(img, k, args.sigma), repeats, args.rounds)
        rows.append(dict(size=size, kernel=k, matrix_us=round(tm * 1e6, 1), conv_us=round(tc * 1e6, 1),
                         conv_over_matrix=round(tc / tm, 2), max_abs_diff=diff))
        print(f"{size} px (k={k}): matrix {tm * 1e6:.0f} us, 1-d convolutions {tc * 1e6:.0f} us, "
              f"conv/matrix {tc / tm:.2f}, max |diff| {diff}")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'blur_cpu.json').write_text(json.dumps(dict(torch=torch.__version__, threads=1, sigma=args.sigma, rows=rows), indent=2))
    print(f"written to {out / 'blur_cpu.json'}")


if __name__ == '__main__':
    main()
