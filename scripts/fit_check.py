"""The fitting check at full width: can the paper's network memorise a few fixed crops?

Trains stage 1 from VGG16's weights on ``--crops`` fixed crops of training photographs (their
given trimaps, no augmentation) and scores the crops every ``--every`` iterations beside
closed-form matting on the same crops and trimaps (``utils.training.fitting``). Writes into --out:
fit_check.json (the curve), fit_check.png (SAD and Gradient error as fractions of closed-form's)
and mattes.png (rows of crops: image | trimap | closed-form | DIM | ground truth).
The check passes when both fractions fall below --target (0.3).

Usage: python -m scripts.fit_check [--precision bf16] [--iterations 1500] [--size 160]
           [--names GT04 GT05 GT13 GT24] [--out logs/fit_check]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import nnet.compat  # noqa: F401  (NumPy 2: before chainer)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnet import cpu  # noqa: E402
from nnet.model import DIM, VGG_INPUT_SCALE  # noqa: E402
from utils.images import write_png  # noqa: E402
from utils.loader import make_dataset  # noqa: E402
from utils.training import fitting  # noqa: E402
from utils.training.extensions import image_grid  # noqa: E402
from utils.training.vgg import read_vgg16_params  # noqa: E402


def plot(history, closed_form, target, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    its = [h['iteration'] for h in history]
    for key in ('SAD', 'Grad'):
        ax.plot(its, [h[key] / closed_form[key] for h in history], marker='o', label=key)
    ax.axhline(target, color='gray', linestyle='--', label=f'target {target}x')
    ax.axhline(1.0, color='black', linewidth=0.8, label='closed-form')
    ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('DIM / closed-form on the same crops')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default=str(ROOT.parent / 'shared' / 'data' / 'alphamatting'),
                   help='seed-layout dataset of training photographs')
    p.add_argument('--names', nargs='+', default=['GT04', 'GT05', 'GT13', 'GT24'])
    p.add_argument('--trimap_set', default='trimap1')
    p.add_argument('--crops', type=int, default=8)
    p.add_argument('--size', type=int, default=160, help='crop side (pixels, no rescaling)')
    p.add_argument('--iterations', type=int, default=1500)
    p.add_argument('--every', type=int, default=100, help='iterations between scorings')
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--lr', type=float, default=1e-4)
    p.add_argument('--precision', choices=['fp32', 'bf16'], default='bf16')
    p.add_argument('--target', type=float, default=0.3)
    p.add_argument('--out', default='logs/fit_check')
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    raw = make_dataset(args.root, trimap_sets=[args.trimap_set], names=args.names)
    crops = fitting.fixed_crops(raw, args.crops, args.size, both_known=True)
    closed = fitting.closed_form_crops(crops)
    closed_form = fitting.score(closed, crops)
    np.random.seed(0)
    model = DIM(1.0, input_scale=VGG_INPUT_SCALE)
    model.encoder_decoder.load_vgg16(read_vgg16_params('hed'))
    history, start = [], time.time()

    def on_step(iteration, loss):
        if iteration % args.every and iteration != args.iterations:
            return
        scores = fitting.score(fitting.predict_crops(model, crops), crops)
        history.append({'iteration': iteration, 'loss': loss, **scores,
                        'seconds': round(time.time() - start, 1)})
        print(f'{iteration:6d}  loss {loss:.4f}  SAD {scores["SAD"]:.3f} '
              f'({scores["SAD"] / closed_form["SAD"]:.2f}x)  Grad {scores["Grad"]:.3f} '
              f'({scores["Grad"] / closed_form["Grad"]:.2f}x)  {time.time() - start:.0f} s',
              flush=True)
        record = {'options': vars(args), 'closed_form': closed_form, 'history': history}
        (out / 'fit_check.json').write_text(json.dumps(record, indent=1) + '\n')
        plot(history, closed_form, args.target, out / 'fit_check.png')

    with cpu.precision(args.precision):
        fitting.train(model, crops, args.iterations, args.batch_size, args.lr, on_step)
    mattes = fitting.predict_crops(model, crops)
    rows = [[c[0].transpose(1, 2, 0), np.repeat(c[1][0][:, :, None], 3, 2),
             np.repeat(cf[:, :, None] / 255.0, 3, 2), np.repeat(m[:, :, None] / 255.0, 3, 2),
             np.repeat(c[2][0][:, :, None], 3, 2)] for c, cf, m in zip(crops, closed, mattes)]
    write_png(str(out / 'mattes.png'), image_grid(rows))
    final = history[-1]
    ratios = {k: final[k] / closed_form[k] for k in ('SAD', 'Grad')}
    passed = all(r < args.target for r in ratios.values())
    print(f'closed-form SAD {closed_form["SAD"]:.3f} Grad {closed_form["Grad"]:.3f}; DIM '
          f'{final["SAD"]:.3f} / {final["Grad"]:.3f} = {ratios["SAD"]:.2f}x / '
          f'{ratios["Grad"]:.2f}x: {"passed" if passed else "not passed"} (target '
          f'{args.target}x)')
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
