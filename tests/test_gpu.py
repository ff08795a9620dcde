"""The GPU path (CuPy) against the CPU path: forward, backward, unpooling, losses, predict, and
training, demo and evaluation run with --gpu_id 0.

Every test here is marked ``gpu``: it skips where CuPy or a GPU is missing (tests/conftest.py);
``scripts/gpu_check.sh`` runs them with DIM_REQUIRE_GPU=1, where a skip becomes a failure. The
CPU side is this project's fast path (OpenBLAS GEMMs, Winograd); the GPU side is Chainer's own
functions on CuPy. Tolerances are float32 ones: the two sum in different orders.
"""
import csv
import json
import os

import chainer
import chainer.functions as F
import numpy as np
import pytest

import demo
import evaluate
import options
import train
from nnet.cpu import pool as fast_pool
from nnet.cpu.activation import relu
from nnet.loss import (
    MattingLoss,
    alpha_prediction_loss,
    compositional_loss,
    masked_mean,
    unknown_mask,
)
from nnet.model import pad_to_multiple
from tests.helpers import rel_err
from tests.test_evaluate import dataset  # noqa: F401  (the fixture: a small seed-layout set)
from utils.images import read_alpha, read_image, read_trimap
from utils.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = options.DEFAULT_CHECKPOINT  # a trained network: outputs not saturated
BUNDLED = [os.path.join(ROOT, 'imgs', f'astronaut_{kind}.png') for kind in ('image', 'trimap')]
TINY_TRAIN = ['--width', '0.125', '--H', '64', '--crop_sizes', '64', '96',
              '--batch_size', '2', '--seed', '0']


@pytest.fixture(scope='module')
def gpu():
    return chainer.get_device('@cupy:0')


def host(a):
    """A NumPy copy of an array or Variable from any device."""
    return chainer.backend.CpuDevice().send(getattr(a, 'array', a))


def is_cupy(a):
    from chainer.backends import cuda
    return isinstance(getattr(a, 'array', a), cuda.ndarray)


def model_pair(gpu):
    """The shipped model twice: on the CPU and on the GPU."""
    cpu = load_checkpoint(SHIPPED)
    dev = load_checkpoint(SHIPPED)
    dev.to_device(gpu)
    return cpu, dev


def batch(n=2, h=64, w=96, seed=0):
    """(image, trimap, alpha, fg, bg) float32 NCHW: crops of the bundled photo, a trimap with all
    three values, random ground truth."""
    rng = np.random.default_rng(seed)
    photo = read_image(BUNDLED[0]).transpose(2, 0, 1)
    image = np.stack([photo[:, 20 * i:20 * i + h, 30 * i:30 * i + w] for i in range(n)])
    trimap = rng.choice(np.array([0, 128 / 255, 1], np.float32), (n, 1, h, w))
    alpha = rng.random((n, 1, h, w), dtype=np.float32)
    fg, bg = (rng.random((n, 3, h, w), dtype=np.float32) for _ in range(2))
    return [np.ascontiguousarray(a, np.float32) for a in (image, trimap, alpha, fg, bg)]


def function_modules(variable):
    """Modules of every function node in the graph that produced ``variable``."""
    seen, stack, modules = set(), [variable.creator_node], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        modules.add(type(node).__module__)
        stack.extend(x.creator_node for x in node.inputs)
    return modules


def test_forward_matches_cpu_and_stays_on_the_gpu(gpu):
    cpu, dev = model_pair(gpu)
    image, trimap = batch()[:2]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        ref = cpu(image, trimap)
        out = dev(gpu.send(image), gpu.send(trimap))
    for a, b in zip(out, ref):
        assert is_cupy(a)
        assert np.abs(host(a) - b.array).max() < 1e-4
    assert 0.05 < float(ref[1].array.std())  # a real matte, not a saturated one


def test_cpu_kernels_stay_off_the_gpu(gpu):
    cpu, dev = model_pair(gpu)
    image, trimap = batch(n=1)[:2]
    with chainer.using_config('train', True):
        on_cpu = function_modules(cpu(image, trimap)[1])
        on_gpu = function_modules(dev(gpu.send(image), gpu.send(trimap))[1])
    assert {'nnet.cpu.conv', 'nnet.cpu.pool'} <= on_cpu  # the walk sees the CPU kernels
    assert not [m for m in on_gpu if m.startswith('nnet.')], on_gpu
    assert 'chainer.functions.connection.convolution_2d' in on_gpu
    assert 'chainer.functions.pooling.upsampling_2d' in on_gpu


