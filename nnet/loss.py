"""The paper's losses: alpha-prediction and compositional, over the trimap's unknown pixels.

Both use the Charbonnier term sqrt(d^2 + eps^2) (eps = 1e-6 in the paper) and are averaged over the
unknown pixels (and over RGB for the compositional loss). The total is
w_l L_alpha + (1 - w_l) L_comp with w_l = 0.5.
"""
import chainer
import chainer.functions as F

from nnet.model import UNKNOWN_VALUE


def charbonnier(diff, eps):
    """sqrt(diff^2 + eps^2), elementwise."""
    return F.sqrt(diff * diff + eps * eps)


def unknown_mask(trimap):
    """(N,1,H,W) trimap in [0,1] -> float32 mask, 1 where the trimap is unknown (128)."""
    xp = chainer.backend.get_array_module(trimap)
    return (xp.abs(trimap - UNKNOWN_VALUE) < 0.25 / 255.0).astype(trimap.dtype)


def masked_mean(values, mask, pixels=None):
    """Mean of ``values`` (N,C,H,W) over the pixels where mask (N,1,H,W) is 1, and over C.

    ``pixels``: the pixel count to divide by instead of the mask's own (data-parallel training).
    """
    xp = chainer.backend.get_array_module(mask)
    channels = values.shape[1]
    pixels = mask.sum() if pixels is None else xp.asarray(pixels, values.dtype)
    count = xp.maximum(pixels * channels, 1.0).astype(values.dtype)
    return F.sum(values * F.broadcast_to(mask, values.shape)) / count


def alpha_prediction_loss(alpha_pred, alpha_gt, mask, eps=1e-6, pixels=None):
    """Mean over unknown pixels of sqrt((a_p - a_g)^2 + eps^2). Shapes (N,1,H,W)."""
    return masked_mean(charbonnier(alpha_pred - alpha_gt, eps), mask, pixels)


def compositional_loss(alpha_pred, fg, bg, composite_gt, mask, eps=1e-6, pixels=None):
    """Mean over unknown pixels and RGB of sqrt((c_p - c_g)^2 + eps^2).

    c_p = a_p F + (1 - a_p) B is built from the ground-truth fg and bg (N,3,H,W) and the
    *predicted* alpha (N,1,H,W), so the gradient flows back into the network.
    """
    a = F.broadcast_to(alpha_pred, fg.shape)
    composite_pred = a * fg + (1.0 - a) * bg
    return masked_mean(charbonnier(composite_pred - composite_gt, eps), mask, pixels)


class MattingLoss(chainer.Chain):
    """Wraps a ``DIM`` model with the loss of one training stage; reports its terms.

    Stages (the paper's schedule):
        1: encoder-decoder alone, w_l L_alpha + (1 - w_l) L_comp on its alpha;
        2: refinement alone, the encoder-decoder frozen, L_alpha on the refined alpha;
        3: everything jointly, w_l L_alpha + (1 - w_l) L_comp on the refined alpha.
    forward(image, trimap, alpha, fg, bg): (N,3,H,W), (N,1,H,W) in [0,1], (N,1,H,W), (N,3,H,W),
    (N,3,H,W), all float32 -> scalar loss. Reports loss, loss_alpha, loss_comp and, with the
    refinement stage, loss_alpha_stage1.

    ``unknown_pixels``: data-parallel training passes a function mapping this batch's count of
    unknown pixels (a scalar array) to the mean count over all processes' batches; each process's
    loss is then its sum over the global batch's mean count, so that the mean of the processes'
    gradients (what ChainerMN's optimizer applies) is the gradient of the loss of one process
    over the whole global batch. Default: this batch's own count.
    """

    def __init__(self, model, stage=1, alpha_weight=0.5, eps=1e-6, unknown_pixels=None):
        super().__init__()
        if stage not in (1, 2, 3):
            raise ValueError(f'stage must be 1, 2 or 3, got {stage}')
        self.stage, self.alpha_weight, self.eps = stage, alpha_weight, eps
        self.unknown_pixels = unknown_pixels
        with self.init_scope():
            self.model = model

    def setup_optimizer(self, optimizer):
        """``optimizer.setup(self)``, then freeze the parts this stage does not train."""
        optimizer.setup(self)
        if self.stage == 2:
            self.model.encoder_decoder.disable_update()
        if self.stage == 1:
            self.model.refinement.disable_update()
        return optimizer

    def forward(self, image, trimap, alpha, fg, bg):
        mask = unknown_mask(trimap)
        pixels = None if self.unknown_pixels is None else self.unknown_pixels(mask.sum())
        alpha1, alpha2 = self.model(image, trimap, refine=self.stage != 1,
                                    freeze_stage1=self.stage == 2)
        pred = alpha1 if self.stage == 1 else alpha2
        loss_alpha = alpha_prediction_loss(pred, alpha, mask, self.eps, pixels)
        composite_gt = alpha * fg + (1.0 - alpha) * bg
        loss_comp = compositional_loss(pred, fg, bg, composite_gt, mask, self.eps, pixels)
        if self.stage == 2:
            loss = loss_alpha
        else:
            loss = self.alpha_weight * loss_alpha + (1.0 - self.alpha_weight) * loss_comp
        report = {'loss': loss, 'loss_alpha': loss_alpha, 'loss_comp': loss_comp}
        if self.stage != 1:
            report['loss_alpha_stage1'] = alpha_prediction_loss(alpha1.array, alpha, mask, self.eps,
                                                               pixels)
        chainer.report(report, self)
        return loss
