"""Checkpoints reload into the same network; VGG16 weights land where they belong."""
import os

import numpy as np
import pytest

from nnet.model import DIM
from utils.errors import InputError
from utils.training.checkpoint import load_checkpoint, save_checkpoint
from utils.training.vgg import VGG_CONV_LAYERS, read_vgg16_params


def test_checkpoint_roundtrip_rebuilds_same_network(tmp_path, rng):
    model = DIM(0.125)
    path = tmp_path / 'model.npz'
    save_checkpoint(str(path), model)
    loaded = load_checkpoint(str(path))
    assert loaded.config == {'width': 0.125, 'input_scale': 1.0}
    for (name, p), (name2, q) in zip(sorted(model.namedparams()), sorted(loaded.namedparams())):
        assert name == name2
        np.testing.assert_array_equal(p.array, q.array)
    image = rng.random((40, 40, 3), dtype=np.float32)
    trimap = np.full((40, 40), 128, np.uint8)
    np.testing.assert_array_equal(model.predict(image, trimap), loaded.predict(image, trimap))


def test_checkpoint_keeps_input_scale_and_older_ones_have_one(tmp_path, rng):
    import json
    model = DIM(0.125, input_scale=255.0)
    path = tmp_path / 'model.npz'
    save_checkpoint(str(path), model)
    loaded = load_checkpoint(str(path))
    assert loaded.encoder_decoder.input_scale == 255.0
    image = rng.random((40, 40, 3), dtype=np.float32)
    trimap = np.full((40, 40), 128, np.uint8)
    np.testing.assert_array_equal(model.predict(image, trimap), loaded.predict(image, trimap))
    with np.load(path) as f:  # a checkpoint written before input_scale existed
        arrays = {k: f[k] for k in f.files}
    arrays['__config__'] = np.array(json.dumps({'width': 0.125}))
    np.savez(tmp_path / 'old.npz', **arrays)
    old = load_checkpoint(str(tmp_path / 'old.npz'))
    assert old.encoder_decoder.input_scale == 1.0
    assert np.abs(old.predict(image, trimap) - model.predict(image, trimap)).max() > 1e-3


def test_checkpoint_of_other_width_is_refused(tmp_path):
    path = tmp_path / 'model.npz'
    save_checkpoint(str(path), DIM(0.125))
    with pytest.raises(InputError, match='width'):
        load_checkpoint(str(path), expect_config={'width': 0.25})


def write_vgg16_npz(path, rng, with_fc6=True):
    """A VGG16 weight file in Chainer's layout (random values, real shapes)."""
    arrays = {}
    in_ch = 3
    for name in VGG_CONV_LAYERS:
        out_ch = {'1': 64, '2': 128, '3': 256, '4': 512, '5': 512}[name[4]]
        arrays[f'{name}/W'] = rng.standard_normal((out_ch, in_ch, 3, 3), dtype=np.float32)
        arrays[f'{name}/b'] = rng.standard_normal(out_ch, dtype=np.float32)
        in_ch = out_ch
    if with_fc6:  # fewer output units than VGG16's 4096 keep the file small; 512 are used
        arrays['fc6/W'] = rng.standard_normal((600, 512 * 49), dtype=np.float32)
        arrays['fc6/b'] = rng.standard_normal(600, dtype=np.float32)
    np.savez(path, **arrays)
    return arrays


def test_vgg16_weights_go_where_they_belong(tmp_path, rng):
    path = tmp_path / 'vgg16.npz'
    arrays = write_vgg16_npz(path, rng)
    model = DIM(1.0)
    copied = model.encoder_decoder.load_vgg16(read_vgg16_params(str(path)))
    assert copied == VGG_CONV_LAYERS + ['conv6']
    ed = model.encoder_decoder
    w11 = ed.conv1_1.W.array
    np.testing.assert_allclose(w11[:, 0], arrays['conv1_1/W'][:, 2] * 255, rtol=1e-6)  # R <- BGR[2]
    np.testing.assert_allclose(w11[:, 2], arrays['conv1_1/W'][:, 0] * 255, rtol=1e-6)  # B <- BGR[0]
    assert np.all(w11[:, 3] == 0)  # trimap channel
    caffe_scale = DIM(1.0, input_scale=255.0).encoder_decoder  # as train.py builds it
    caffe_scale.load_vgg16(read_vgg16_params(str(path)))
    np.testing.assert_array_equal(caffe_scale.conv1_1.W.array[:, :3], arrays['conv1_1/W'][:, ::-1])
    np.testing.assert_array_equal(ed.conv4_2.W.array, arrays['conv4_2/W'])
    np.testing.assert_array_equal(ed.conv5_3.b.array, arrays['conv5_3/b'])
    fc6 = arrays['fc6/W'].reshape(600, 512, 7, 7)
    np.testing.assert_array_equal(ed.conv6.W.array, fc6[:512, :, 2:5, 2:5])
    np.testing.assert_array_equal(ed.conv6.b.array, arrays['fc6/b'][:512])


