"""The four matting metrics, as the Deep Image Matting authors' MATLAB evaluation code computes them.

``compute_sad_loss``, ``compute_mse_loss``, ``compute_gradient_loss`` and
``compute_connectivity_error`` (step 0.1) of that code are reproduced here, including the division
by 1000 that its ``evaluate.m`` applies to SAD, Grad and Conn.

Conventions
-----------
* pred, gt: alpha mattes on the 0..255 scale, array (H, W), uint8 or float.
* trimap: uint8 array (H, W); only pixels equal to ``UNKNOWN`` (128) are scored.

Precision follows the MATLAB code where it matters: SAD, MSE and Conn work on single-precision
(float32) values as MATLAB does (``single(pred)/255``), the gradient filter runs in double and its
magnitudes are rounded to single before being compared. Sums are accumulated in float64, which
agrees with MATLAB's single-precision sums to well within 1e-5 relative.

This module judges mattes, not models: it imports nothing of the project but ``utils.images``'s
``UNKNOWN`` constant.
"""
import math

import numpy as np
import scipy.ndimage

from utils.images import UNKNOWN

__all__ = ['sad', 'mse', 'gradient_error', 'connectivity_error', 'evaluate_all']


def _check(pred, gt, trimap):
    """Validate shapes and return (pred, gt) as float32 arrays and the unknown-region mask."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    trimap = np.asarray(trimap)
    if pred.ndim != 2:
        raise ValueError(f'pred must be a 2-D (H, W) matte, got shape {pred.shape}')
    if gt.shape != pred.shape or trimap.shape != pred.shape:
        raise ValueError(f'shape mismatch: pred {pred.shape}, gt {gt.shape}, trimap {trimap.shape} '
                         f'(all must be the same (H, W))')
    return pred.astype(np.float32), gt.astype(np.float32), trimap == UNKNOWN


def sad(pred, gt, trimap):
    """Sum of absolute differences over the unknown region, in thousands.

    Parameters
    ----------
    pred, gt : ndarray (H, W), uint8 or float, values in [0, 255]
    trimap : ndarray (H, W), uint8; 128 marks the scored (unknown) pixels

    Returns
    -------
    float
        sum over unknown pixels of |pred - gt| / 255, divided by 1000 (>= 0).
    """
    p, g, unknown = _check(pred, gt, trimap)
    err = np.abs(p - g) / np.float32(255)          # single, as MATLAB
    return float(err[unknown].sum(dtype=np.float64) / 1000.0)


def mse(pred, gt, trimap):
    """Mean squared error over the unknown region.

    Parameters
    ----------
    pred, gt : ndarray (H, W), uint8 or float, values in [0, 255]
    trimap : ndarray (H, W), uint8; 128 marks the scored (unknown) pixels

    Returns
    -------
    float
        mean over unknown pixels of ((pred - gt) / 255)^2, in [0, 1]; 0 when no pixel is unknown.
    """
    p, g, unknown = _check(pred, gt, trimap)
    n = int(np.count_nonzero(unknown))
    if n == 0:
        return 0.0
    err = np.abs(p - g) / np.float32(255)
    return float(np.square(err[unknown]).sum(dtype=np.float64) / n)


def _mat2gray(x):
    """Min-max normalise to [0, 1] in float64 (MATLAB ``mat2gray``); a constant matte gives zeros."""
    x = np.asarray(x, np.float64)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def _gauss_derivative_kernels(sigma):
    """1-D factors of the 2-D derivative-of-Gaussian filter of ``gaussgradient.m``.

    The MATLAB filter is hx(i, j) = gauss(i) * dgauss(j) (rows: Gaussian, columns: derivative),
    half size ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 0.01))), scaled to unit L2 norm; hy = hx'.
    Since hx is an outer product, its L2 norm is |gauss| * |dgauss|: each factor is normalised.

    Returns
    -------
    (g, dg) : float64 arrays of length 2 * halfsize + 1.
    """
    halfsize = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * 1e-2))))
    u = np.arange(-halfsize, halfsize + 1, dtype=np.float64)
    g = np.exp(-u ** 2 / (2.0 * sigma ** 2)) / (sigma * math.sqrt(2.0 * math.pi))
    dg = -u * g / sigma ** 2
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg)


def _gradient_magnitude(x, g, dg):
    """|grad x| with imfilter(x, h, 'replicate', 'conv'): replicate borders, true convolution."""
    # convolve1d flips the kernel (true convolution), mode='nearest' replicates the border.
    gx = scipy.ndimage.convolve1d(scipy.ndimage.convolve1d(x, g, axis=0, mode='nearest'),
                                  dg, axis=1, mode='nearest')
    gy = scipy.ndimage.convolve1d(scipy.ndimage.convolve1d(x, dg, axis=0, mode='nearest'),
                                  g, axis=1, mode='nearest')
    return np.sqrt(gx ** 2 + gy ** 2)


def gradient_error(pred, gt, trimap, sigma=1.4):
    """Gradient error over the unknown region, in thousands.

    Both mattes are min-max normalised to [0, 1] (a constant matte becomes all zeros), filtered
    with first-derivative-of-Gaussian filters (``sigma``; half size 4 for 1.4), and the squared
    difference of their gradient magnitudes is summed over unknown pixels.

    Parameters
    ----------
    pred, gt : ndarray (H, W), uint8 or float, values in [0, 255]
    trimap : ndarray (H, W), uint8; 128 marks the scored (unknown) pixels
    sigma : float, standard deviation of the Gaussian, in pixels

    Returns
    -------
    float
        sum over unknown pixels of (|grad pred| - |grad gt|)^2, divided by 1000 (>= 0).
    """
    _, _, unknown = _check(pred, gt, trimap)
    g, dg = _gauss_derivative_kernels(float(sigma))
    amp_p = _gradient_magnitude(_mat2gray(pred), g, dg).astype(np.float32)   # single(), as MATLAB
    amp_g = _gradient_magnitude(_mat2gray(gt), g, dg).astype(np.float32)
    err = np.square(amp_p - amp_g)
    return float(err[unknown].sum(dtype=np.float64) / 1000.0)


def _largest_component(mask):
    """Largest 4-connected component of a boolean mask (MATLAB ``bwconncomp(mask, 4)`` + max).

    Ties go to the component met first in column-major order, as MATLAB's ``max`` over
    ``bwconncomp``'s list does. An empty mask gives an empty component.
    """
    # Labelling the transpose numbers components in column-major order of first pixel.
    labels, n = scipy.ndimage.label(mask.T)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0                                    # background is not a component
    return (labels == int(np.argmax(sizes))).T


def connectivity_error(pred, gt, trimap, step=0.1):
    """Connectivity error over the unknown region, in thousands.

    For thresholds t_i = i * step (i = 1, 2, ... up to 1), omega_i is the largest 4-connected
    component of (pred >= t_i) & (gt >= t_i). A pixel's level l is t_{i-1} for the first i whose
    omega_i excludes it (1 if every omega_i includes it). With d = alpha - l,
    phi = 1 - d * [d >= 0.15]; the error sums |phi_pred - phi_gt| over unknown pixels.

    Parameters
    ----------
    pred, gt : ndarray (H, W), uint8 or float, values in [0, 255]
    trimap : ndarray (H, W), uint8; 128 marks the scored (unknown) pixels
    step : float, threshold step in (0, 1]

    Returns
    -------
    float
        the connectivity error divided by 1000 (>= 0).
    """
    p, g, unknown = _check(pred, gt, trimap)
    if not 0 < step <= 1:
        raise ValueError(f'step must be in (0, 1], got {step}')
    # single(x) / 255 in single precision: 51/255 etc. round up in float32, so pixels lying on a
    # threshold (0.2, 0.4, ...) pass ">=" as in MATLAB; in float64, 153/255 < 6 * 0.1 would fail.
    p = p / np.float32(255)
    g = g / np.float32(255)
    # thresh_steps = 0:step:1, element i computed as i * step (as Octave's ranges do).
    n_steps = int(math.floor(1.0 / step + 1e-10)) + 1
    thresh = np.arange(n_steps, dtype=np.float64) * step
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    level = np.full(p.shape, -1.0)
    for i in range(1, n_steps):
        omega = _largest_component((p64 >= thresh[i]) & (g64 >= thresh[i]))
        level[(level == -1) & ~omega] = thresh[i - 1]
    level[level == -1] = 1.0
    level = level.astype(np.float32)                 # single - double is single in MATLAB
    d_p = p - level
    d_g = g - level
    phi_p = 1 - d_p * (d_p >= 0.15)
    phi_g = 1 - d_g * (d_g >= 0.15)
    err = np.abs(phi_p - phi_g)
    return float(err[unknown].sum(dtype=np.float64) / 1000.0)


def evaluate_all(pred, gt, trimap):
    """All four metrics at once.

    Parameters
    ----------
    pred, gt : ndarray (H, W), uint8 or float, values in [0, 255]
    trimap : ndarray (H, W), uint8; 128 marks the scored (unknown) pixels

    Returns
    -------
    dict
        {'SAD': float, 'MSE': float, 'Grad': float, 'Conn': float}; SAD, Grad and Conn are
        divided by 1000 as the authors' evaluate.m does.
    """
    _check(pred, gt, trimap)
    return {'SAD': sad(pred, gt, trimap),
            'MSE': mse(pred, gt, trimap),
            'Grad': gradient_error(pred, gt, trimap),
            'Conn': connectivity_error(pred, gt, trimap)}

