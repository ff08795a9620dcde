"""Tests of utils/evaluation/metrics.py: the reference vectors of the authors' MATLAB code, and hand-made cases."""
import csv
import math
from pathlib import Path

import numpy as np
import pytest

from utils.evaluation import metrics
from utils.images import read_alpha, read_trimap

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'
VECTORS = SHARED / 'metric_vectors'
EXPECTED = VECTORS / 'expected.csv'
METRIC_KEYS = ('SAD', 'MSE', 'Grad', 'Conn')


def _expected_rows():
    if not EXPECTED.is_file():
        return []
    with open(EXPECTED, newline='') as f:
        return list(csv.DictReader(f))


def _to_255(alpha01):
    return np.round(alpha01 * 255.0).astype(np.uint8)


# ------------------------------------------------------------------ reference vectors (MATLAB / Octave)

@pytest.mark.parametrize('case', range(8))
def test_reference_vectors(case):
    rows = _expected_rows()
    if not rows:
        pytest.skip(f'{EXPECTED} not found (shared folder absent)')
    assert len(rows) == 8
    row = rows[case]
    pred = _to_255(read_alpha(str(VECTORS / row['pred'])))
    gt = _to_255(read_alpha(str(SHARED / row['alpha'])))
    trimap = read_trimap(str(SHARED / row['trimap']))
    got = metrics.evaluate_all(pred, gt, trimap)
    assert set(got) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert isinstance(got[key], float)
        assert got[key] == pytest.approx(float(row[key]), rel=1e-5), key


# ------------------------------------------------------------------ SAD and MSE

def test_sad_known_difference_ignores_known_pixels():
    gt = np.zeros((4, 4), np.uint8)
    pred = np.full((4, 4), 200, np.uint8)          # large errors everywhere ...
    trimap = np.zeros((4, 4), np.uint8)
    trimap[1, 1:4] = 128                            # ... but only 3 pixels are scored
    pred[1, 1:4] = 51
    # 3 pixels with |51 - 0| / 255 = 0.2 each: 0.6, then / 1000.
    assert metrics.sad(pred, gt, trimap) == pytest.approx(0.6 / 1000, rel=1e-6)
    # float input on the same scale gives the same answer
    assert metrics.sad(pred.astype(np.float64), gt.astype(np.float32), trimap) == \
        pytest.approx(0.6 / 1000, rel=1e-6)


def test_mse_is_mean_over_unknown_only():
    gt = np.zeros((3, 3), np.uint8)
    pred = np.full((3, 3), 255, np.uint8)           # error 1 on every known pixel
    trimap = np.full((3, 3), 255, np.uint8)
    trimap[0, :] = 128                              # 3 unknown pixels (not divided by the 9 pixels)
    trimap[2, 2] = 0
    pred[0, :] = [255, 0, 0]                        # errors 1, 0, 0 -> mean of squares 1/3
    assert metrics.mse(pred, gt, trimap) == pytest.approx(1.0 / 3.0, rel=1e-6)
    pred[0, :] = [0, 51, 102]                       # errors 0, 0.2, 0.4 -> (0.04 + 0.16) / 3
    assert metrics.mse(pred, gt, trimap) == pytest.approx(0.2 / 3.0, rel=1e-6)


def test_no_unknown_pixels_gives_zero():
    pred = np.full((5, 5), 255, np.uint8)
    gt = np.zeros((5, 5), np.uint8)
    trimap = np.full((5, 5), 255, np.uint8)
    assert metrics.evaluate_all(pred, gt, trimap) == {'SAD': 0.0, 'MSE': 0.0, 'Grad': 0.0, 'Conn': 0.0}


def test_identical_mattes_score_zero():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    trimap = np.full(gt.shape, 128, np.uint8)
    res = metrics.evaluate_all(gt.copy(), gt, trimap)
    assert res == {'SAD': 0.0, 'MSE': 0.0, 'Grad': 0.0, 'Conn': 0.0}
    # and a different matte does not
    other = metrics.evaluate_all(np.clip(gt.astype(int) + 10, 0, 255), gt, trimap)
    assert all(other[k] > 0 for k in METRIC_KEYS)


def test_shape_mismatch_raises():
    a = np.zeros((4, 5), np.uint8)
    b = np.zeros((5, 4), np.uint8)
    t = np.full((4, 5), 128, np.uint8)
    for fn in (metrics.sad, metrics.mse, metrics.gradient_error, metrics.connectivity_error,
               metrics.evaluate_all):
        with pytest.raises(ValueError, match='shape'):
            fn(a, b, t)
        with pytest.raises(ValueError, match='shape'):
            fn(a, a, t[:, :4])


