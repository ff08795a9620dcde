"""Make the bundled demo images under imgs/ (deterministic; only the project's own generator and
the photos shipped with scikit-image are used, no third-party dataset files).

    python -m utils.make_demo_images [--out imgs]

Writes:
    synthetic_image.png, synthetic_trimap.png, synthetic_alpha.png
        a 400x300 synthetic composite over a crop of skimage's astronaut, its true alpha and a trimap made
        from it (unknown band = 0 < alpha < 1 dilated by 8 px).
    synthetic_mask.png
        a segmentation-style mask of that composite (its alpha thresholded at one half, then
        blurred by MASK_BLUR px: soft edges like a segmentation network's), for ``--mask``.
    chelsea_image.png, chelsea_trimap.png
        skimage's chelsea cat (451x300) with a hand-drawn-style trimap around the cat.
    background.png
        skimage's rocket photo cropped to 4:3 and resized to 640x480, to composite demo results onto.
"""
import argparse
import os
import sys

import numpy as np
from scipy import ndimage

from utils import synthetic
from utils.utils import BACKGROUND, FOREGROUND, UNKNOWN, composite, to_uint8, write_png

SYNTHETIC_SEED = 106  # a portrait bust with hair strands
SYNTHETIC_SIZE = (300, 400)
UNKNOWN_DILATION = 8
MASK_BLUR = 1.5  # sigma (px) of the synthetic mask's soft edge
# Outline of the cat in chelsea (x, y); the image is 451x300. The left and bottom edges of the
# photo are cat, the top-left corner and the right side are background.
CHELSEA_OUTLINE = [(38, -1), (37, 30), (36, 60), (35, 95), (26, 112), (12, 122), (-1, 128),
                   (-1, 300), (342, 300), (345, 280), (350, 240), (357, 200), (364, 160),
                   (367, 120), (370, 80), (380, 40), (392, 12), (400, -1)]


def trimap_from_alpha(alpha_u8, dilation=UNKNOWN_DILATION):
    """Trimap from an 8-bit alpha: unknown = 0 < alpha < 255 dilated by `dilation` px.

    Returns:
        uint8 (H, W) in {0, 128, 255}.
    """
    from skimage.morphology import disk
    unknown = (alpha_u8 > 0) & (alpha_u8 < 255)
    unknown = ndimage.binary_dilation(unknown, structure=disk(dilation))
    trimap = np.where(alpha_u8 == 255, FOREGROUND, BACKGROUND).astype(np.uint8)
    trimap[unknown] = UNKNOWN
    return trimap


def make_synthetic():
    """(image float32 (H, W, 3), alpha uint8 (H, W), trimap uint8 (H, W)) for the synthetic demo."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    h, w = SYNTHETIC_SIZE
    alpha = to_uint8(synthetic.make_alpha(rng, h, w))
    fg = synthetic.make_foreground(rng, h, w)
    bg = synthetic.make_background(rng, h, w, photos=[photo_u8('astronaut') / np.float32(255)])
    image = composite(alpha.astype(np.float32) / 255.0, fg, bg)  # exactly the stored alpha
    return image, alpha, trimap_from_alpha(alpha)


def synthetic_mask(alpha_u8):
    """Soft segmentation mask from an 8-bit alpha: alpha >= 128, Gaussian-blurred (MASK_BLUR).

    Returns:
        uint8 (H, W) in 0..255.
    """
    return to_uint8(ndimage.gaussian_filter((alpha_u8 >= 128).astype(np.float32), MASK_BLUR))


def chelsea_trimap(height=300, width=451):
    """Hand-drawn-style trimap for skimage's chelsea: a polygon around the cat with an unknown
    band of about 18 px along the outline, widened to ~40 px where the whiskers stick out
    (bottom right). The photo's own borders are not outline.

    Returns:
        uint8 (H, W) in {0, 128, 255}.
    """
    from skimage.draw import polygon
    xs, ys = zip(*CHELSEA_OUTLINE)
    cat = np.zeros((height, width), bool)
    rr, cc = polygon(np.array(ys), np.array(xs), shape=cat.shape)
    cat[rr, cc] = True
    inside = ndimage.distance_transform_edt(cat)    # distance to the nearest background pixel
    outside = ndimage.distance_transform_edt(~cat)  # distance to the nearest cat pixel
    yy, xx = np.mgrid[:height, :width]
    whiskers = np.exp(-(((yy - 270) / 45.0) ** 2 + ((xx - 360) / 40.0) ** 2))
    half_out = 9 + 3 * np.sin(yy / 23.0) + 28 * whiskers  # wobble like a hand-drawn brush
    half_in = 9 + 2 * np.cos(yy / 31.0)
    trimap = np.where(cat, FOREGROUND, BACKGROUND).astype(np.uint8)
    trimap[(cat & (inside <= half_in)) | (~cat & (outside <= half_out))] = UNKNOWN
    return trimap


def photo_u8(name, size=None):
    """A bundled skimage.data photo as uint8 (H, W, 3); with size (H, W), centre-cropped to
    that aspect ratio and resized to it."""
    import skimage.data
    from skimage.transform import resize
    x = np.asarray(getattr(skimage.data, name)())[..., :3]
    if size is not None:
        h = min(x.shape[0], int(round(x.shape[1] * size[0] / size[1])))
        w = min(x.shape[1], int(round(x.shape[0] * size[1] / size[0])))
        y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
        x = x[y0:y0 + h, x0:x0 + w]
        x = to_uint8(resize(x.astype(np.float32) / 255.0, size, order=3, anti_aliasing=True))
    return x


def main(argv=None):
    """Write the demo images; returns the exit status."""
    parser = argparse.ArgumentParser(prog='python -m utils.make_demo_images',
                                     description='Write the bundled demo images (deterministic).')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'imgs'), help='output folder (default: the repository imgs/)')
    args = parser.parse_args(argv)
    image, alpha, trimap = make_synthetic()
    write_png(os.path.join(args.out, 'synthetic_image.png'), image)
    write_png(os.path.join(args.out, 'synthetic_alpha.png'), alpha)
    write_png(os.path.join(args.out, 'synthetic_trimap.png'), trimap)
    write_png(os.path.join(args.out, 'synthetic_mask.png'), synthetic_mask(alpha))
    write_png(os.path.join(args.out, 'chelsea_image.png'), photo_u8('chelsea'))
    write_png(os.path.join(args.out, 'chelsea_trimap.png'), chelsea_trimap())
    write_png(os.path.join(args.out, 'background.png'), photo_u8('rocket', (480, 640)))
    print(f'wrote 7 demo images to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
