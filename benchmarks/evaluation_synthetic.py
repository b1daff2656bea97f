"""Evaluation protocols on the synthetic benchmark, measured in one run on this machine.

1. A short SimCLR pretraining (ResNet-18 width 0.25, CIFAR stem, 8 epochs on the 5,000 training images), unless
   --checkpoint names one.
2. Pretrained against randomly initialised encoder under linear evaluation (cached features), kNN (k=50) and
   transfer (L-BFGS logistic regression, l2 chosen on a validation split).
3. Linear evaluation with cached features against features recomputed every epoch (crop + flip), on the same data
   and the same number of epochs: wall time and accuracy of each, and their ratio.

    python benchmarks/evaluation_synthetic.py [--epochs 8] [--linear-epochs 30] [--checkpoint PATH]
"""
import argparse, json, tempfile, time
from pathlib import Path

import torch

from segaug_simclr.data import get_dataset
from segaug_simclr.evaluate import knn_eval, linear_eval, load_encoder, transfer_eval
from segaug_simclr.train import PretrainConfig, pretrain


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=8)
    ap.add_argument('--linear-epochs', type=int, default=30)
    ap.add_argument('--checkpoint', default=None)
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    ckpt = args.checkpoint
    t0 = time.perf_counter()
    if ckpt is None:
        cfg = PretrainConfig(dataset='synthetic', depth=18, width=0.25, epochs=args.epochs, batch_size=256, lr=1.0,
                             temperature=0.2, crop_min=0.2, warmup_epochs=1, amp='bf16', channels_last=True,
                             device='cpu', out=tempfile.mkdtemp() + '/run', progress=False)
        ckpt = pretrain(cfg)['checkpoint']
    pretrain_s = time.perf_counter() - t0
    tr = get_dataset('synthetic', split='train', num_images=2000, seed=1)
    te = get_dataset('synthetic', split='test')
    grid = (1e-3, 1e-2, 1e-1, 1, 10)
    floors = {}
    for name, spec in (('random', 'random:depth=18,width=0.25,cifar_stem=1'), ('pretrained', ckpt)):
        enc = load_encoder(spec)
        floors[name] = dict(linear_cached=linear_eval(enc, tr, te, 'cached', epochs=args.linear_epochs)['metrics'],
                            knn=knn_eval(enc, tr, te, k=50)['metrics'],
                            transfer_lbfgs=transfer_eval(enc, tr, te, image_size=32, grid=grid, max_iter=200)['metrics'])
        print(name, json.dumps(floors[name]), flush=True)
    enc = load_encoder(ckpt)
    protocols = {}
    for protocol in ('cached', 'augmented'):
        r = linear_eval(enc, tr, te, protocol, epochs=args.linear_epochs)
        protocols[r['protocol']] = dict(time_s=round(r['time_s'], 2), **r['metrics'])
        print(r['protocol'], protocols[r['protocol']], flush=True)
    ratio = protocols['linear-augmented']['time_s'] / protocols['linear-cached']['time_s']
    print(f"recomputing features every epoch took {ratio:.1f}x the time of cached features "
          f"({args.linear_epochs} epochs, {len(tr)} training images)")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    dest = out / 'evaluation_synthetic.json'
    dest.write_text(json.dumps(dict(torch=torch.__version__, threads=torch.get_num_threads(), pretrain_epochs=args.epochs,
                                    pretrain_s=round(pretrain_s, 1), linear_epochs=args.linear_epochs,
                                    n_train=len(tr), n_test=len(te), random_vs_pretrained=floors,
                                    linear_protocols=protocols, augmented_over_cached_time=round(ratio, 2)), indent=2))
    print(f"written to {dest}")


if __name__ == '__main__':
    main()
