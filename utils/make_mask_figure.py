"""The README's picture of the demo's ``--mask``: mask -> generated trimap -> matte -> composite.

    python -m utils.make_mask_figure [--ckpt ckpt/dim_w025.npz] [--out imgs/readme/mask_demo.png]

Runs the demo's own pipeline (``utils.pipeline``, the Chainer backend) on the bundled
imgs/synthetic_image.png with imgs/synthetic_mask.png (both from ``utils.make_demo_images``;
nothing from outside the repository), into a temporary folder, and lays the files it wrote out
in one row: image | mask | trimap from the mask | matte | composite over imgs/background.png,
then the true alpha (imgs/synthetic_alpha.png) for comparison.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

from utils import pipeline
from utils.backends import load_backend
from utils.trimap import default_band
from utils.utils import atomic_write, read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMGS = os.path.join(ROOT, 'imgs')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m utils.make_mask_figure',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--ckpt', default=os.path.join(ROOT, 'ckpt', 'dim_w025.npz'))
    parser.add_argument('--out', default=os.path.join(IMGS, 'readme', 'mask_demo.png'))
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
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
    fig, axes = plt.subplots(1, len(shown), figsize=(2.4 * len(shown), 2.2))
    for ax, picture, title in zip(axes, shown, titles):
        gray = np.asarray(picture).ndim == 2
        ax.imshow(picture, cmap='gray' if gray else None, vmin=0, vmax=255 if gray else None,
                  interpolation='nearest')
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    try:
        atomic_write(args.out, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    finally:
        plt.close(fig)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