# ------------------------------------------------------------------ gradient

def test_gradient_of_constant_mattes_is_zero():
    trimap = np.full((12, 12), 128, np.uint8)
    # min == max: both normalise to zeros, whatever the constant
    assert metrics.gradient_error(np.full((12, 12), 100, np.uint8),
                                  np.full((12, 12), 200, np.uint8), trimap) == 0.0


def test_gradient_of_a_ramp_against_a_constant():
    # gt: horizontal ramp 0..255 over W columns, normalised to c / (W - 1). Away from the border
    # (>= 4 pixels, the half size for sigma 1.4) the y-derivative is 0 and the x-derivative is
    #   (sum_i g_i / |g|) * (-sum_j dg_j * j / |dg|) / (W - 1),  dg_j = -j g_j / sigma^2,
    # i.e. (sum g / |g|) * (sum j^2 g / |j g|) / (W - 1); constants of g cancel in the normalisation.
    h, w, sigma = 9, 20, 1.4
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    assert half == 4
    gt = np.tile(np.linspace(0, 255, w), (h, 1))
    pred = np.full((h, w), 77.0)
    trimap = np.zeros((h, w), np.uint8)
    trimap[:, half:w - half] = 128
    j = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-j ** 2 / (2 * sigma ** 2))
    amp = (g.sum() / np.linalg.norm(g)) * (np.sum(j ** 2 * g) / np.linalg.norm(j * g)) / (w - 1)
    n_unknown = h * (w - 2 * half)
    expected = n_unknown * amp ** 2 / 1000
    assert metrics.gradient_error(pred, gt, trimap) == pytest.approx(expected, rel=1e-6)
    # symmetric in its arguments, and min-max normalisation makes it scale invariant
    assert metrics.gradient_error(gt, pred, trimap) == pytest.approx(expected, rel=1e-6)
    assert metrics.gradient_error(pred, gt / 2 + 10, trimap) == pytest.approx(expected, rel=1e-6)


