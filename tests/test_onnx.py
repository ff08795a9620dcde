"""ONNX: export with onnx_chainer, run in a real onnxruntime session, compare with Chainer."""
import json
from pathlib import Path

import chainer
import chainer.functions as F
import numpy as np
import onnx
import onnxruntime
import pytest
import skimage.io

import demo
import options
from scripts import export_onnx
from tests.helpers import one_error_line
from utils.images import read_image, read_trimap
from utils.inference import onnx as onnx_export
from utils.inference.backends import ChainerBackend, OnnxRuntimeBackend, load_backend
from utils.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # largest |alpha difference| allowed between the two backends


@pytest.fixture(scope='module')
def exported(ckpt, tmp_path_factory):
    """The session checkpoint (an untrained DIM(0.125)) written by the export command."""
    path = tmp_path_factory.mktemp('onnx') / 'dim.onnx'
    assert export_onnx.main([ckpt, str(path)]) == 0
    return str(path)


def session(model):
    return onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])


def test_file_has_symbolic_sizes_standard_operators_and_its_preprocessing(exported):
    proto = onnx.load(exported)
    onnx.checker.check_model(proto)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims == {'image': ['N', 3, 'H', 'W'], 'trimap': ['N', 1, 'H', 'W'],
                    'alpha': ['N', 1, 'H', 'W'], 'alpha_stage1': ['N', 1, 'H', 'W']}
    ops = {node.op_type for node in proto.graph.node}
    assert {'MaxPool', 'MaxUnpool', 'Conv', 'Relu', 'Sigmoid'} <= ops
    assert all(node.domain in ('', 'ai.onnx') for node in proto.graph.node)
    pools = [n for n in proto.graph.node if n.op_type == 'MaxPool']
    assert len(pools) == 5 and all(len(n.output) == 2 for n in pools)  # Y and Indices
    meta = {p.key: p.value for p in proto.metadata_props}
    pre = json.loads(meta[onnx_export.PREPROCESSING_KEY])
    assert pre['layout'] == 'NCHW' and 'multiples of 32' in pre['size']
    np.testing.assert_allclose(pre['mean']['values_rgb'], [123.68 / 255, 116.779 / 255,
                                                           103.939 / 255], rtol=1e-6)
    assert json.loads(meta['dim_config']) == {'width': 0.125, 'input_scale': 1.0}


def test_index_pooling_and_unpooling_match_chainer_with_ties():
    """Flat ONNX indices computed by MaxPool agree with Chainer's window indices, ties included
    (the first maximum in row-major window order wins in both)."""
    class PoolUnpool(chainer.Chain):
        def forward(self, x):
            y, indices = F.max_pooling_2d(x, 2, stride=2, return_indices=True)
            return F.upsampling_2d(y * 2, indices, 2, 2, outsize=x.shape[2:]),

    rng = np.random.default_rng(0)
    x = np.round(rng.random((2, 3, 32, 64)) * 3).astype(np.float32)  # many equal values
    proto = onnx_export.to_onnx(PoolUnpool(), (x,), ['x'], ['y'])
    sess = session(proto.SerializeToString())
    for h, w in ((32, 64), (64, 32)):
        x = np.round(rng.random((2, 3, h, w)) * 3).astype(np.float32)
        with onnx_export.stock_functions():
            expected = PoolUnpool()(x)[0].array
        np.testing.assert_array_equal(sess.run(None, {'x': x})[0], expected)


def smallest_pooling_margin(model, image, trimap, monkeypatch):
    """The smallest (largest - second largest) / largest over the 2x2 windows of all five
    max-poolings with a positive maximum in ``model.predict(image, trimap)``.

    Where this is near float32's rounding, the two backends may take different winners in a
    window, and unpooling then puts that value one pixel apart: the mattes differ by up to a
    few 1e-4 (measured by flipping one index), a difference that is not an export error.
    """
    import nnet.model
    margins = []

    def recording(h, *args, **kwargs):
        a = np.asarray(chainer.as_array(h), np.float64)
        n, c, height, width = a.shape
        windows = np.sort(a.reshape(n, c, height // 2, 2, width // 2, 2)
                          .transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)
        top = windows[windows[:, 3] > 0]
        margins.append(((top[:, 3] - top[:, 2]) / top[:, 3]).min())
        return pooling(h, *args, **kwargs)

    pooling = nnet.model.max_pooling_2d
    with monkeypatch.context() as m:
        m.setattr(nnet.model, 'max_pooling_2d', recording)
        model.predict(image, trimap)
    assert len(margins) == 5
    return min(margins)


@pytest.mark.parametrize('size', [(53, 77), (64, 96), (33, 130)])
def test_onnxruntime_backend_equals_chainer_at_any_size(exported, ckpt, size, monkeypatch):
    rng = np.random.default_rng(size[0])
    h, w = size
    image = rng.random((h, w, 3)).astype(np.float32)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (h, w), p=[0.3, 0.4, 0.3])
    chainer_backend = ChainerBackend(load_model(ckpt))
    onnx_backend = OnnxRuntimeBackend(exported, exported)
    # The seeded checkpoint and these inputs have no near-tie that the backends could break
    # differently (with unseeded weights this test failed CI once, by 3.6e-4).
    margin = smallest_pooling_margin(chainer_backend.model, image, trimap, monkeypatch)
    assert margin >= 1e-5, f'test input has a pooling near-tie ({margin:.1e}): pick another'
    for refine in (True, False):
        a = chainer_backend.predict(image, trimap, refine)
        b = onnx_backend.predict(image, trimap, refine)
        assert b.shape == (h, w) and b.dtype == np.float32
        assert np.abs(a - b).max() <= TOLERANCE
        assert np.all(b[trimap == 0] == 0) and np.all(b[trimap == 255] == 1)


