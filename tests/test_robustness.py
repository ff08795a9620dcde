"""Robustness: untrusted files, bad input across the three faces, kills mid-training, divergence."""
import hashlib
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import skimage.io

import demo
import evaluate
import train
from nnet.model import DIM
from utils.data import synthetic
from utils.errors import InputError
from utils.images import composite, write_png
from utils.loader import generate_trimap
from utils.training.checkpoint import load_checkpoint, model_arrays, save_checkpoint
from utils.training.vgg import read_vgg16_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_TRAIN = ['--width', '0.125', '--H', '64', '--crop_sizes', '64', '96',
              '--batch_size', '2', '--seed', '0']


class RunsCode:
    """Unpickling this touches a marker file: stands in for arbitrary code in a crafted file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def crafted_npz(path, marker, base_arrays):
    arrays = dict(base_arrays)
    arrays['payload'] = np.array([RunsCode(marker)], dtype=object)
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- untrusted files
def test_crafted_checkpoint_cannot_run_code(tmp_path):
    model = DIM(0.125)
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.npz'
    arrays = model_arrays(model)
    arrays['__config__'] = np.array(json.dumps(model.config))
    crafted_npz(path, marker, arrays)
    with pytest.raises(InputError, match='pickl'):
        load_checkpoint(str(path))
    assert not marker.exists()
    # the same file through Chainer's own loader runs the payload: the threat is real
    crafted_npz(path, marker, {'payload_only': np.zeros(1)})
    with np.load(path, allow_pickle=True) as f:
        f['payload']
    assert marker.exists()


def test_crafted_snapshot_is_skipped_on_resume(tmp_path, composition_root):
    log_root = tmp_path / 'run'
    assert train.main(['--dataset_root', composition_root, '--log_root', str(log_root),
                       '--max_iter', '2', '--ckpt_frq', '2', '--val_frq', '2'] + TINY_TRAIN) == 0
    marker = tmp_path / 'pwned'
    with np.load(log_root / 'snapshot_iter_2') as f:
        crafted_npz(log_root / 'snapshot_iter_9', marker, {k: f[k] for k in f.files})
    assert train.main(['--dataset_root', composition_root, '--log_root', str(log_root),
                       '--max_iter', '3', '--ckpt_frq', '3', '--val_frq', '3'] + TINY_TRAIN) == 0
    assert not marker.exists()
    assert json.load(open(log_root / 'log'))[-1]['iteration'] == 3  # resumed from 2, not 9


def test_crafted_vgg_file_cannot_run_code(tmp_path):
    marker = tmp_path / 'pwned'
    crafted_npz(tmp_path / 'vgg.npz', marker, {'conv1_1/W': np.zeros(1)})
    with pytest.raises(InputError):
        read_vgg16_params(str(tmp_path / 'vgg.npz'))
    assert not marker.exists()


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope='module')
def case_files(tmp_path_factory):
    """Real files for the bad-input cases: a good image/trimap pair, a checkpoint, a dataset."""
    d = tmp_path_factory.mktemp('cases')
    rng = np.random.default_rng(3)
    alpha = synthetic.make_alpha(rng, 48, 64)
    image = composite(alpha, synthetic.make_foreground(rng, 48, 64),
                      synthetic.make_background(rng, 48, 64))
    trimap = generate_trimap(alpha, rng, (3, 3))
    write_png(str(d / 'image.png'), image)
    write_png(str(d / 'trimap.png'), trimap)
    write_png(str(d / 'small_trimap.png'), trimap[:40])
    write_png(str(d / 'all_known.png'), np.where(trimap == 128, 255, trimap).astype(np.uint8))
    write_png(str(d / 'all_unknown.png'), np.full_like(trimap, 128))
    write_png(str(d / 'odd_values.png'), np.where(trimap == 128, 100, trimap).astype(np.uint8))
    write_png(str(d / 'rgba.png'), np.dstack([np.round(image * 255), np.full((48, 64), 200)])
              .astype(np.uint8))
    write_png(str(d / 'gray.png'), image.mean(axis=2))
    skimage.io.imsave(d / 'gray16.png', (image.mean(axis=2) * 65535).astype(np.uint16),
                      check_contrast=False)
    write_png(str(d / 'one_pixel.png'), np.zeros((1, 1, 3)))
    write_png(str(d / 'one_pixel_trimap.png'), np.full((1, 1), 128, np.uint8))
    (d / 'empty.png').write_bytes(b'')
    (d / 'text.png').write_text('this is not a picture\n')
    (d / 'truncated.png').write_bytes((d / 'image.png').read_bytes()[:200])
    (d / 'folder.png').mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((4200, 4100), np.uint8)).save(d / 'huge.png')
    save_checkpoint(str(d / 'w0125.npz'), DIM(0.125))
    nan_model = DIM(0.125)
    nan_model.encoder_decoder.conv2_1.W.array[0, 0, 0, 0] = np.nan
    save_checkpoint(str(d / 'nan.npz'), nan_model)
    inf_model = DIM(0.125)
    inf_model.refinement.refine1.b.array[0] = np.inf
    save_checkpoint(str(d / 'inf.npz'), inf_model)
    (d / 'garbage.npz').write_bytes(os.urandom(300))
    for sub in ('input', 'gt', 'trimap/t'):
        (d / 'dataset' / sub).mkdir(parents=True)
    for name in ('a.png', 'b.png'):
        shutil.copy(d / 'image.png', d / 'dataset' / 'input' / name)
        shutil.copy(d / 'trimap.png', d / 'dataset' / 'trimap' / 't' / name)
    write_png(str(d / 'dataset' / 'gt' / 'a.png'), alpha)  # b.png has no ground truth
    return d


def snapshot_of_inputs(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


I, T = 'f:image.png', 'f:trimap.png'  # 'f:NAME' is the file NAME among case_files
BAD_INPUTS = [
    # (face, arguments, expected: 'ok' or a piece of the one-line error)
    ('demo', ['f:missing.png', T], 'no such file'),
    ('demo', ['f:folder.png', T], 'is a directory'),
    ('demo', ['f:empty.png', T], 'file is empty'),
    ('demo', ['f:truncated.png', T], 'cannot be read'),
    ('demo', ['f:text.png', T], 'cannot be read'),
    ('demo', [I, 'f:small_trimap.png'], 'must match'),
    ('demo', [I, 'f:all_known.png'], 'no unknown'),
    ('demo', [I, 'f:all_unknown.png'], 'ok'),
    ('demo', [I, 'f:odd_values.png'], 'ok'),
    ('demo', ['f:one_pixel.png', 'f:one_pixel_trimap.png'], 'ok'),
    ('demo', ['f:huge.png', T], 'megapixel limit'),
    ('demo', ['f:rgba.png', T], 'ok'),
    ('demo', ['f:gray.png', T], 'ok'),
    ('demo', ['f:gray16.png', T], 'ok'),
    ('demo', [I, T, '--ckpt_path', 'f:missing.npz'], 'not found'),
    ('demo', [I, T, '--ckpt_path', 'f:garbage.npz'], 'cannot read checkpoint'),
    ('demo', [I, T, '--ckpt_path', 'f:nan.npz'], 'NaN or Inf'),
    ('demo', [I, T, '--ckpt_path', 'f:inf.npz'], 'NaN or Inf'),
    ('demo', [I, T, '--width', '0.25'], 'width=0.125'),
    ('demo', [I, T, '--width', '-1'], 'must be > 0'),
    ('demo', [I, T, '--gpu_id', 'x'], 'not a valid int'),
    ('train', ['--dataset_root', 'f:dataset'], 'ground-truth alpha missing'),
    ('train', ['--dataset_root', 'f:missing_dir'], 'not found'),
    ('train', ['--dataset_root', 'f:dataset', '--batch_size', '-2'], 'must be > 0'),
    ('train', ['--dataset_root', 'f:dataset', '--max_iter', 'ten'], 'not a valid int'),
    ('train', ['--dataset_root', 'f:dataset', '--base_lr', 'nan'], 'finite'),
    ('train', ['--dataset_root', 'f:dataset', '--init_from', 'f:nan.npz'], 'NaN or Inf'),
    ('evaluate', ['f:dataset', '--method', 'closed_form'], 'ground-truth alpha missing'),
    ('evaluate', ['f:missing_dir', '--method', 'closed_form'], 'not found'),
    ('evaluate', ['f:dataset', '--names', 'a', '--ckpt_path', 'f:garbage.npz'], 'cannot read'),
]


@pytest.mark.parametrize('face,arguments,expected', BAD_INPUTS,
                         ids=[f'{f}-{"-".join(a)[:40]}' for f, a, _ in BAD_INPUTS])
def test_bad_input_works_or_fails_with_one_line(case_files, tmp_path, capsys, face, arguments,
                                                expected):
    d = case_files
    args = [str(d / a[2:]) if a.startswith('f:') else a for a in arguments]
    if face == 'demo':
        args += ['--out_dir', str(tmp_path / 'out')]
        if '--ckpt_path' not in args:
            args += ['--ckpt_path', str(d / 'w0125.npz')]
    elif face == 'train':
        args += ['--log_root', str(tmp_path / 'log'), '--max_iter', '1'] + TINY_TRAIN
    else:
        args += ['--out_dir', str(tmp_path / 'out')]
    before = snapshot_of_inputs(d)
    main = {'demo': demo.main, 'train': train.main, 'evaluate': evaluate.main}[face]
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert snapshot_of_inputs(d) == before, 'an input file changed'
    errors = [line for line in err.strip().splitlines() if not line.startswith('warning:')]
    if expected == 'ok':
        assert code == 0, err
        assert (tmp_path / 'out' / (pathlib.Path(args[0]).stem + '_alpha.png')).exists()
    else:
        assert code != 0
        assert len(errors) == 1 and expected in errors[0], err
        assert 'Traceback' not in err


def test_bad_input_from_the_shell_is_one_line(case_files):
    proc = subprocess.run([sys.executable, str(ROOT / 'demo.py'), str(case_files / 'text.png'),
                           str(case_files / 'trimap.png'), '--ckpt_path',
                           str(case_files / 'w0125.npz')], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and 'Traceback' not in proc.stderr


# A real SIGINT delivered inside imageio's Pillow plugin constructor, before it sets its
# attributes: the half-built plugin's __del__ then fails (as in a Ctrl-C at a random moment)
CTRL_C_IN_DECODER = """
import os, signal, sys
from imageio.plugins.pillow import PillowPlugin
built = PillowPlugin.__init__
def interrupted(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    built(self, *args, **kwargs)
PillowPlugin.__init__ = interrupted
import demo
sys.exit(demo.main(sys.argv[1:]))
"""


def test_ctrl_c_inside_an_image_decoder_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-c', CTRL_C_IN_DECODER, str(ROOT / 'imgs' / 'synthetic_image.png'),
         str(ROOT / 'imgs' / 'synthetic_trimap.png'), '--out_dir', str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.split() == ['interrupted'], proc.stderr


# A real SIGINT as the script starts importing Chainer (a second or more into its start)
CTRL_C_WHILE_IMPORTING = """
import os, runpy, signal, sys
class CtrlCAtChainer:
    def find_spec(self, name, path=None, target=None):
        if name == 'chainer':
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlCAtChainer())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


