"""Trainer extensions: validation (crops with image grids; whole photographs), a divergence guard."""
import json
import math
import os

import chainer
import numpy as np
from chainer.training import extension, extensions

from utils import metrics
from utils.checkpoint import save_checkpoint
from utils.pipeline import saved_matte
from utils.plot_logs import plot_whole_curves
from utils.utils import (UNKNOWN, atomic_write, chw_to_hwc, read_alpha, read_image, read_trimap,
                         to_uint8, write_png)


class TrainingDiverged(Exception):
    """The loss or a parameter became NaN or Inf."""


class DivergenceGuard(extension.Extension):
    """Stops training when ``main/loss`` or a parameter of the main optimizer's target is NaN or
    Inf, before any snapshot of that iteration.

    The parameters are checked as well because a network can hide a NaN weight from its loss: a
    ReLU fused into a oneDNN convolution turns NaN into 0, where ``F.relu`` keeps it. Runs first
    among the extensions of an iteration, so the last snapshot on disk is the last good one. A
    NumPy loss is checked every iteration. A CuPy loss is only folded into a flag on the GPU (no
    copy to the host, so the loop never waits for the GPU), and that flag is read on the
    iterations where ``read_trigger`` fires: give it every iteration that writes a snapshot or a
    log (default: every iteration).
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER + 100

    def __init__(self, read_trigger=None):
        self.read_trigger = read_trigger
        self._first_bad = None  # on the GPU: (iteration, health) of the first non-finite one

    def __call__(self, trainer):
        loss = trainer.observation.get('main/loss')
        if loss is None:
            return
        loss = getattr(loss, 'array', loss)
        iteration = trainer.updater.iteration
        xp = chainer.backend.get_array_module(loss)
        params = trainer.updater.get_optimizer('main').target.params()
        # the loss, made NaN by any non-finite parameter (0 * inf is NaN; a finite sum of
        # parameters overflows only for weights near 1e30, which have diverged anyway)
        health = loss + 0 * sum(p.array.sum() for p in params if p.array is not None)
        if xp is np:
            if not math.isfinite(float(health)):
                self._stop(trainer, float(health), iteration)
            return
        if self._first_bad is None:
            self._first_bad = (xp.full((), -1, np.int64), xp.zeros((), loss.dtype))
        at, value = self._first_bad
        bad = ~xp.isfinite(health) & (at < 0)
        self._first_bad = (xp.where(bad, iteration, at), xp.where(bad, health, value))
        if self.read_trigger is None or self.read_trigger(trainer):
            at, value = (chainer.backend.CpuDevice().send(a) for a in self._first_bad)
            if int(at) >= 0:
                self._stop(trainer, float(value), int(at))

    @staticmethod
    def _stop(trainer, health, iteration):
        raise TrainingDiverged(
            f'loss or parameters became {health} at iteration {iteration}; the last good '
            f'snapshot in {trainer.out} is kept (try a lower --base_lr)')


def image_grid(rows):
    """Stack rows of equal-size (H, W, 3) float images in [0, 1] into one uint8 picture.

    Args:
        rows: list of lists of (H, W, 3) or (H, W) arrays.
    Returns:
        uint8 (rows*H + gaps, cols*W + gaps, 3).
    """
    gap = 4
    tiles = [[np.repeat(t[:, :, None], 3, 2) if t.ndim == 2 else t for t in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    n_rows, n_cols = len(tiles), max(len(r) for r in tiles)
    canvas = np.ones((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap, 3), np.float32)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = t
    return to_uint8(canvas)


class MattingValidation(extension.Extension):
    """Predicts fixed validation crops; reports validation/main/{SAD, MSE, loss_alpha}.

    Also writes ``OUT/images/val_iter_<N>.png``: one row per sample of the first ``n_grid``,
    columns image | trimap | prediction | ground truth.

    Args:
        dataset: examples as ``utils.loader.MattingTransform`` returns them (deterministic).
        model: ``nnet.model.DIM``.
        refine: score the refined alpha (stages 2, 3) or the encoder-decoder's (stage 1).
        device: chainer device the model lives on.
    """
    priority = extension.PRIORITY_WRITER

    def __init__(self, dataset, model, refine, device, n_grid=4):
        self.dataset, self.model, self.refine, self.device = dataset, model, refine, device
        self.n_grid = n_grid

    def __call__(self, trainer):
        sads, mses, grid = [], [], []
        for i in range(len(self.dataset)):
            image, trimap, alpha, _, _ = self.dataset[i]
            tri = np.round(trimap[0] * 255).astype(np.uint8)
            pred = self.model.predict(chw_to_hwc(image), tri, refine=self.refine)
            gt = alpha[0]
            if np.any(tri == UNKNOWN):
                sads.append(metrics.sad(pred * 255, gt * 255, tri))
                mses.append(metrics.mse(pred * 255, gt * 255, tri))
            if i < self.n_grid:
                grid.append([chw_to_hwc(image), tri / 255.0, pred, gt])
        chainer.report({'validation/main/SAD': float(np.mean(sads)) if sads else float('nan'),
                        'validation/main/MSE': float(np.mean(mses)) if mses else float('nan')})
        if grid:
            path = os.path.join(trainer.out, 'images',
                                f'val_iter_{trainer.updater.iteration:07d}.png')
            write_png(path, image_grid(grid))


class ModelCheckpoint(extension.Extension):
    """Saves ``OUT/model_iter_<N>.npz`` with ``utils.checkpoint.save_checkpoint`` (atomic)."""
    priority = extension.PRIORITY_READER

    def __init__(self, model):
        self.model = model

    def __call__(self, trainer):
        save_checkpoint(os.path.join(trainer.out, f'model_iter_{trainer.updater.iteration}.npz'),
                        self.model)


class AtomicPlotReport(extensions.PlotReport):
    """``PlotReport`` that draws into a temporary file and renames it into place."""

    def __init__(self, y_keys, x_key, file_name, **kwargs):
        super().__init__(y_keys, x_key, file_name='.tmp-' + file_name, **kwargs)
        self._final_name = file_name

    def __call__(self, trainer):
        super().__call__(trainer)
        drawn = os.path.join(trainer.out, self._file_name)
        if os.path.exists(drawn):
            os.replace(drawn, os.path.join(trainer.out, self._final_name))


class WholeImageValidation(extension.Extension):
    """Scores held-back photographs whole, at full resolution, as ``evaluate.sh`` scores them.

    Each photograph is predicted in one pass (``DIM.predict``), rounded to an 8-bit matte with
    known pixels forced (``utils.pipeline.saved_matte``) and scored on its given trimap with the
    authors' SAD and Gradient error (and MSE). Reports ``validation/whole/{SAD, MSE, Grad}``
    (means over photographs and trimaps) and keeps ``OUT/whole_validation.json``: closed-form
    matting's scores of the same photographs (computed once, kept across resumes) and one entry
    per validation. ``OUT/whole_validation.png`` draws the curves beside closed-form's.

    Args:
        files: (name, image path, alpha path, trimap set, trimap path) per scored matte, as
            ``utils.loader.seed_layout_files`` lists them.
        model: ``nnet.model.DIM``; refine: score the refined alpha (else the encoder-decoder's).
        batch_size: examples per iteration over all processes; each entry records
            ``examples``, the training examples seen so far (iteration x batch_size).
    """
    priority = extension.PRIORITY_WRITER
    KEYS = ('SAD', 'MSE', 'Grad')

    def __init__(self, files, model, refine, batch_size=1):
        self.files, self.model, self.refine = files, model, refine
        self.batch_size = int(batch_size)

    def _read(self, file):
        _, image, alpha, _, trimap = file
        return read_image(image), to_uint8(read_alpha(alpha)), read_trimap(trimap, warn=False)

    def _scores(self, predict):
        rows = []
        for file in self.files:
            image, gt, trimap = self._read(file)
            matte = saved_matte(predict(image, trimap), trimap)
            rows.append({'name': file[0], 'trimap_set': file[3],
                         'SAD': metrics.sad(matte, gt, trimap),
                         'MSE': metrics.mse(matte, gt, trimap),
                         'Grad': metrics.gradient_error(matte, gt, trimap)})
        return {'mean': {k: float(np.mean([r[k] for r in rows])) for k in self.KEYS},
                'images': rows}

    def __call__(self, trainer):
        path = os.path.join(trainer.out, 'whole_validation.json')
        history = {'closed_form': None, 'validations': []}
        if os.path.isfile(path):
            with open(path) as f:
                history = json.load(f)
        if history['closed_form'] is None:
            from pymatting import estimate_alpha_cf
            history['closed_form'] = self._scores(lambda image, trimap: estimate_alpha_cf(
                image.astype(np.float64), trimap.astype(np.float64) / 255.0))
        iteration = trainer.updater.iteration
        result = self._scores(lambda image, trimap: self.model.predict(image, trimap,
                                                                       refine=self.refine))
        history['validations'] = [v for v in history['validations'] if v['iteration'] < iteration]
        history['validations'].append({'iteration': iteration,
                                       'examples': iteration * self.batch_size, **result})
        chainer.report({f'validation/whole/{k}': v for k, v in result['mean'].items()})

        def write(tmp):
            with open(tmp, 'w') as f:
                json.dump(history, f, indent=1)
        atomic_write(path, write)
        plot_whole_validation(history, os.path.join(trainer.out, 'whole_validation.png'))


def plot_whole_validation(history, path):
    """SAD and Gradient error against iterations, beside closed-form's (``utils.plot_logs``)."""
    validations = history['validations']
    curve = ('DIM', [v['iteration'] for v in validations],
             [v['mean']['SAD'] for v in validations], [v['mean']['Grad'] for v in validations])
    plot_whole_curves([curve], history['closed_form']['mean'], path)