@pytest.mark.parametrize('input_scale', [1.0, 255.0])
def test_vgg16_conv1_1_matches_vgg_on_bgr_input(tmp_path, rng, input_scale):
    """Our RGB [0,1] input through the loaded conv1_1 (and its ReLU) equals VGG16 on BGR 0..255
    minus mean."""
    import chainer.functions as F

    from nnet.model import network_input
    path = tmp_path / 'vgg16.npz'
    arrays = write_vgg16_npz(path, rng, with_fc6=False)
    model = DIM(1.0, input_scale=input_scale)
    model.encoder_decoder.load_vgg16(read_vgg16_params(str(path)))
    image = rng.random((1, 3, 6, 6), dtype=np.float32)
    trimap = rng.choice([0, 128 / 255, 1], size=(1, 1, 6, 6)).astype(np.float32)
    ours = model.encoder_decoder.conv1_1(network_input(image, trimap) * input_scale).array
    bgr = image[:, ::-1] * 255 - np.array([103.939, 116.779, 123.68], np.float32).reshape(1, 3, 1, 1)
    vgg = F.relu(F.convolution_2d(bgr, arrays['conv1_1/W'], arrays['conv1_1/b'], pad=1)).array
    np.testing.assert_allclose(ours, vgg, rtol=1e-3, atol=1e-2)


def test_vgg16_needs_full_width(tmp_path, rng):
    path = tmp_path / 'vgg16.npz'
    write_vgg16_npz(path, rng, with_fc6=False)
    with pytest.raises(ValueError, match='width 1.0'):
        DIM(0.5).encoder_decoder.load_vgg16(read_vgg16_params(str(path)))


def test_vgg16_file_without_layers_is_refused(tmp_path):
    path = tmp_path / 'other.npz'
    np.savez(path, something=np.zeros(3))
    with pytest.raises(InputError, match='not a VGG16 weight file'):
        read_vgg16_params(str(path))


def test_float16_shipped_checkpoint_predicts_within_one_level(ckpt, tmp_path, rng):
    """A checkpoint shipped as float16 loads as float32 and mattes like the float32 one
    (mean difference at most 1/255 in the unknown region)."""
    from scripts.ship_checkpoint import main as ship
    shipped = tmp_path / 'shipped.npz'
    assert ship([ckpt, str(shipped)]) == 0
    with np.load(shipped, allow_pickle=False) as f:
        assert {f[k].dtype for k in f.files if k != '__config__'} == {np.dtype(np.float16)}
    full, half = load_checkpoint(ckpt), load_checkpoint(str(shipped))
    assert half.encoder_decoder.conv1_1.W.dtype == np.float32
    image = rng.random((70, 90, 3)).astype(np.float32)
    trimap = np.full((70, 90), 128, np.uint8)
    trimap[:10] = 0
    trimap[-10:] = 255
    diff = np.abs(full.predict(image, trimap) - half.predict(image, trimap))[trimap == 128]
    assert diff.mean() <= 1 / 255
    assert os.path.getsize(shipped) < 0.7 * os.path.getsize(ckpt)


def test_identity_refinement_passes_stage_one_alpha_through(ckpt, tmp_path, rng):
    from scripts.ship_checkpoint import main as ship
    shipped = tmp_path / 'stage1.npz'
    assert ship([ckpt, str(shipped), '--identity_refinement']) == 0
    model = load_checkpoint(str(shipped))
    image = rng.random((64, 64, 3)).astype(np.float32)
    trimap = np.full((64, 64), 128, np.uint8)
    np.testing.assert_allclose(model.predict(image, trimap, refine=True),
                               model.predict(image, trimap, refine=False), atol=1e-7)


def test_shipping_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    from scripts.ship_checkpoint import main as ship
    assert ship([str(tmp_path / 'nope.npz'), str(tmp_path / 'out.npz')]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'checkpoint not found' in err
    assert not (tmp_path / 'out.npz').exists()