def _matlab_gaussgradient_bruteforce(im, sigma):
    """Literal port of gaussgradient.m: 2-D kernel by double loop, imfilter 'replicate' 'conv'."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    size = 2 * half + 1
    gauss = lambda x: math.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = lambda x: -x * gauss(x) / sigma ** 2
    hx = np.zeros((size, size))
    for i in range(size):
        for k in range(size):
            hx[i, k] = gauss(i - half) * dgauss(k - half)
    hx /= math.sqrt(np.sum(hx * hx))
    hy = hx.T
    pad = np.pad(im, half, mode='edge')
    gx = np.zeros_like(im)
    gy = np.zeros_like(im)
    for r in range(im.shape[0]):
        for c in range(im.shape[1]):
            for i in range(size):
                for k in range(size):
                    # true convolution: out(r, c) = sum h(i, k) * in(r - (i - half), c - (k - half))
                    v = pad[r + half - (i - half), c + half - (k - half)]
                    gx[r, c] += hx[i, k] * v
                    gy[r, c] += hy[i, k] * v
    return gx, gy


def test_gradient_matches_bruteforce_port():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 256, (7, 9)).astype(np.float64)
    gt = np.zeros((7, 9))
    gt[2:6, 3:] = 255
    gt[0, 0] = 128
    trimap = np.full((7, 9), 128, np.uint8)
    trimap[0, :] = 0

    def amp(x):
        x = (x - x.min()) / (x.max() - x.min())
        gx, gy = _matlab_gaussgradient_bruteforce(x, 1.4)
        return np.sqrt(gx ** 2 + gy ** 2)

    expected = np.sum(((amp(pred) - amp(gt)) ** 2)[trimap == 128]) / 1000
    assert expected > 0
    assert metrics.gradient_error(pred, gt, trimap) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ connectivity

def _blob_case(disconnected):
    """5x5 case: gt 255 except column 4 = 26 (0.102); pred 255, except column 3 = 0 when
    disconnected. Only column 4 is scored, and pred and gt are the same there in both variants."""
    gt = np.full((5, 5), 255, np.uint8)
    gt[:, 4] = 26
    pred = np.full((5, 5), 255, np.uint8)
    if disconnected:
        pred[:, 3] = 0
    trimap = np.zeros((5, 5), np.uint8)
    trimap[:, 4] = 128
    return pred, gt, trimap


def test_connectivity_disconnected_blob_penalised_more():
    # Connected: column 4 is in the largest component at t = 0.1 (26/255 = 0.102 >= 0.1) and
    # leaves it at t = 0.2, so l = 0.1: d_pred = 0.9 -> phi 0.1; d_gt = 0.002 < 0.15 -> phi 1.
    # |diff| = 0.9 per pixel, 5 pixels.
    # Disconnected: the zero column cuts column 4 off the 15-pixel body, so it leaves at t = 0.1
    # and l = 0: d_pred = 1 -> phi 0; d_gt = 0.102 < 0.15 -> phi 1. |diff| = 1 per pixel.
    pc, gc, tc = _blob_case(disconnected=False)
    pd, gd, td = _blob_case(disconnected=True)
    conn_connected = metrics.connectivity_error(pc, gc, tc)
    conn_disconnected = metrics.connectivity_error(pd, gd, td)
    assert conn_connected == pytest.approx(5 * 0.9 / 1000, rel=1e-6)
    assert conn_disconnected == pytest.approx(5 * 1.0 / 1000, rel=1e-6)
    assert conn_disconnected > conn_connected
    # SAD sees no difference between the two
    assert metrics.sad(pc, gc, tc) == metrics.sad(pd, gd, td)


def test_connectivity_blob_of_full_alpha_far_from_body():
    # gt all 255; pred a 3x3 body of 255 plus a single detached 255 pixel; everything else 0.
    # Every threshold keeps the body as the largest component, so body pixels get l = 1 and
    # all others l = 0. Detached pixel: d_pred = d_gt = 1 -> phi 0 both -> 0. The
    # zero pixels (25 - 9 - 1 = 15): d_pred = 0 -> phi 1, d_gt = 1 -> phi 0 -> 1 each.
    gt = np.full((5, 5), 255, np.uint8)
    pred = np.zeros((5, 5), np.uint8)
    pred[0:3, 0:3] = 255
    pred[4, 4] = 255
    trimap = np.full((5, 5), 128, np.uint8)
    assert metrics.connectivity_error(pred, gt, trimap) == pytest.approx(15 / 1000, rel=1e-6)


def test_connectivity_background_is_not_a_component():
    # 5x5, gt 255 except the centre 46 (0.18); pred 0 except the centre 255. The intersection is the
    # single centre pixel: it is the largest component (the 24 background pixels are not one) until
    # t = 0.2, so l_centre = 0.1: d_pred = 0.9 -> phi 0.1, d_gt = 0.0804 -> phi 1: |diff| 0.9.
    # The other 24 pixels get l = 0: d_pred = 0 -> phi 1, d_gt = 1 -> phi 0: |diff| 1 each.
    gt = np.full((5, 5), 255, np.uint8)
    gt[2, 2] = 46
    pred = np.zeros((5, 5), np.uint8)
    pred[2, 2] = 255
    trimap = np.full((5, 5), 128, np.uint8)
    assert metrics.connectivity_error(pred, gt, trimap) == pytest.approx((24 + 0.9) / 1000, rel=1e-6)


def test_connectivity_pixel_on_a_threshold_counts_as_above_it():
    # single pixel, gt 153 (= 0.6 exactly), pred 255. MATLAB's single(153)/255 rounds up to
    # 0.60000002 >= 0.6, so the pixel stays in omega up to t = 0.6 and leaves at t = 0.7: l = 0.6.
    # d_pred = 0.4 -> phi 0.6; d_gt = 0 -> phi 1; |diff| = 0.4. (In float64, 153/255 < 6 * 0.1
    # and l would be 0.5, giving 0.5.)
    pred = np.array([[255]], np.uint8)
    gt = np.array([[153]], np.uint8)
    trimap = np.array([[128]], np.uint8)
    assert metrics.connectivity_error(pred, gt, trimap) == pytest.approx(0.4 / 1000, rel=1e-5)


def test_connectivity_ties_go_to_first_component_in_column_major_order():
    # Two one-pixel components at t = 0.1: A at (0, 3) and B at (3, 0). MATLAB's bwconncomp lists
    # components in column-major order, so max() picks B and A leaves at t = 0.1: l_A = 0.
    # A: pred 255 -> d 1 -> phi 0; gt 46 -> d 0.1804 -> phi 0.8196. Only A is scored.
    # (Picking A, row-major first, would keep it until t = 0.2: l_A = 0.1 and |diff| 0.9.)
    pred = np.zeros((4, 4), np.uint8)
    gt = np.full((4, 4), 255, np.uint8)
    pred[0, 3] = 255
    pred[3, 0] = 255
    gt[0, 3] = 46
    trimap = np.zeros((4, 4), np.uint8)
    trimap[0, 3] = 128
    assert metrics.connectivity_error(pred, gt, trimap) == pytest.approx((1 - 46 / 255) / 1000, rel=1e-5)


def test_connectivity_rejects_bad_step():
    a = np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError, match='step'):
        metrics.connectivity_error(a, a, a, step=0)
