"""Trainer extensions: validation (crops with image grids; whole photographs), a divergence guard."""
import json
import math
import os

import chainer
import numpy as np
from chainer.training import extension, extensions

from utils.evaluation import metrics
from utils.images import (
    UNKNOWN,
    atomic_write,
    chw_to_hwc,
    read_alpha,
    read_image,
    read_trimap,
    to_uint8,
    write_png,
)
from utils.inference.pipeline import saved_matte
from utils.training.checkpoint import save_checkpoint
from utils.training.curves import plot_whole_curves


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


class MattingEvaluator(extensions.Evaluator):
    """Chainer's ``Evaluator`` for mattes: predicts fixed validation crops and reports
    validation/main/{SAD, MSE} (means over the crops with unknown pixels).

    Under MPI wrap it with ``chainermn.create_multi_node_evaluator`` (every rank scores its share
    of the crops, the means are averaged). Each evaluation in a trainer writes
    ``OUT/images/val_iter_<N>.png``: one row per crop of the first ``n_grid`` (0: none),
    columns image | trimap | prediction | ground truth.

    Args:
        iterator: a non-repeating iterator over ``utils.loader.Example`` crops (deterministic).
        model: ``nnet.model.DIM``.
        refine: score the refined alpha (stages 2, 3) or the encoder-decoder's (stage 1).
        device: chainer device the model lives on.
    """
    priority = extension.PRIORITY_WRITER

    def __init__(self, iterator, model, refine, device, n_grid=4):
        super().__init__(iterator, model, device=device)
        self.refine, self.n_grid = refine, n_grid
        self.grid = []

    def evaluate(self):
        model = self.get_target('main')
        iterator = self.get_iterator('main')
        if hasattr(iterator, 'reset'):
            iterator.reset()
        sads, mses, self.grid = [], [], []
        for batch in iterator:
            for example in batch:
                tri = np.round(example.trimap[0] * 255).astype(np.uint8)
                pred = model.predict(chw_to_hwc(example.image), tri, refine=self.refine)
                gt = example.alpha[0]
                if np.any(tri == UNKNOWN):
                    sads.append(metrics.sad(pred * 255, gt * 255, tri))
                    mses.append(metrics.mse(pred * 255, gt * 255, tri))
                if len(self.grid) < self.n_grid:
                    self.grid.append([chw_to_hwc(example.image), tri / 255.0, pred, gt])
        observation = {}
        with chainer.reporter.report_scope(observation):
            chainer.report({'SAD': float(np.mean(sads)) if sads else float('nan'),
                            'MSE': float(np.mean(mses)) if mses else float('nan')}, model)
        return observation

    def __call__(self, trainer=None):
        result = super().__call__(trainer)
        if trainer is not None and self.grid:
            self.write_grid(trainer)
        return result

    def write_grid(self, trainer):
        """The crops of the last evaluation, as a picture in ``OUT/images``."""
        if self.grid:
            path = os.path.join(trainer.out, 'images',
                                f'val_iter_{trainer.updater.iteration:07d}.png')
            write_png(path, image_grid(self.grid))


class ModelCheckpoint(extension.Extension):
    """Saves ``OUT/model_iter_<N>.npz`` with ``utils.training.checkpoint.save_checkpoint`` (atomic)."""
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
    known pixels forced (``utils.inference.pipeline.saved_matte``) and scored on its given trimap with the
    authors' SAD and Gradient error (and MSE). Reports ``validation/whole/{SAD, MSE, Grad}``
    (means over photographs and trimaps) and keeps ``OUT/whole_validation.json``: closed-form
    matting's scores of the same photographs (computed once, kept across resumes) and one entry
    per validation. ``OUT/whole_validation.png`` draws the curves beside closed-form's.

    Args:
        files: ``utils.loader.SeedFile`` per scored matte (``seed_layout_files``).
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
        return (read_image(file.image), to_uint8(read_alpha(file.alpha)),
                read_trimap(file.trimap, warn=False))

    def _scores(self, predict):
        rows = []
        for file in self.files:
            image, gt, trimap = self._read(file)
            matte = saved_matte(predict(image, trimap), trimap)
            rows.append({'name': file.name, 'trimap_set': file.trimap_set,
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
    """SAD and Gradient error against iterations, beside closed-form's (``utils.training.curves``)."""
    validations = history['validations']
    curve = ('DIM', [v['iteration'] for v in validations],
             [v['mean']['SAD'] for v in validations], [v['mean']['Grad'] for v in validations])
    plot_whole_curves([curve], history['closed_form']['mean'], path)
