"""Make the bundled demo images under imgs/ (deterministic; only the project's own generator and
the photos shipped with scikit-image are used, no third-party dataset files).

    python -m scripts.make_demo_images [--out imgs]

Writes:
    synthetic_image.png, synthetic_trimap.png, synthetic_alpha.png
        a 400x300 synthetic composite over a crop of skimage's astronaut, its true alpha and a trimap made
        from it (unknown band = 0 < alpha < 1 dilated by 8 px).
    synthetic_mask.png
        a segmentation-style mask of that composite (its alpha thresholded at one half, then
        blurred by MASK_BLUR px: soft edges like a segmentation network's), for ``--mask``.
    astronaut_image.png, astronaut_trimap.png
        head and shoulders of skimage's astronaut (330x330) with a hand-drawn-style trimap: a
        wide unknown band around the hair (where fine strands meet the backdrop), a narrow one
        around the suit.
    background.png
        skimage's rocket photo cropped to 4:3 and resized to 640x480, to composite demo results onto.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

from utils.data import synthetic
from utils.data.trimap import erode_to_trimap
from utils.images import BACKGROUND, FOREGROUND, UNKNOWN, composite, resize, to_uint8, write_png

SYNTHETIC_SEED = 106  # a portrait bust with hair strands
SYNTHETIC_SIZE = (300, 400)
UNKNOWN_DILATION = 8  # the synthetic trimap: pixels of unknown on each side of the alpha's edge
MASK_BLUR = 1.5  # sigma (px) of the synthetic mask's soft edge
# Head and shoulders of skimage's astronaut: the crop (rows, columns) and the outline of the person
# in it (x, y); the crop's left and bottom edges are suit, the top and the right are backdrop.
ASTRONAUT_CROP = (slice(0, 330), slice(90, 420))
ASTRONAUT_OUTLINE = [(-1, 331), (-1, 225), (22, 195), (35, 170), (60, 155), (95, 150), (92, 140),
                     (85, 130), (78, 110), (76, 80), (82, 50), (98, 28), (122, 17), (155, 16),
                     (180, 24), (192, 42), (198, 75), (196, 105), (190, 128), (186, 146),
                     (212, 165), (235, 210), (255, 250), (270, 285), (280, 331)]
HAIR_BOTTOM = 145  # rows above are hair and face: the band is widest there


def make_synthetic():
    """(image float32 (H, W, 3), alpha uint8 (H, W), trimap uint8 (H, W)) for the synthetic demo."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    h, w = SYNTHETIC_SIZE
    alpha = to_uint8(synthetic.make_alpha(rng, h, w))
    fg = synthetic.make_foreground(rng, h, w)
    bg = synthetic.make_background(rng, h, w, photos=[photo_u8('astronaut') / np.float32(255)])
    image = composite(alpha.astype(np.float32) / 255.0, fg, bg)  # exactly the stored alpha
    return image, alpha, erode_to_trimap(alpha / 255.0, UNKNOWN_DILATION, UNKNOWN_DILATION)


def synthetic_mask(alpha_u8):
    """Soft segmentation mask from an 8-bit alpha: alpha >= 128, Gaussian-blurred (MASK_BLUR).

    Returns:
        uint8 (H, W) in 0..255.
    """
    return to_uint8(ndimage.gaussian_filter((alpha_u8 >= 128).astype(np.float32), MASK_BLUR))


def astronaut_trimap(height=330, width=330):
    """Hand-drawn-style trimap for the astronaut crop: unknown within about 16 px of the outline
    around the hair, 6 px around the suit, a smooth change in between.

    Returns:
        uint8 (H, W) in {0, 128, 255}.
    """
    from skimage.draw import polygon
    xs, ys = zip(*ASTRONAUT_OUTLINE)
    person = np.zeros((height, width), bool)
    rr, cc = polygon(np.array(ys), np.array(xs), shape=person.shape)
    person[rr, cc] = True
    inside = ndimage.distance_transform_edt(person)    # distance to the nearest backdrop pixel
    outside = ndimage.distance_transform_edt(~person)  # distance to the nearest person pixel
    rows = np.arange(height)[:, None]
    half = 6 + 10 / (1 + np.exp((rows - HAIR_BOTTOM) / 6.0))
    trimap = np.where(person, FOREGROUND, BACKGROUND).astype(np.uint8)
    trimap[(person & (inside <= half)) | (~person & (outside <= half))] = UNKNOWN
    return trimap


def photo_u8(name, size=None):
    """A bundled skimage.data photo as uint8 (H, W, 3); with size (H, W), centre-cropped to
    that aspect ratio and resized to it."""
    import skimage.data
    x = np.asarray(getattr(skimage.data, name)())[..., :3]
    if size is not None:
        h = min(x.shape[0], int(round(x.shape[1] * size[0] / size[1])))
        w = min(x.shape[1], int(round(x.shape[0] * size[1] / size[0])))
        y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
        x = x[y0:y0 + h, x0:x0 + w]
        x = to_uint8(resize(x.astype(np.float32) / 255.0, *size, Image.Resampling.BICUBIC))
    return x


def main(argv=None):
    """Write the demo images; returns the exit status."""
    parser = argparse.ArgumentParser(prog='python -m scripts.make_demo_images',
                                     description='Write the bundled demo images (deterministic).')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'imgs'), help='output folder (default: the repository imgs/)')
    args = parser.parse_args(argv)
    image, alpha, trimap = make_synthetic()
    write_png(os.path.join(args.out, 'synthetic_image.png'), image)
    write_png(os.path.join(args.out, 'synthetic_alpha.png'), alpha)
    write_png(os.path.join(args.out, 'synthetic_trimap.png'), trimap)
    write_png(os.path.join(args.out, 'synthetic_mask.png'), synthetic_mask(alpha))
    write_png(os.path.join(args.out, 'astronaut_image.png'), photo_u8('astronaut')[ASTRONAUT_CROP])
    write_png(os.path.join(args.out, 'astronaut_trimap.png'), astronaut_trimap())
    write_png(os.path.join(args.out, 'background.png'), photo_u8('rocket', (480, 640)))
    print(f'wrote 7 demo images to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
