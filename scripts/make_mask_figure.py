"""The pictures of the demo in docs/demo.md: ``--mask`` (mask -> generated trimap -> matte -> composite)
and, with ``--demo``, the bundled inputs (image | trimap | matte | composite).

    python -m scripts.make_mask_figure [--ckpt CKPT (default: the shipped one)] [--out imgs/readme/mask_demo.png]
    python -m scripts.make_mask_figure --demo [--out imgs/readme/demo_grid.png]

Runs the demo's own pipeline (``utils.inference.pipeline``, the Chainer backend) on the bundled
imgs/synthetic_image.png with imgs/synthetic_mask.png (both from ``scripts.make_demo_images``;
nothing from outside the repository), into a temporary folder, and lays the files it wrote out
in one row: image | mask | trimap from the mask | matte | composite over imgs/background.png,
then the true alpha (imgs/synthetic_alpha.png) for comparison. ``--demo``: one row per bundled
pair (the astronaut, whose trimap is drawn around her hair; the synthetic composite, with its
true alpha), run the same way with their trimaps.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

from options import DEFAULT_CHECKPOINT
from utils.data.trimap import default_band
from utils.images import atomic_write, read_image
from utils.inference import pipeline
from utils.inference.backends import load_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMGS = os.path.join(ROOT, 'imgs')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m scripts.make_mask_figure',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--ckpt', default=DEFAULT_CHECKPOINT)
    parser.add_argument('--out', help='default: imgs/readme/mask_demo.png, or '
                                      'imgs/readme/demo_grid.png with --demo')
    parser.add_argument('--demo', action='store_true', help='the bundled inputs, with trimaps')
    args = parser.parse_args(argv)
    name = 'demo_grid.png' if args.demo else 'mask_demo.png'
    args.out = args.out or os.path.join(IMGS, 'readme', name)
    return demo_figure(args) if args.demo else mask_figure(args)


def demo_figure(args):
    import skimage.io
    backgrounds = pipeline.read_backgrounds([os.path.join(IMGS, 'background.png')])
    backend = load_backend('chainer', args.ckpt, args.ckpt)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem in ('astronaut', 'synthetic'):
            image_path = os.path.join(IMGS, f'{stem}_image.png')
            trimap_path = os.path.join(IMGS, f'{stem}_trimap.png')
            outputs = pipeline.output_paths(tmp, image_path, backgrounds)
            pipeline.matte_one(backend, image_path, outputs, backgrounds, trimap_path=trimap_path)
            row = [read_image(image_path), skimage.io.imread(trimap_path)] + [
                skimage.io.imread(outputs[k]) for k in ('alpha', *backgrounds)]
            truth = os.path.join(IMGS, f'{stem}_alpha.png')
            rows.append(row + ([skimage.io.imread(truth)] if os.path.exists(truth) else []))
    titles = ['image', 'trimap', 'matte (shipped model)', 'composite', 'true alpha']
    return show_rows(rows, titles, args.out)


def mask_figure(args):
    import skimage.io

    image_path = os.path.join(IMGS, 'synthetic_image.png')
    mask_path = os.path.join(IMGS, 'synthetic_mask.png')
    backgrounds = pipeline.read_backgrounds([os.path.join(IMGS, 'background.png')])
    backend = load_backend('chainer', args.ckpt, args.ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = pipeline.output_paths(tmp, image_path, backgrounds, with_trimap=True)
        pipeline.matte_one(backend, image_path, outputs, backgrounds, mask_path=mask_path)
        shown = [read_image(image_path), skimage.io.imread(mask_path)] + [
            skimage.io.imread(outputs[k]) for k in ('trimap', 'alpha', *backgrounds)]
    shown.append(skimage.io.imread(os.path.join(IMGS, 'synthetic_alpha.png')))
    band = default_band(shown[0].shape)
    titles = ['image', 'mask (--mask)', f'trimap from it ({band} px band)', 'matte (shipped model)',
              'composite', 'true alpha']
    return show_rows([shown], titles, args.out)


def show_rows(rows, titles, out):
    """Rows of pictures (uint8 gray or RGB, or float RGB in [0, 1]) under column ``titles``,
    written to ``out`` (PNG, atomic); a shorter row leaves its last cells empty."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 2.3 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis('off')
                continue
            gray = np.asarray(row[j]).ndim == 2
            ax.imshow(row[j], cmap='gray' if gray else None, vmin=0, vmax=255 if gray else None,
                      interpolation='nearest')
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    finally:
        plt.close(fig)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
