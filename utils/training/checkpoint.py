"""Saving and loading model checkpoints.

A checkpoint is an ``.npz`` holding every parameter of a ``nnet.model.DIM`` (keys as Chainer's
``save_npz`` names them) and ``__config__``, the JSON of the configuration it was built with, so
loading rebuilds the same network with no extra flags. Files are read with ``allow_pickle=False``
(a crafted file cannot run code) and written atomically (temporary name, then rename).
"""
import json
import os
import zipfile

import chainer
import numpy as np
from chainer import serializers

from nnet.model import DIM
from utils.errors import InputError
from utils.images import atomic_write

CONFIG_KEY = '__config__'


def model_arrays(model):
    """Parameters of a model as {name: NumPy array}, Chainer's serializer naming."""
    target = {}
    serializers.DictionarySerializer(target).save(model)
    return {k: np.asarray(chainer.backend.CpuDevice().send(v)) for k, v in target.items()}


def save_checkpoint(path, model):
    """Write the model's parameters and config to ``path`` (.npz, compressed, atomic)."""
    arrays = model_arrays(model)
    arrays[CONFIG_KEY] = np.array(json.dumps(model.config))

    def write(tmp):
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
    atomic_write(path, write)


def load_checkpoint(path, expect_config=None):
    """Build a DIM from a checkpoint.

    Args:
        path: checkpoint file written by ``save_checkpoint``.
        expect_config: if given, a dict of config values the checkpoint must match.
    Returns:
        ``DIM`` on the CPU with the stored weights.
    Raises:
        InputError: missing, corrupt, pickled, non-finite or mismatching checkpoint.
    """
    if not os.path.isfile(path):
        raise InputError(f'{path}: checkpoint not found')
    try:
        with np.load(path, allow_pickle=False) as f:
            if CONFIG_KEY not in f.files:
                raise InputError(f'{path}: not a checkpoint of this project (no {CONFIG_KEY})')
            config = json.loads(str(f[CONFIG_KEY]))
            arrays = {k: f[k] for k in f.files if k != CONFIG_KEY}
    except InputError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
        reason = 'needs pickling, refused' if 'pickle' in str(e) else f'{type(e).__name__}: {e}'
        raise InputError(f'{path}: cannot read checkpoint ({reason})'.splitlines()[0])
    for key, value in (expect_config or {}).items():
        if config.get(key) != value:
            raise InputError(f'{path}: checkpoint has {key}={config.get(key)}, expected {value}')
    try:
        model = DIM(**config)
    except TypeError as e:
        raise InputError(f'{path}: checkpoint config {config} is not understood ({e})')
    for name, value in arrays.items():
        if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
            raise InputError(f'{path}: checkpoint parameter {name} contains NaN or Inf')
    try:
        serializers.NpzDeserializer(arrays).load(model)
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f'{path}: checkpoint does not fit a DIM of config {config} '
                         f'({type(e).__name__}: {e})'.splitlines()[0])
    return model


def checked_checkpoint(path, shipped):
    """``path``; if it is ``shipped`` (the default checkpoint) and missing, say that none is."""
    if path == shipped and not os.path.exists(path):
        raise InputError(f'no trained checkpoint is shipped yet ({path} does not exist): '
                         'train one with scripts/train.sh and pass it with --ckpt_path FILE '
                         'or save it under that name')
    return path


def device_from_gpu_id(gpu_id):
    """The Chainer device of ``--gpu_id``: ``@numpy`` for -1, else ``@cupy:<gpu_id>``.

    Raises:
        InputError: GPU asked for but CuPy is missing or unusable, or there is no such GPU.
    """
    if gpu_id < 0:
        return chainer.get_device('@numpy')
    from chainer.backends import cuda
    if not cuda.available:
        error = getattr(cuda, '_resolution_error', None)
        reason = (str(error).splitlines() or [''])[0] if error else 'not installed'
        raise InputError(f'--gpu_id {gpu_id}: CuPy cannot be used ({reason}); install it with '
                         '`bash scripts/setup_env.sh --gpu`, or use --gpu_id -1 for the CPU')
    try:
        device = chainer.get_device(f'@cupy:{gpu_id}')
        device.use()
    except Exception as e:  # no CUDA driver, no such GPU
        reason = (str(e).splitlines() or [''])[0]
        raise InputError(f'--gpu_id {gpu_id}: cannot use the GPU ({type(e).__name__}: '
                         f'{reason}); use --gpu_id -1 for the CPU')
    return device


def load_model(path, gpu_id=-1, expect_config=None):
    """``load_checkpoint``, then move the model to GPU ``gpu_id`` (>= 0) or keep it on the CPU.
    Its gradients are cleared (None: no memory) until a backward pass makes them."""
    model = load_checkpoint(path, expect_config)
    model.cleargrads()  # (Chainer fills new parameters' gradients with NaN: as big as the model)
    if gpu_id >= 0:
        model.to_device(device_from_gpu_id(gpu_id))
    return model


SNAPSHOT_PREFIX = 'snapshot_iter_'


def resume_from_latest_snapshot(trainer, folder):
    """Load the newest readable ``snapshot_iter_<N>`` in ``folder`` into ``trainer``.

    Snapshots are read with ``allow_pickle=False``. An unreadable newest snapshot is reported and
    the next older one is tried. Returns the iteration resumed from, or None when there is none.
    """
    if not os.path.isdir(folder):
        return None
    found = []
    for name in os.listdir(folder):
        suffix = name[len(SNAPSHOT_PREFIX):]
        if name.startswith(SNAPSHOT_PREFIX) and suffix.isdigit():
            found.append((int(suffix), name))
    for iteration, name in sorted(found, reverse=True):
        path = os.path.join(folder, name)
        try:
            with np.load(path, allow_pickle=False) as f:
                serializers.NpzDeserializer(f).load(trainer)
            return iteration
        except Exception as e:  # corrupt or foreign file: fall back to an older snapshot
            print(f'warning: skipping snapshot {path} ({type(e).__name__}: {e})'.splitlines()[0])
    return None
