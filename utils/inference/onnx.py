"""Export a DIM to ONNX with Chainer's own exporter, ``onnx_chainer`` (shipped with chainer 7.8.1).

    bash scripts/export_onnx.sh [CKPT] OUT.onnx     (python -m scripts.export_onnx [CKPT] OUT.onnx)

The exported graph (opset 11) takes

    image  (N, 3, H, W) float32, RGB in [0, 1]          (8-bit values / 255, 16-bit / 65535)
    trimap (N, 1, H, W) float32 in {0, 128/255, 1}       (background, unknown, foreground)

with H and W symbolic: any multiples of 32 (pad other sizes at the bottom and right by reflection,
crop the outputs back). It subtracts the VGG mean and the 0.5 trimap offset itself (exactly
``nnet.model.network_input``) and returns ``alpha`` (refined) and ``alpha_stage1``
(the encoder-decoder's), (N, 1, H, W) float32 in [0, 1]; trimap-known pixels are the network's
values: set them to 0 / 1 afterwards, as ``DIM.predict`` does. The same facts are in the file's
metadata (``metadata_props``; ``PREPROCESSING_KEY`` holds them as JSON).

What onnx_chainer lacks, added through its ``external_converters`` hook:

* ``MaxPoolingND`` (``F.max_pooling_2d`` with ``return_indices=True``): ONNX ``MaxPool`` with its
  second output, ``Indices``. ONNX computes its own indices, flat over the whole (N, C, H, W)
  input, so Chainer's (the position inside each 2x2 window) are never exported.
* ``Upsampling2D`` (``F.upsampling_2d``: index unpooling; onnx_chainer has no converter and
  refuses ``Unpooling2D`` with ``outsize``): ONNX ``MaxUnpool`` fed with the ``Indices`` of the
  max-pooling whose Chainer indices it was given, and that pooling's input shape as
  ``output_shape``.

The model is traced through stock Chainer functions (``stock_functions``): the project's own CPU
kernels are Chainer ``FunctionNode``s that onnx_chainer does not know, and they compute exactly
what the stock functions compute.

``onnx.mapping`` (imported by onnx_chainer 7.8.1, no longer in onnx: absent from 1.23) is restored before
onnx_chainer is imported, from the type tables ``onnx.helper`` keeps: see ``_restore_onnx_mapping``.
Nothing of onnx_chainer itself is patched.
"""
import contextlib
import json
import sys
import types
import warnings

import chainer
import chainer.functions as F
import numpy as np

from nnet.model import DOWNSAMPLING, VGG_MEAN
from utils.errors import InputError
from utils.images import atomic_write

OPSET = 11  # the newest opset onnx_chainer 7.8.1 has converters for
IR_VERSION = 6  # the ONNX IR version of opset 11 (onnx_chainer writes the installed onnx's newest)
INPUTS = ('image', 'trimap')
OUTPUTS = ('alpha', 'alpha_stage1')
PREPROCESSING_KEY = 'preprocessing'
# The graph's input and output conventions, stored in the file's metadata_props.
PREPROCESSING = {
    'layout': 'NCHW',
    'inputs': {
        'image': 'float32 (N, 3, H, W), RGB, scale: 8-bit value / 255 (16-bit: / 65535), '
                 'range [0, 1]',
        'trimap': 'float32 (N, 1, H, W): 0 background, 128/255 unknown, 1 foreground',
    },
    'mean': {'values_rgb': [float(v) for v in VGG_MEAN],
             'applied': 'inside the graph (image - mean); do not subtract it yourself'},
    'trimap_encoding': 'value / 255 of a 0/128/255 trimap; 0.5 is subtracted inside the graph',
    'size': f'H and W: any multiples of {DOWNSAMPLING}; pad other sizes at the bottom and right '
            'by reflection and crop the outputs back',
    'outputs': {'alpha': 'float32 (N, 1, H, W) in [0, 1], refined (two stages)',
                'alpha_stage1': 'float32 (N, 1, H, W) in [0, 1], encoder-decoder only'},
    'postprocessing': 'set alpha to 0 where the trimap is 0 and to 1 where it is 1',
}


def _restore_onnx_mapping():
    """Give onnx back the ``onnx.mapping`` module onnx_chainer imports (absent from onnx 1.23).

    onnx_chainer uses two of its tables: ``NP_TYPE_TO_TENSOR_TYPE`` (NumPy dtype -> ONNX element
    type, rebuilt here with ``onnx.helper.np_dtype_to_tensor_dtype``) and
    ``STORAGE_TENSOR_TYPE_TO_FIELD`` (which TensorProto field holds a constant's values; copied
    from older onnx). With onnx versions that still have the module, nothing changes.
    """
    import onnx
    if 'onnx.mapping' in sys.modules or hasattr(onnx, 'mapping'):
        return
    from onnx import TensorProto, helper
    mapping = types.ModuleType('onnx.mapping')
    dtypes = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
              np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128)
    mapping.NP_TYPE_TO_TENSOR_TYPE = {np.dtype(t): helper.np_dtype_to_tensor_dtype(np.dtype(t))
                                      for t in dtypes}
    mapping.STORAGE_TENSOR_TYPE_TO_FIELD = {
        TensorProto.FLOAT: 'float_data', TensorProto.INT32: 'int32_data',
        TensorProto.INT64: 'int64_data', TensorProto.UINT16: 'int32_data',
        TensorProto.DOUBLE: 'double_data', TensorProto.COMPLEX64: 'float_data',
        TensorProto.COMPLEX128: 'double_data', TensorProto.UINT32: 'uint64_data',
        TensorProto.UINT64: 'uint64_data', TensorProto.STRING: 'string_data',
        TensorProto.BOOL: 'int32_data'}
    sys.modules['onnx.mapping'] = mapping
    onnx.mapping = mapping