@pytest.mark.parametrize('stage', [1, 2, 3])
def test_backward_matches_cpu(gpu, stage):
    cpu, dev = model_pair(gpu)
    arrays = batch()
    losses = []
    for model, xs in ((cpu, arrays), (dev, [gpu.send(a) for a in arrays])):
        loss = MattingLoss(model, stage=stage)
        model.cleargrads()
        with chainer.using_config('train', True):
            value = loss(*xs)
        value.backward()
        losses.append(value)
    assert is_cupy(losses[1])
    assert float(host(losses[1])) == pytest.approx(float(losses[0].array), rel=1e-5)
    grads = {name: (host(p.grad) if p.grad is not None else None)
             for name, p in dev.namedparams()}
    checked = 0
    for name, p in cpu.namedparams():
        if p.grad is None:
            assert grads[name] is None or not np.any(grads[name]), name
            continue
        assert rel_err(grads[name], p.grad) < 1e-4, name
        checked += 1
    assert checked == {1: 42, 2: 8, 3: 50}[stage]  # the parameters this stage trains


def test_pooling_and_unpooling_match_cpu_exactly(gpu):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 32, 48)).astype(np.float32)
    w = rng.standard_normal((2, 8, 32, 48)).astype(np.float32)
    results = []
    for xs, ws in ((x, w), (gpu.send(x), gpu.send(w))):
        v = chainer.Variable(xs)
        y, indexes = fast_pool.max_pooling_2d(v, 2, 2, return_indices=True)
        z = fast_pool.upsampling_2d(relu(y), indexes, 2, 2, outsize=(32, 48))
        F.sum(z * ws).backward()
        results.append([host(a) for a in (y, z, v.grad)])
    assert is_cupy(z) and is_cupy(v.grad)
    for a, b in zip(results[1], results[0]):
        np.testing.assert_array_equal(a, b)
    # index unpooling: each window's maximum back at its place, zeros elsewhere
    assert np.count_nonzero(results[0][1]) == np.count_nonzero(results[0][0] > 0)


def test_losses_match_cpu_and_stay_on_the_gpu(gpu):
    image, trimap, alpha, fg, bg = batch(seed=2)
    pred = np.clip(alpha + np.random.default_rng(3).normal(0, 0.2, alpha.shape), 0, 1)
    pred = pred.astype(np.float32)
    values = []
    for xs in ((pred, trimap, alpha, fg, bg), [gpu.send(a) for a in (pred, trimap, alpha, fg, bg)]):
        p, t, a, f, b = xs
        p = chainer.Variable(p)
        mask = unknown_mask(t)
        composite_gt = a * f + (1 - a) * b
        terms = [alpha_prediction_loss(p, a, mask), compositional_loss(p, f, b, composite_gt, mask),
                 masked_mean(p * p, mask)]
        F.sum(F.stack(terms)).backward()
        values.append((mask, terms, p.grad))
    (mask_c, terms_c, grad_c), (mask_g, terms_g, grad_g) = values
    assert is_cupy(mask_g) and all(is_cupy(t) for t in terms_g) and is_cupy(grad_g)
    np.testing.assert_array_equal(host(mask_g), mask_c)
    assert 0 < mask_c.sum() < mask_c.size
    for tg, tc in zip(terms_g, terms_c):
        assert float(host(tg)) == pytest.approx(float(tc.array), rel=1e-5)
    assert rel_err(host(grad_g), grad_c) < 1e-5


# no padding, then DIM's three modes: reflect, symmetric, edge
@pytest.mark.parametrize('size', [(64, 96), (70, 90), (16, 50), (10, 50)])
def test_pad_to_multiple_matches_cpu(gpu, size):
    x = np.random.default_rng(4).random((1, 4) + size, dtype=np.float32)
    padded, original = pad_to_multiple(gpu.send(x))
    ref, _ = pad_to_multiple(x)
    assert is_cupy(padded) and original == size
    np.testing.assert_array_equal(host(padded), ref)


