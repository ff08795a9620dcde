"""The two ways to run a trained DIM on one picture: Chainer, or onnxruntime on an exported file.

Both have ``predict(image, trimap, refine=True)`` with ``DIM.predict``'s contract: image (H, W, 3)
float32 RGB in [0, 1], trimap (H, W) uint8 in {0, 128, 255}, any H and W -> alpha (H, W) float32
in [0, 1] at full resolution, trimap-known pixels exactly 0 / 1. ``name`` and ``description``
say what runs.
"""
import json
import os

import numpy as np

from utils.errors import InputError
from utils.images import BACKGROUND, FOREGROUND
from utils.training.checkpoint import checked_checkpoint, load_model


class ChainerBackend:
    """A checkpoint's ``DIM.predict`` (CPU, or a GPU through CuPy)."""

    name = 'chainer'

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.description = f'chainer, width {model.config["width"]:g}'

    def predict(self, image, trimap, refine=True):
        return self.model.predict(image, trimap, refine=refine)


class OnnxRuntimeBackend:
    """An ONNX file written by ``utils.inference.onnx`` run by onnxruntime on the CPU.

    The same steps as ``DIM.predict``: reflect-pad to multiples of 32, one pass, crop back,
    trimap-known pixels set to 0 / 1.

    Args:
        model: path of the .onnx file, or its bytes.
        source: how to name it in messages.
    """

    name = 'onnxruntime'

    def __init__(self, model, source):
        import onnxruntime

        from utils.inference.onnx import INPUTS, OUTPUTS
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(
                model, options, providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own types for unreadable files
            raise InputError(f'{source}: onnxruntime cannot load it ({type(e).__name__}: {e})'
                             .splitlines()[0])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != list(INPUTS) or outputs != list(OUTPUTS):
            raise InputError(f'{source}: inputs {inputs} and outputs {outputs} are not those of a '
                             f'DIM export ({list(INPUTS)} -> {list(OUTPUTS)}); write one with '
                             'scripts/export_onnx.sh')
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = json.loads(meta.get('dim_config', '{}'))
        width = self.config.get('width')
        self.description = ('onnxruntime ' + onnxruntime.__version__
                            + (f', width {width:g}' if width is not None else ''))

    def predict(self, image, trimap, refine=True):
        from nnet.model import pad_to_multiple
        img, (h, w) = pad_to_multiple(image.transpose(2, 0, 1)[None].astype(np.float32))
        tri, _ = pad_to_multiple(trimap[None, None].astype(np.float32) / np.float32(255))
        alpha, alpha1 = self.session.run(None, {'image': np.ascontiguousarray(img),
                                                'trimap': np.ascontiguousarray(tri)})
        alpha = np.array((alpha if refine else alpha1)[0, 0, :h, :w], np.float32)
        alpha[trimap == BACKGROUND] = 0.0
        alpha[trimap == FOREGROUND] = 1.0
        return alpha


def load_backend(backend, ckpt_path, shipped_ckpt, onnx_path=None, gpu_id=-1, width=None):
    """A backend as the faces' options ask for it.

    Args:
        backend: 'chainer' or 'onnxruntime'.
        ckpt_path: checkpoint (chainer; onnxruntime when no ``onnx_path``: exported in memory).
        shipped_ckpt: the default checkpoint's path (a missing one is reported as not shipped).
        onnx_path: ONNX file for onnxruntime.
        gpu_id: GPU for chainer (-1: CPU); onnxruntime runs on the CPU only.
        width: if given, refuse a model of another width.
    Raises:
        InputError: unreadable or mismatching model, or options that do not go together.
    """
    expect = {'width': width} if width else None
    if backend == 'chainer':
        if onnx_path:
            raise InputError('--onnx goes with --backend onnxruntime')
        return ChainerBackend(load_model(checked_checkpoint(ckpt_path, shipped_ckpt), gpu_id,
                                         expect))
    if gpu_id >= 0:
        raise InputError('--backend onnxruntime runs on the CPU: drop --gpu_id')
    if onnx_path:
        if not os.path.isfile(onnx_path):
            raise InputError(f'{onnx_path}: ONNX file not found (--onnx)')
        runner = OnnxRuntimeBackend(onnx_path, onnx_path)
    else:
        from utils.inference.onnx import dim_to_onnx
        model = load_model(checked_checkpoint(ckpt_path, shipped_ckpt), -1, expect)
        proto = dim_to_onnx(model, os.path.basename(ckpt_path))
        runner = OnnxRuntimeBackend(proto.SerializeToString(), f'{ckpt_path} (exported)')
    if width and runner.config.get('width') != width:
        raise InputError(f'{onnx_path}: model has width={runner.config.get("width")}, '
                         f'expected {width}')
    return runner