def test_input_scale_is_part_of_the_exported_graph(tmp_path):
    """A VGG16-started model multiplies its input by 255 before conv1_1: the export does too."""
    from nnet.model import DIM, VGG_INPUT_SCALE
    from utils.training.checkpoint import save_checkpoint
    model = DIM(0.125, input_scale=VGG_INPUT_SCALE)
    model.encoder_decoder.conv1_1.W.array[...] /= VGG_INPUT_SCALE  # activations as at scale 1
    save_checkpoint(str(tmp_path / 'scaled.npz'), model)
    assert export_onnx.main([str(tmp_path / 'scaled.npz'), str(tmp_path / 'scaled.onnx')]) == 0
    rng = np.random.default_rng(3)
    image = rng.random((40, 72, 3)).astype(np.float32)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (40, 72))
    a = ChainerBackend(model).predict(image, trimap, True)
    b = OnnxRuntimeBackend(str(tmp_path / 'scaled.onnx'), 'scaled.onnx').predict(image, trimap, True)
    assert np.abs(a - b).max() <= TOLERANCE
    unscaled = DIM(0.125)
    chainer.serializers.NpzDeserializer(dict(np.load(tmp_path / 'scaled.npz'))).load(unscaled)
    assert np.abs(ChainerBackend(unscaled).predict(image, trimap, True) - a).max() > 1e-3


def test_onnxruntime_equals_chainer_on_a_real_photograph(shared_data):
    """The shipped (trained) model on an alphamatting.com photograph, exported in memory."""
    image = read_image(str(shared_data / 'alphamatting' / 'image' / 'GT01.png'))
    trimap = read_trimap(str(shared_data / 'alphamatting' / 'trimap1' / 'GT01.png'))
    ckpt = options.DEFAULT_CHECKPOINT
    a = load_backend('chainer', ckpt, ckpt).predict(image, trimap)
    b = load_backend('onnxruntime', ckpt, ckpt).predict(image, trimap)
    assert np.abs(a - b).max() <= TOLERANCE
    unknown = trimap == 128
    assert 0.05 < a[unknown].mean() < 0.95  # a real matte, not a constant


def test_demo_with_onnxruntime_writes_the_same_outputs(exported, ckpt, tmp_path, capsys):
    rng = np.random.default_rng(3)
    image = (rng.random((45, 61, 3)) * 255).astype(np.uint8)
    trimap = np.zeros((45, 61), np.uint8)
    trimap[10:35, 15:45] = 128
    trimap[18:27, 25:35] = 255
    skimage.io.imsave(tmp_path / 'p.png', image, check_contrast=False)
    skimage.io.imsave(tmp_path / 't.png', trimap, check_contrast=False)
    mattes = {}
    for backend in ('chainer', 'onnxruntime'):
        extra = ['--onnx', exported] if backend == 'onnxruntime' else []
        out = tmp_path / backend
        code = demo.main([str(tmp_path / 'p.png'), str(tmp_path / 't.png'), '--ckpt_path', ckpt,
                          '--out_dir', str(out), '--backend', backend] + extra)
        stdout, err = capsys.readouterr()
        assert code == 0, err
        assert backend in stdout
        assert sorted(p.name for p in out.iterdir()) == ['p_alpha.png', 'p_cutout.png',
                                                        'p_over_background.png']
        mattes[backend] = skimage.io.imread(out / 'p_alpha.png').astype(int)
    assert np.abs(mattes['chainer'] - mattes['onnxruntime']).max() <= 1


@pytest.mark.parametrize('case', ['missing', 'garbage', 'foreign', 'gpu', 'onnx_with_chainer'])
def test_bad_onnx_options_give_one_error_line(ckpt, tmp_path, capsys, case):
    onnx_path = tmp_path / 'model.onnx'
    args = ['--backend', 'onnxruntime', '--onnx', str(onnx_path)]
    if case == 'garbage':
        onnx_path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif case == 'foreign':  # a valid ONNX model that is not a DIM export
        class Double(chainer.Chain):
            def forward(self, x):
                return x * 2,
        x = np.zeros((1, 1, 32, 32), np.float32)
        onnx_path.write_bytes(onnx_export.to_onnx(Double(), (x,), ['x'], ['y'])
                              .SerializeToString())
    elif case == 'gpu':
        args = ['--backend', 'onnxruntime', '--gpu_id', '0']
    elif case == 'onnx_with_chainer':
        args = ['--onnx', str(onnx_path)]
    code = demo.main(['--ckpt_path', ckpt, '--out_dir', str(tmp_path / 'out')] + args)
    _, err = capsys.readouterr()
    assert code == 1 and one_error_line(err), err
    expected = {'missing': 'not found', 'garbage': 'cannot load', 'foreign': 'not those of',
                'gpu': 'CPU', 'onnx_with_chainer': '--backend onnxruntime'}[case]
    assert expected in err
    assert not (tmp_path / 'out').exists()
