"""What the GPU check relies on, on the CPU: the float16 VGG16 file, its helpers, the demo without
pymatting, and a clear line for --gpu_id where CuPy is missing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import one_error_line
from utils.images import read_image, read_trimap

ROOT = Path(__file__).resolve().parents[1]
HELPER = str(ROOT / 'scripts' / 'gpu_check.py')
sys.path.insert(0, str(ROOT / 'scripts'))
import gpu_check  # noqa: E402


def run(args, env=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=ROOT,
                          env=env, **kwargs)


def test_float16_vgg16_file_loads_within_float16_rounding(tmp_path):
    from nnet.model import EncoderDecoder
    from utils.training.vgg import read_vgg16_params
    out = tmp_path / 'vgg16.npz'
    gpu_check.pack_vgg16(str(out))
    assert out.stat().st_size < 30 * 2 ** 20  # half of the 56 MiB in float32
    reference = read_vgg16_params('hed')
    loaded = read_vgg16_params(str(out))
    assert sorted(loaded) == sorted(reference) and len(loaded) == 13
    for name, (W, b) in reference.items():
        W16, b16 = loaded[name]
        assert W16.dtype == np.float32 and W16.shape == W.shape and b16.shape == b.shape
        assert np.all(np.abs(W16 - W) <= np.abs(W) * 2.0 ** -11 + 2.0 ** -25), name
        assert np.all(np.abs(b16 - b) <= np.abs(b) * 2.0 ** -11 + 2.0 ** -25), name
    assert reference['conv1_1'][0].shape == (64, 3, 3, 3)  # (out, in, kh, kw)
    assert reference['conv5_3'][0].shape == (512, 512, 3, 3)
    assert EncoderDecoder(1.0).load_vgg16(loaded)[-1] == 'conv5_3'


def test_image_helper_resizes_photo_and_trimap(tmp_path):
    result = run([HELPER, 'image', str(tmp_path), '160', '90'])
    assert result.returncode == 0, result.stderr
    image_path, trimap_path = result.stdout.split()
    image, trimap = read_image(image_path), read_trimap(trimap_path)
    assert image.shape == (90, 160, 3) and trimap.shape == (90, 160)
    assert set(np.unique(trimap)) == {0, 128, 255}


def test_demo_without_pymatting_warns_and_writes_everything(tmp_path):
    code = ('import sys; sys.modules["pymatting"] = None; import demo; '
            f'sys.exit(demo.main(["--out_dir", {str(tmp_path)!r}]))')
    result = run(['-c', code])
    assert result.returncode == 0, result.stderr
    assert 'warning: foreground colours not estimated' in result.stderr
    assert 'Traceback' not in result.stderr
    cutout = read_image(str(tmp_path / 'astronaut_image_cutout.png'))
    image = read_image(str(ROOT / 'imgs' / 'astronaut_image.png'))
    assert np.abs(cutout[..., :3] - image).max() < 1 / 255 + 1e-6  # the image's own colours
    assert (tmp_path / 'astronaut_image_over_background.png').stat().st_size > 0


def test_gpu_id_without_cupy_is_one_line(tmp_path, composition_root):
    from chainer.backends import cuda
    if cuda.available:
        pytest.skip('CuPy is usable here')
    for args in (['train.py', '--dataset_root', composition_root, '--log_root',
                  str(tmp_path / 'run'), '--max_iter', '1', '--gpu_id', '0'],
                 ['demo.py', '--gpu_id', '0', '--out_dir', str(tmp_path / 'demo')]):
        result = run(args)
        assert result.returncode == 1
        assert one_error_line(result.stderr), result.stderr
        assert '--gpu_id 0' in result.stderr and '--gpu_id -1' in result.stderr
    assert not (tmp_path / 'demo').exists()


def test_run_and_train_speed_report_a_real_training(tmp_path, composition_root):
    results = tmp_path / 'results.jsonl'
    log_root = tmp_path / 'run'
    result = run([HELPER, 'run', 'train.py', '--dataset_root', composition_root, '--log_root',
                  str(log_root), '--width', '0.125', '--H', '64', '--crop_sizes',
                  '64', '--batch_size', '2', '--max_iter', '6', '--log_frq', '2',
                  '--ckpt_frq', '6', '--val_frq', '6'], env={'GPU_CHECK_RESULTS': str(results)})
    assert result.returncode == 0, result.stderr
    assert '[gpu_check] train.py: exit 0' in result.stdout
    assert 'GPU memory: - (no GPU used)' in result.stdout
    speed = run([HELPER, 'train-speed', str(log_root)], env={'GPU_CHECK_RESULTS': str(results)})
    assert speed.returncode == 0, speed.stderr
    assert '6 iterations in' in speed.stdout
    entries = [json.loads(line) for line in results.read_text().splitlines()]
    assert [e['step'] for e in entries] == ['train.py', 'train speed']
    assert entries[0]['exit'] == 0 and entries[1]['iterations'] == 6
    assert entries[1]['it_per_s_median'] > 0
    failed = run([HELPER, 'run', 'train.py', '--dataset_root', str(tmp_path / 'none')])
    assert failed.returncode == 1 and '[gpu_check] train.py: exit 1' in failed.stdout
