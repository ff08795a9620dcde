"""The fitting check: can the network memorise a few fixed crops?

A network, a loss and a CPU backward that are right can drive the training loss on a small fixed
set of crops (fixed trimaps, no augmentation) towards zero, and their mattes towards the ground
truth, strands included. This trains stage 1 (the encoder-decoder, the paper's two losses) on
such a set and scores the crops as ``evaluate.sh`` scores photographs (SAD and Gradient error of
8-bit mattes over the unknown pixels), beside closed-form matting on the same crops and trimaps.
``scripts/fit_check.py`` runs it at full width; the test suite runs a narrow version.
"""
import chainer
import numpy as np

from nnet.loss import MattingLoss
from utils.evaluation import metrics
from utils.images import to_uint8
from utils.inference.pipeline import saved_matte
from utils.loader import MattingTransform


def fixed_crops(raw, count, size, generate_trimaps=False, both_known=False, seed=0):
    """``count`` crops of ``size`` x ``size`` around unknown pixels, spread over the photographs.

    Args:
        raw: raw dataset of photographs (``utils.loader``; with trimaps unless
            ``generate_trimaps``, which makes them with an erosion of size / 16 pixels).
        count: number of crops; candidate k comes from photograph ``k % len(raw)``.
        both_known: skip candidates whose trimap lacks background or foreground (which
            closed-form matting needs); at most 20 candidates per crop are tried.
    Returns:
        list of training examples (image, trimap, alpha, fg, bg), float32 CHW; no flips, no
        scale change (crops of ``size`` pixels), the same for the same arguments.
    """
    transform = MattingTransform(size=size, crop_sizes=(size,), generate_trimaps=generate_trimaps,
                                 kernel_range=(size // 16, size // 16), flip=False, seed=seed)
    crops = []
    for k in range(20 * count):
        crop = transform(raw[k % len(raw)], key=(k,))
        if not both_known or (np.any(crop[1] == 0) and np.any(crop[1] == 1)):
            crops.append(crop)
        if len(crops) == count:
            return crops
    raise ValueError(f'only {len(crops)} of {count} crops have known background and foreground')


def batches(crops, batch_size):
    """Endless batches of the crops in a fixed round-robin order: list of ``batch_size`` crops."""
    k = 0
    while True:
        yield [crops[(k + j) % len(crops)] for j in range(batch_size)]
        k += batch_size


def predict_crops(model, crops):
    """The encoder-decoder's 8-bit mattes of the crops: list of (S, S) uint8, known pixels forced
    from the trimap as ``evaluate.sh`` does."""
    mattes = []
    for image, trimap, *_ in crops:
        trimap8 = to_uint8(trimap[0])
        mattes.append(saved_matte(model.predict(image.transpose(1, 2, 0), trimap8, refine=False),
                                  trimap8))
    return mattes


def closed_form_crops(crops):
    """Closed-form matting's 8-bit mattes of the crops (pymatting), or None for a crop it
    cannot matte (a trimap without background or foreground)."""
    from pymatting import estimate_alpha_cf
    mattes = []
    for image, trimap, *_ in crops:
        try:
            alpha = estimate_alpha_cf(image.transpose(1, 2, 0).astype(np.float64),
                                      trimap[0].astype(np.float64))
        except ValueError:
            mattes.append(None)
            continue
        mattes.append(to_uint8(np.clip(alpha, 0, 1)))
    return mattes


def score(mattes, crops):
    """Mean SAD and Gradient error of 8-bit mattes over the crops: {'SAD': x, 'Grad': y}."""
    rows = []
    for matte, (_, trimap, alpha, *_) in zip(mattes, crops):
        gt, trimap8 = to_uint8(alpha[0]), to_uint8(trimap[0])
        rows.append((metrics.sad(matte, gt, trimap8), metrics.gradient_error(matte, gt, trimap8)))
    sad, grad = np.mean(rows, axis=0)
    return {'SAD': float(sad), 'Grad': float(grad)}


def train(model, crops, iterations, batch_size=4, lr=1e-4, on_step=None):
    """Stage-1 training (Adam, constant ``lr``) on the fixed crops, in round-robin batches.

    Args:
        on_step: called as on_step(iteration, loss) after every update (iterations from 1).
    Returns:
        list of the training losses, one per iteration (float).
    """
    loss_fn = MattingLoss(model, stage=1)
    optimizer = loss_fn.setup_optimizer(chainer.optimizers.Adam(alpha=lr))
    losses = []
    feed = batches(crops, batch_size)
    for iteration in range(1, iterations + 1):
        loss = loss_fn(*chainer.dataset.concat_examples(next(feed), model.device))
        loss_fn.cleargrads()
        loss.backward()
        optimizer.update()
        losses.append(float(loss.array))
        if on_step:
            on_step(iteration, losses[-1])
    return losses
