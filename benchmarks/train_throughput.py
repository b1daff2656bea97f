"""CPU (or GPU) pretraining throughput of the real training loop, in images/s.

ResNet-18 with the CIFAR stem at widths 1 and 0.25, with and without channels_last and bf16 autocast.
Views are made once (random tensors), so the figure is the training step alone: forward of both views,
NT-Xent, backward, LARS step, online probe. Variants run interleaved for several rounds and the median is
reported, with ratios to the fp32 / contiguous baseline measured in the same run (these machines are noisy).

    python benchmarks/train_throughput.py [--rounds 3] [--batches 4] [--device cpu] [--out outputs/benchmarks]
"""
import argparse, json, platform, statistics
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from segaug_simclr.core import get_device
from segaug_simclr.models import simclr_model
from segaug_simclr.optim import make_optimizer, warmup_cosine_scheduler
from segaug_simclr.train import PretrainConfig, TrainState, train_one_epoch


class FixedViews(Dataset):
    "Pre-made two-view batches: the loop is measured without augmentation cost."
    classes = [str(i) for i in range(10)]
    def __init__(self, n, size=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, size, size, generator=g)
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return (self.x[i], self.x[i].flip(-1)), i % 10


def measure(width, channels_last, amp, batch, batches, device):
    cfg = PretrainConfig(depth=18, width=width, cifar_stem=True, batch_size=batch, channels_last=channels_last,
                         amp=amp, progress=False, log_every=0, epochs=1)
    torch.manual_seed(0)
    model = simclr_model(18, width, True).to(device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    probe = torch.nn.Linear(model.encoder.out_dim, 10).to(device)
    opt = make_optimizer('lars', model, 1.0)
    sched = warmup_cosine_scheduler(opt, 1000, 0)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    popt = torch.optim.Adam(probe.parameters())
    loader = DataLoader(FixedViews(batch * (batches + 1)), batch_size=batch, drop_last=True)
    warm = DataLoader(FixedViews(batch), batch_size=batch)
    state = TrainState(model, opt, sched, scaler, probe, popt)
    train_one_epoch(state, warm, cfg, device)  # warm-up batch
    if device.type == 'cuda': torch.cuda.synchronize()
    stats = train_one_epoch(state, loader, cfg, device)
    return stats['images_per_s']


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--batches', type=int, default=4)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    device = get_device(args.device)
    variants = [(w, cl, amp) for w in (1.0, 0.25) for cl in (False, True) for amp in ('none', 'bf16')]
    batch = {1.0: 64, 0.25: 128}
    runs = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            runs[v].append(measure(v[0], v[1], v[2], batch[v[0]], args.batches, device))
            print(f"round {r + 1} width {v[0]} channels_last {v[1]} amp {v[2]}: {runs[v][-1]:.1f} img/s", flush=True)
    rows = []
    for v in variants:
        med = statistics.median(runs[v])
        base = statistics.median(runs[(v[0], False, 'none')])
        rows.append(dict(width=v[0], channels_last=v[1], amp=v[2], batch=batch[v[0]], images_per_s=round(med, 1),
                         ratio_to_fp32_contiguous=round(med / base, 3), all_rounds=[round(x, 1) for x in runs[v]]))
    print(f"\nResNet-18 CIFAR stem, 32x32, two views per image, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} interleaved rounds")
    print(f"{'width':>6} {'chan_last':>9} {'amp':>5} {'batch':>5} {'img/s':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['width']:>6} {str(r['channels_last']):>9} {r['amp']:>5} {r['batch']:>5} {r['images_per_s']:>8} "
              f"{r['ratio_to_fp32_contiguous']:>6}")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    dest = out / f'train_throughput_{device.type}.json'
    dest.write_text(json.dumps(dict(device=str(device), torch=torch.__version__, threads=torch.get_num_threads(),
                                    machine=platform.machine(), processor=platform.processor(),
                                    rounds=args.rounds, batches=args.batches, results=rows), indent=2))
    print(f"written to {dest}")


if __name__ == '__main__':
    main()