def _onnx_chainer():
    """``onnx_chainer`` and ``onnx_chainer.onnx_helper``, importable with current onnx."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InputError('ONNX export needs the onnx package: pip install -r requirements.txt')
    _restore_onnx_mapping()
    import onnx_chainer
    from onnx_chainer import onnx_helper
    return onnx_chainer, onnx_helper


@contextlib.contextmanager
def stock_functions():
    """Trace with Chainer's stock functions instead of the project's CPU kernels.

    The one place the export depends on how nnet switches its fast CPU path off.
    """
    from nnet.cpu import stock_path
    with stock_path():
        yield


def index_pooling_converters(onnx_helper):
    """external_converters for 2x2 max-pooling with indices and index unpooling.

    Returns {Chainer FunctionNode name: converter(params) -> ONNX nodes}. The two share a table
    from each pooling's Chainer indices (by identity) to its ONNX ``Indices`` output and input.
    """
    pooled = {}  # id(Chainer indices array) -> (ONNX Indices name, ONNX pooling input name)

    def max_pooling(params):
        func = params.func
        if tuple(func.ksize) != (2, 2) or tuple(func.stride) != (2, 2) or any(func.pad):
            raise ValueError(f'only 2x2 max-pooling of stride 2 without padding is exported, '
                             f'not ksize {func.ksize} stride {func.stride} pad {func.pad}')
        indices = params.output_names[0] + '_indices'
        pooled[id(func.indexes)] = (indices, params.input_names[0])
        return onnx_helper.make_node('MaxPool', params.input_names,
                                     [params.output_names[0], indices], kernel_shape=[2, 2],
                                     strides=[2, 2], pads=[0, 0, 0, 0], storage_order=0),

    def upsampling(params):
        func = params.func
        if (func.kh, func.kw, func.sy, func.sx, func.ph, func.pw) != (2, 2, 2, 2, 0, 0):
            raise ValueError('only 2x2 index unpooling of stride 2 without padding is exported')
        if id(func.indexes) not in pooled:
            raise ValueError('F.upsampling_2d with indices that no exported max-pooling made')
        indices, pooling_input = pooled[id(func.indexes)]
        graph = onnx_helper.GraphBuilder()
        shape = graph.op('Shape', [pooling_input])
        graph.op_output_named('MaxUnpool', [params.input_names[0], indices, shape],
                              params.output_names, kernel_shape=[2, 2], strides=[2, 2],
                              pads=[0, 0, 0, 0])
        return graph.nodes()

    return {'MaxPoolingND': max_pooling, 'Upsampling2D': upsampling}


class ExportedDIM(chainer.Chain):
    """The graph that is exported: (image, trimap) in [0, 1] -> (alpha, alpha_stage1).

    The input convention of ``nnet.model.network_input`` written with Chainer functions (so that
    it is traced), then the two stages as ``DIM.forward`` runs them (no padding: H and W are
    multiples of 32).
    """

    def __init__(self, model):
        super().__init__()
        with self.init_scope():
            self.dim = model

    def forward(self, image, trimap):
        mean = VGG_MEAN.reshape(1, 3, 1, 1)
        x = F.concat([image - mean, trimap - np.float32(0.5)], axis=1)
        alpha1 = self.dim.encoder_decoder(x)
        alpha2 = self.dim.refinement(x[:, :3], alpha1)
        return alpha2, alpha1


def to_onnx(chain, args, input_names, output_names):
    """Trace ``chain(*args)`` and convert it to an ONNX ModelProto with symbolic N, H and W.

    Args:
        chain: a Chain on the CPU whose outputs are alpha mattes (N, 1, H, W).
        args: example inputs, NumPy float32 (N, C, H, W) with H and W multiples of 32.
        input_names, output_names: names of the graph's inputs and outputs, in order.
    """
    onnx_chainer, onnx_helper = _onnx_chainer()
    shapes = [('N', a.shape[1], 'H', 'W') for a in args]
    with stock_functions(), chainer.using_config('train', False), \
            chainer.using_config('use_ideep', 'never'), warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'external_converters is experimental')
        proto = onnx_chainer.export(
            chain, list(args), opset_version=OPSET, input_names=list(input_names),
            output_names=list(output_names), input_shapes=shapes,
            external_converters=index_pooling_converters(onnx_helper))
    proto.ir_version = IR_VERSION  # readable by runtimes that do not know the newest IR
    # weights are initializers, not inputs a caller could feed
    weights = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    for value in proto.graph.output:  # alpha mattes: (N, 1, H, W)
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for size in ('N', 1, 'H', 'W'):
            dim = shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    return proto


def dim_to_onnx(model, checkpoint_name=''):
    """ONNX ModelProto of a ``DIM`` (see the module docstring), with its metadata."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, DOWNSAMPLING, DOWNSAMPLING)).astype(np.float32)
    trimap = np.full((1, 1, DOWNSAMPLING, DOWNSAMPLING), 128 / 255, np.float32)
    proto = to_onnx(ExportedDIM(model), (image, trimap), INPUTS, OUTPUTS)
    proto.doc_string = ('Deep Image Matting (Xu et al. 2017), two stages. '
                        + PREPROCESSING['size'] + '.')
    meta = {PREPROCESSING_KEY: json.dumps(PREPROCESSING), 'dim_config': json.dumps(model.config),
            'checkpoint': checkpoint_name}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def export_dim(model, path, checkpoint_name=''):
    """Write ``dim_to_onnx(model)`` to ``path`` (atomically); returns the file size in bytes."""
    data = dim_to_onnx(model, checkpoint_name).SerializeToString()

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    atomic_write(path, write)
    return len(data)
