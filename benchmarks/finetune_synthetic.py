"""Fine-tuning on the synthetic benchmark at the paper's learning-rate rule, measured in one run on this machine.

1. A short SimCLR pretraining (ResNet-18 width 0.25, CIFAR stem, 8 epochs on the 5,000 training images), unless
   --checkpoint names one.
2. `finetune` of that encoder on 10% and 1% of the training labels at batch 256, and on 10% at batch 4096 (one
   step per epoch), scored on the 1,000 test images. `--base-lr` sets the rule lr = base x B/256 (default: the
   library's, 0.05 as in SimCLR B.5; 0.2 reproduces the rate used before that fix).

    python benchmarks/finetune_synthetic.py [--epochs 8] [--checkpoint PATH] [--base-lr 0.2]
"""
import argparse, json, tempfile
from pathlib import Path

import torch

from segaug_simclr.data import get_dataset
from segaug_simclr.evaluate import finetune, load_encoder
from segaug_simclr.train import PretrainConfig, pretrain


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=8)
    ap.add_argument('--checkpoint', default=None)
    ap.add_argument('--base-lr', type=float, default=None)
    ap.add_argument('--out', default='outputs/benchmarks')
    args = ap.parse_args()
    ckpt = args.checkpoint
    if ckpt is None:
        cfg = PretrainConfig(dataset='synthetic', depth=18, width=0.25, epochs=args.epochs, batch_size=256, lr=1.0,
                             temperature=0.2, crop_min=0.2, warmup_epochs=1, amp='bf16', channels_last=True,
                             device='cpu', out=tempfile.mkdtemp() + '/run', progress=False)
        ckpt = pretrain(cfg)['checkpoint']
    tr, te = get_dataset('synthetic', split='train'), get_dataset('synthetic', split='test')
    kw = {} if args.base_lr is None else dict(base_lr=args.base_lr)
    rows = []
    for fraction, batch in ((0.1, 256), (0.01, 256), (0.1, 4096)):
        r = finetune(load_encoder(ckpt), tr, te, fraction, batch_size=batch, image_size=32, **kw)
        row = dict(fraction=fraction, batch_size=batch, lr=r['hparams'].get('lr', r['hparams']['base_lr'] * batch / 256),
                   epochs=r['hparams']['epochs'], n_train=r['n_train'], time_s=round(r['time_s'], 1), **r['metrics'])
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    tag = 'default' if args.base_lr is None else f'base{args.base_lr:g}'
    dest = out / f'finetune_synthetic_{tag}.json'
    dest.write_text(json.dumps(dict(torch=torch.__version__, threads=torch.get_num_threads(), checkpoint=str(ckpt),
                                    rows=rows), indent=2))
    print(f"written to {dest}")


if __name__ == '__main__':
    main()