def test_predict_matches_cpu(gpu):
    cpu, dev = model_pair(gpu)
    image, trimap = read_image(BUNDLED[0]), read_trimap(BUNDLED[1])
    assert image.shape[0] % 32 and image.shape[1] % 32  # the padded path
    for refine in (False, True):
        ref = cpu.predict(image, trimap, refine=refine)
        out = dev.predict(image, trimap, refine=refine)
        assert type(out) is np.ndarray and out.shape == trimap.shape
        assert np.abs(out - ref).max() < 1e-4
        assert np.all(out[trimap == 0] == 0) and np.all(out[trimap == 255] == 1)


def test_training_on_the_gpu_writes_outputs_and_resumes(gpu, composition_root, tmp_path, capsys):
    log_root = str(tmp_path / 'run')
    args = ['--dataset_root', composition_root, '--log_root', log_root, '--gpu_id', '0',
            '--base_lr', '3e-3', '--ckpt_frq', '6', '--val_frq', '6', '--log_frq', '3']
    assert train.main(args + ['--max_iter', '12'] + TINY_TRAIN) == 0
    log = json.load(open(os.path.join(log_root, 'log')))
    assert [e['iteration'] for e in log] == [3, 6, 9, 12]
    assert all(np.isfinite(e['main/loss']) for e in log)
    assert 'validation/main/SAD' in log[-1]
    for name in ('snapshot_iter_12', 'model_iter_6.npz', 'model_final.npz',
                 'images/val_iter_0000012.png'):
        assert os.path.getsize(os.path.join(log_root, name)) > 0, name
    final = load_checkpoint(os.path.join(log_root, 'model_final.npz'))
    assert final.xp is np and final.config == {'width': 0.125, 'input_scale': 1.0}
    capsys.readouterr()
    assert train.main(args + ['--max_iter', '15'] + TINY_TRAIN) == 0
    assert 'resuming from the snapshot of iteration 12' in capsys.readouterr().out
    assert json.load(open(os.path.join(log_root, 'log')))[-1]['iteration'] == 15


def test_diverging_training_on_the_gpu_stops_before_a_snapshot(gpu, composition_root, tmp_path,
                                                               capsys):
    log_root = tmp_path / 'diverge'
    code = train.main(['--dataset_root', composition_root, '--log_root', str(log_root),
                       '--gpu_id', '0', '--max_iter', '50', '--ckpt_frq', '3', '--log_frq', '3',
                       '--val_frq', '50', '--base_lr', '1e30'] + TINY_TRAIN)
    err = capsys.readouterr().err
    assert code == 1
    assert 'parameters became nan' in err.lower() or 'parameters became inf' in err.lower(), err
    failed_at = int(err.split('at iteration ')[1].split(';')[0])
    snapshots = [int(p.name.split('_')[-1]) for p in log_root.glob('snapshot_iter_*')]
    assert not snapshots or max(snapshots) < failed_at  # none written after the bad loss
    assert failed_at - max(snapshots or [0]) <= 3  # read at the next log or snapshot


def test_demo_on_the_gpu_matches_cpu(gpu, tmp_path):
    mattes = []
    for gpu_id in ('-1', '0'):
        out = tmp_path / f'gpu{gpu_id}'
        assert demo.main(BUNDLED + ['--gpu_id', gpu_id, '--out_dir', str(out)]) == 0
        mattes.append(read_alpha(str(out / 'astronaut_image_alpha.png')))
    diff = np.abs(mattes[0] - mattes[1]) * 255
    assert diff.max() <= 1.01 and np.mean(diff > 0.5) < 0.01


def test_evaluate_on_the_gpu_matches_cpu(gpu, dataset, ckpt, tmp_path):  # noqa: F811
    rows = []
    for gpu_id in ('-1', '0'):
        out = tmp_path / f'gpu{gpu_id}'
        assert evaluate.main([str(dataset), '--method', 'dim', '--ckpt_path', ckpt,
                              '--gpu_id', gpu_id, '--out_dir', str(out)]) == 0
        with open(out / 'metrics.csv', newline='') as f:
            rows.append(list(csv.DictReader(f)))
    assert len(rows[0]) == len(rows[1]) > 0
    for a, b in zip(*rows):
        assert (a['name'], a['trimap_set']) == (b['name'], b['trimap_set'])
        for key in evaluate.METRICS:
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-2, abs=1e-3), key
