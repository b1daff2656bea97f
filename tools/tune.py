"""Tune a preset on a validation split, never on the test split.

    .venv/bin/python tools/tune.py --data-root /tmp/cifar10 --name b256-c0.2 -- --batch-size 256 --crop-min 0.2
    .venv/bin/python tools/tune.py --dataset synthetic --name walk -- --num-images 4000 --epochs 12

Pretrains standard SimCLR with the given pretraining flags (any flag of `segaug-simclr pretrain`, after `--`), then
scores the encoder and a randomly initialised one of the same architecture by linear evaluation (cached features) on a
validation split carved from the labelled *training* images (`--val-share` of each class; the classifier trains on
the rest). The test split is never read. One JSON line per run is appended to `--log` with the settings, the two
validation accuracies, their difference and the wall times, so that a preset's choice can be traced to the runs
behind it.
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

from segaug_simclr.core import environment
from segaug_simclr.data import get_dataset
from segaug_simclr.evaluate import linear_eval, load_encoder
from segaug_simclr.pretrain_cli import parse_config
from segaug_simclr.train import pretrain


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, flags = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--name', required=True); p.add_argument('--dataset', default='imagefolder')
    p.add_argument('--data-root', default='data'); p.add_argument('--labelled', type=int, default=10000)
    p.add_argument('--val-share', type=float, default=0.2); p.add_argument('--linear-epochs', type=int, default=30)
    p.add_argument('--log', default='outputs/benchmarks/tuning.jsonl')
    a = p.parse_args(ours)
    out = Path(tempfile.mkdtemp()) / 'run'
    cfg = parse_config(['--dataset', a.dataset, '--data-root', a.data_root, '--depth', '18', '--width', '0.25', '--amp', 'bf16',
                        '--channels-last', '--no-progress', '--device', 'cpu', *flags, '--out', str(out)])
    t0 = time.perf_counter()
    pretrain(cfg)
    pretrain_s = time.perf_counter() - t0
    labelled = get_dataset(a.dataset, a.data_root, 'train', num_images=a.labelled, seed=1234)  # labelled training images only
    scores = {}
    for name, spec in (('pretrained', out / 'checkpoint.pt'), ('random', f'random:depth=18,width={cfg.width},cifar_stem=1,seed=0')):
        rec = linear_eval(load_encoder(spec), labelled, labelled, epochs=a.linear_epochs, image_size=cfg.image_size,
                          val_per_class=a.val_share, device='cpu')
        scores[name] = rec['history'][-1]['val_top1']  # validation top-1 after the last epoch; rec['metrics'] is not used
    line = dict(name=a.name, dataset=a.dataset, flags=flags, images=cfg.num_images, epochs=cfg.epochs, batch_size=cfg.batch_size,
                val_top1=scores['pretrained'], random_val_top1=scores['random'], gain_points=100 * (scores['pretrained'] - scores['random']),
                pretrain_s=round(pretrain_s, 1), total_s=round(time.perf_counter() - t0, 1), cpu=environment()['cpu'])
    Path(a.log).parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, 'a') as f: f.write(json.dumps(line) + '\n')
    print(json.dumps(line))
    return 0


if __name__ == '__main__': sys.exit(main())
