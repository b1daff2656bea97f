"""The data path: per-image augmentation (torchvision, one image at a time) against batched augmentation on the device.

1. Two-view throughput (images/s, each image giving two views), standard and SegAug, at 32 px (CIFAR pipeline,
   32 px sources) and 224 px (SimCLR pipeline with blur, 256 px sources): the per-image path in one process (a
   DataLoader without workers), the batched path (`segaug_simclr.batch_augment`) on the CPU, and on the GPU when
   there is one. Rounds are interleaved and the median is reported, with the batched/per-image ratio of the same run.
2. End to end: the real training step (`train_one_epoch`: ResNet-18 with the CIFAR stem, batch 512, bf16 autocast,
   channels-last, LARS, online probe) on 32 px synthetic images, fed by each path; images/s, seconds per CIFAR-10
   epoch (50,000 images, from the measured rate), the share of the time spent waiting for the next batch (timed
   around the loader, after synchronising the device), and the model FLOP utilisation where the peak is known.

    python benchmarks/datapath.py [--device auto] [--rounds 3] [--out outputs/benchmarks]
    python benchmarks/datapath.py --quick --out /tmp/x      # seconds: what the test suite runs

Writes <out>/datapath_<device type>.json.
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from segaug_simclr.augment import TwoViews, cifar_augment, simclr_augment
from segaug_simclr.segaug import BatchSegAug, SegAugDataset, SegAugViews
from segaug_simclr.batch_augment import BatchViews
from segaug_simclr.core import get_device
from segaug_simclr.data import synthetic_shapes
from segaug_simclr.gpu_check import TimedLoader, peak_bf16_tflops, train_flops_per_image
from segaug_simclr.models import simclr_model
from segaug_simclr.optim import make_optimizer, warmup_cosine_scheduler
from segaug_simclr.train import PretrainConfig, TrainState, device_loader, pretrain_loader, train_one_epoch

CIFAR10_IMAGES = 50_000


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def standard_pipeline(size):
    return cifar_augment(size) if size < 96 else simclr_augment(size)


def per_image_rate(ds, seconds, batch=64):
    "Two-view images/s of the per-image path: a DataLoader without workers over `ds` (items ((v1, v2), label))."
    loader = DataLoader(ds, batch_size=min(batch, len(ds)), shuffle=True, num_workers=0, drop_last=True)
    next(iter(loader))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for (v1, _), _ in loader:
            n += len(v1)
            if time.perf_counter() - t0 >= seconds: break
    return n / (time.perf_counter() - t0)


def batched_rate(fn, images, masks, fallback, batch, seconds, device):
    "Two-view images/s of the batched path `fn` on batches of `batch` images drawn from `images` held on `device`."
    g = torch.Generator().manual_seed(0)
    images, masks = images.to(device), None if masks is None else masks.to(device, torch.uint8)
    def one():
        idx = torch.randint(0, len(images), (batch,), generator=g)
        di = idx.to(device)
        return fn(images[di], None if masks is None else masks[di], g, fallback[idx])
    one(); sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one(); sync(device); n += batch
    return n / (time.perf_counter() - t0)


def throughput(args, devices):
    out = {}
    for size, src in ((32, 32), (224, 256)) if not args.quick else ((32, 32), (64, 72)):
        raw = synthetic_shapes(args.images_32 if size == 32 else args.images_224, size=src, seed=0)
        std = standard_pipeline(size)
        per_image = {'standard': synthetic_shapes(len(raw), size=src, seed=0), 'segaug': None}
        per_image['standard'].transform = TwoViews(std)
        seg_views = SegAugViews(size, standard=std)
        per_image['segaug'] = SegAugDataset(raw, raw.masks, seg_views)
        batched = {'standard': lambda x, m, g, fb, v=BatchViews(std): v(x, g),
                   'segaug': lambda x, m, g, fb, v=BatchSegAug(seg_views): v(x, m, g, fb)}
        fallback = per_image['segaug'].fallback  # decided once per dataset, as in training
        runs = {}
        for r in range(args.rounds):
            for kind in ('standard', 'segaug'):
                runs.setdefault(f'{kind}/per_image_cpu', []).append(per_image_rate(per_image[kind], args.seconds))
                for dev in devices:
                    b = args.batch_32 if size == 32 else (args.batch_224 if dev.type == 'cpu' else args.batch_224_gpu)
                    runs.setdefault(f'{kind}/batched_{dev.type}', []).append(
                        batched_rate(batched[kind], raw.images, raw.masks, fallback, b, args.seconds, dev))
            print(f"{size} px round {r + 1}: " + ', '.join(f'{k} {v[-1]:.0f}' for k, v in runs.items()), flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        res = {k: round(v, 1) for k, v in med.items()}
        for kind in ('standard', 'segaug'):
            for dev in devices:
                res[f'{kind}/ratio_batched_{dev.type}_to_per_image'] = round(med[f'{kind}/batched_{dev.type}'] / med[f'{kind}/per_image_cpu'], 2)
        res['fallback_share'] = round(per_image['segaug'].fallback.float().mean().item(), 3)
        res['rounds'] = {k: [round(x, 1) for x in v] for k, v in runs.items()}
        out[f'{size}px'] = res
    return out


def end_to_end(args, device):
    cfg = PretrainConfig(depth=18, width=args.width, cifar_stem=True, batch_size=args.e2e_batch, amp='bf16',
                         channels_last=True, progress=False, log_every=0, epochs=1, seed=0, workers=args.workers)
    n = args.e2e_batch * args.e2e_batches
    raw = synthetic_shapes(n, size=32, seed=0)
    std = cifar_augment(32)
    standard = synthetic_shapes(n, size=32, seed=0); standard.transform = TwoViews(std)
    segaug = SegAugDataset(raw, raw.masks, SegAugViews(32, standard=std))
    flops = train_flops_per_image(18, args.width, True, 32)  # the library's counters: segaug-simclr gpu-check uses the same
    peak = peak_bf16_tflops(torch.cuda.get_device_name(device)) if device.type == 'cuda' else None
    rows = []
    for kind, ds in (('standard', standard), ('segaug', segaug)):
        for path in ('per_image', 'batched'):
            if path == 'per_image' and device.type == 'cuda': cfg.workers = args.workers or min(8, os.cpu_count())
            torch.manual_seed(0)
            model = simclr_model(18, args.width, True).to(device).to(memory_format=torch.channels_last)
            probe = torch.nn.Linear(model.encoder.out_dim, 10).to(device)
            opt = make_optimizer('lars', model, 1.0)
            sched = warmup_cosine_scheduler(opt, 1000, 0)
            scaler = torch.amp.GradScaler(device.type, enabled=False)
            state = TrainState(model, opt, sched, scaler, probe, torch.optim.Adam(probe.parameters()))
            gen = torch.Generator().manual_seed(0)
            make = device_loader if path == 'batched' else pretrain_loader
            loader = make(ds, cfg, gen, device)
            stats, times = [], []
            for epoch in range(1 + args.e2e_epochs):  # the first epoch warms up (allocator, kernels, workers)
                loader.sampler.set_epoch(epoch)
                timed = TimedLoader(loader, device)
                state.epoch = epoch
                s = train_one_epoch(state, timed, cfg, device)
                sync(device)
                if epoch: stats.append(s); times.append(timed.wait_s / s['time_s'])
            ips = statistics.median(s['images_per_s'] for s in stats)
            row = dict(augment=kind, path=path, images_per_s=round(ips, 1),
                       cifar10_epoch_s=round(CIFAR10_IMAGES / ips, 2), data_wait_share=round(statistics.median(times), 3),
                       achieved_tflops=round(ips * flops / 1e12, 3))
            if peak: row['mfu'] = round(ips * flops / 1e12 / peak, 3)
            rows.append(row)
            print(f"end to end {kind} {path}: {ips:.0f} img/s, CIFAR-10 epoch {row['cifar10_epoch_s']} s, "
                  f"data wait {row['data_wait_share']:.1%}", flush=True)
            cfg.workers = args.workers
    return dict(model='resnet18 cifar stem', width=args.width, batch=args.e2e_batch, amp='bf16', channels_last=True,
                batches_per_epoch=args.e2e_batches, timed_epochs=args.e2e_epochs, train_flops_per_image=flops,
                cifar10_epoch_pflop=round(flops * CIFAR10_IMAGES / 1e15, 3), peak_bf16_tflops=peak, results=rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='auto', help="the device of the batched path and the training step")
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seconds', type=float, default=4, help='per measurement of the augmentation throughput')
    ap.add_argument('--images-32', type=int, default=2048)
    ap.add_argument('--images-224', type=int, default=96)
    ap.add_argument('--batch-32', type=int, default=512)
    ap.add_argument('--batch-224', type=int, default=64, help='batched path at 224 px on the CPU')
    ap.add_argument('--batch-224-gpu', type=int, default=512)
    ap.add_argument('--width', type=float, default=1.0)
    ap.add_argument('--e2e-batch', type=int, default=512)
    ap.add_argument('--e2e-batches', type=int, default=2, help='batches per epoch of the end-to-end measurement')
    ap.add_argument('--e2e-epochs', type=int, default=1, help='timed epochs after the warm-up epoch')
    ap.add_argument('--workers', type=int, default=0, help='DataLoader workers of the per-image path (GPU default: 8)')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s choice)')
    ap.add_argument('--quick', action='store_true', help='tiny counts (seconds): what the test suite runs')
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.images_32, args.images_224 = 1, 0.2, 64, 16
        args.batch_32, args.batch_224, args.batch_224_gpu = 32, 8, 8
        args.width, args.e2e_batch, args.e2e_batches, args.e2e_epochs = 0.125, 16, 2, 1
    if args.threads: torch.set_num_threads(args.threads)
    device = get_device(args.device)
    devices = [torch.device('cpu')] + ([device] if device.type != 'cpu' else [])
    result = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor(),
                  torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(), quick=args.quick,
                  settings={k: v for k, v in vars(args).items() if k not in ('out', 'quick')},
                  augmentation=throughput(args, devices), end_to_end=end_to_end(args, device))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    dest = out / f'datapath_{device.type}.json'
    dest.write_text(json.dumps(result, indent=2))
    print(f"written to {dest}")
    return result


if __name__ == '__main__':
    main()
