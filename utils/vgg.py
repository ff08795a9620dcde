"""Reading ImageNet VGG16 weights for the encoder.

Accepted file: a Chainer ``.npz`` with keys ``conv1_1/W``, ``conv1_1/b``, ..., ``conv5_3/b`` and
optionally ``fc6/W``, ``fc6/b``. That is the layout of both ``chainer.links.VGG16Layers``'
pretrained file and of Caffe's ``VGG_ILSVRC_16_layers.caffemodel`` converted with Chainer's own
converter (``chainer.links.VGG16Layers.convert_caffemodel_to_npz(caffemodel, npz)``).
"""
import os
import zipfile

import numpy as np

from nnet.model import ENCODER_STAGES
from utils.utils import InputError

VGG_CONV_LAYERS = [name for stage in ENCODER_STAGES for name, _ in stage]


def read_vgg16_params(path):
    """Read VGG16 weights.

    Returns:
        dict name -> (W, b) float32 NumPy arrays for conv1_1..conv5_3 and, when present, fc6.
    Raises:
        InputError: missing or unreadable file, or a file without the 13 conv layers.
    """
    if not os.path.isfile(path):
        raise InputError(f'{path}: VGG16 weight file not found')
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