@pytest.mark.parametrize('script', ['train.py', 'demo.py', 'evaluate.py', 'scripts/export_onnx.py'])
def test_ctrl_c_while_a_script_imports_is_one_line(script):
    proc = subprocess.run([sys.executable, '-c', CTRL_C_WHILE_IMPORTING, str(ROOT / script)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.split() == ['interrupted'], proc.stderr


# --------------------------------------------------------------------------- kills, divergence
def all_files_intact(log_root):
    """Every final-named file in the log folder reads back completely."""
    for path in pathlib.Path(log_root).rglob('*'):
        if not path.is_file() or path.name.startswith('.tmp') or 'tmp' in path.parent.name:
            continue
        if path.name.startswith('snapshot_iter_'):
            with np.load(path, allow_pickle=False) as f:
                [f[k] for k in f.files]
        elif path.name.startswith('model_') and path.suffix == '.npz':
            load_checkpoint(str(path))
        elif path.suffix == '.png':
            skimage.io.imread(path)
        elif path.name in ('log', 'options.json'):
            json.load(open(path))


def test_sigkill_at_random_moments_loses_at_most_one_interval(tmp_path, composition_root):
    log_root = tmp_path / 'killed'
    ckpt_frq = 3
    cmd = [sys.executable, str(ROOT / 'train.py'), '--dataset_root', composition_root,
           '--log_root', str(log_root), '--max_iter', '1000', '--ckpt_frq', str(ckpt_frq),
           '--val_frq', '4', '--log_frq', '1'] + TINY_TRAIN
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(0)
    for attempt in range(4):
        done_before = (json.load(open(log_root / 'log'))[-1]['iteration']
                       if (log_root / 'log').exists() else 0)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        deadline = time.time() + 120
        # wait until this run has made progress past where the last one stopped, then kill
        while time.time() < deadline:
            if (log_root / 'log').exists():
                try:
                    if json.load(open(log_root / 'log'))[-1]['iteration'] >= done_before + 4:
                        break
                except (ValueError, IndexError):
                    pass
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if attempt:
            resumed = [line for line in out.splitlines() if 'resuming from' in line]
            assert resumed, out[-500:]
            resumed_at = int(resumed[0].split()[-1])
            assert resumed_at >= done_before - ckpt_frq
        last_logged = json.load(open(log_root / 'log'))[-1]['iteration']
        all_files_intact(log_root)
        assert last_logged > done_before
    assert train.main(['--dataset_root', composition_root, '--log_root', str(log_root),
                       '--max_iter', str(last_logged + 2), '--ckpt_frq', str(ckpt_frq),
                       '--val_frq', '4', '--log_frq', '1'] + TINY_TRAIN) == 0
    all_files_intact(log_root)


def test_diverging_training_stops_and_keeps_last_good_snapshot(tmp_path, composition_root,
                                                               capsys):
    log_root = tmp_path / 'diverge'
    code = train.main(['--dataset_root', composition_root, '--log_root', str(log_root),
                       '--max_iter', '50', '--ckpt_frq', '1', '--val_frq', '50',
                       '--base_lr', '1e30'] + TINY_TRAIN)
    err = capsys.readouterr().err
    assert code == 1
    assert 'parameters became nan' in err.lower() or 'parameters became inf' in err.lower(), err
    snapshots = sorted(int(p.name.split('_')[-1]) for p in log_root.glob('snapshot_iter_*'))
    failed_at = int(err.split('at iteration ')[1].split(';')[0])
    assert snapshots and snapshots[-1] == failed_at - 1
    all_files_intact(log_root)
