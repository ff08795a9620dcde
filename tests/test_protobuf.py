"""Chainer's Caffe converter (VGG16 .caffemodel -> .npz) beside protobuf 7, which onnx needs.

Chainer's caffe_pb2 was generated for protobuf 3; protobuf >= 4 refuses such modules with its
default (upb) implementation and accepts them with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python,
the setting the conversion command of docs/differences.md uses. Each case runs in a fresh interpreter (the setting
is read when protobuf is first imported).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONVERT = '''
import sys
import nnet.compat  # noqa: F401
import numpy as np
from chainer.links.caffe import CaffeFunction
from chainer.links.caffe.protobuf3 import caffe_pb2

W = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) / 7
net = caffe_pb2.NetParameter()
layer = net.layer.add()
layer.name, layer.type = 'conv1_1', 'Convolution'
layer.bottom.append('data')
layer.top.append('conv1_1')
layer.convolution_param.num_output = 2
layer.convolution_param.kernel_size.append(3)
layer.convolution_param.pad.append(1)
for array in (W, np.array([0.5, -1.5], np.float32)):
    blob = layer.blobs.add()
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
with open(sys.argv[1], 'wb') as f:
    f.write(net.SerializeToString())
link = CaffeFunction(sys.argv[1]).conv1_1
np.testing.assert_array_equal(link.W.array, W)
np.testing.assert_array_equal(link.b.array, [0.5, -1.5])
print('converted')
'''


def run(tmp_path, python_protobuf):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION', None)
    if python_protobuf:
        env['PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION'] = 'python'
    return subprocess.run([sys.executable, '-c', CONVERT, str(tmp_path / 'tiny.caffemodel')],
                          capture_output=True, text=True, env=env, timeout=300)


def test_caffe_converter_works_with_the_python_protobuf(tmp_path):
    result = run(tmp_path, python_protobuf=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'converted' in result.stdout


def test_without_the_setting_protobuf_says_what_to_do(tmp_path):
    import google.protobuf
    if int(google.protobuf.__version__.split('.')[0]) < 4:
        pytest.skip('protobuf 3 reads Chainer\'s caffe_pb2 as it is')
    result = run(tmp_path, python_protobuf=False)
    assert result.returncode != 0
    assert 'PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python' in result.stderr
    assert not (tmp_path / 'tiny.caffemodel').exists()
