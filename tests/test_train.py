"""Real (tiny) training runs on generated data: the loss falls, outputs appear, runs resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import train
from utils.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--width', '0.125', '--H', '64', '--crop_sizes', '64', '96',
        '--batch_size', '4', '--log_frq', '5', '--seed', '0']


@pytest.fixture
def dataset(composition_root):
    return composition_root


def read_log(log_root):
    with open(os.path.join(log_root, 'log')) as f:
        return json.load(f)


def test_training_lowers_loss_and_writes_outputs(dataset, tmp_path):
    log_root = str(tmp_path / 'run')
    code = train.main(['--dataset_root', dataset, '--log_root', log_root, '--max_iter', '60',
                       '--base_lr', '3e-3', '--ckpt_frq', '30', '--val_frq', '30',
                       '--augment'] + TINY)  # (the paper's augmentation alone: a steadier loss)
    assert code == 0
    losses = [e['main/loss'] for e in read_log(log_root)]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.92 * np.mean(losses[:3]), losses
    for name in ('loss.png', 'options.json', 'snapshot_iter_60', 'model_iter_30.npz',
                 'model_final.npz', 'images/val_iter_0000030.png'):
        assert os.path.getsize(os.path.join(log_root, name)) > 0, name
    assert 'validation/main/SAD' in read_log(log_root)[-1]
    saved = json.load(open(os.path.join(log_root, 'options.json')))
    assert saved['base_lr'] == 3e-3 and saved['stage'] == 1
    final = load_checkpoint(os.path.join(log_root, 'model_final.npz'))
    assert final.config == {'width': 0.125, 'input_scale': 1.0}


def test_stage_two_starts_from_stage_one_and_keeps_encoder(dataset, tmp_path):
    first = str(tmp_path / 's1')
    assert train.main(['--dataset_root', dataset, '--log_root', first, '--max_iter', '2',
                       '--ckpt_frq', '2', '--val_frq', '2'] + TINY) == 0
    init = os.path.join(first, 'model_final.npz')
    second = str(tmp_path / 's2')
    assert train.main(['--dataset_root', dataset, '--log_root', second, '--max_iter', '3',
                       '--stage', 'refinement', '--init_from', init, '--base_lr', '1e-3',
                       '--ckpt_frq', '3', '--val_frq', '3'] + TINY) == 0
    before, after = load_checkpoint(init), load_checkpoint(os.path.join(second, 'model_final.npz'))
    np.testing.assert_array_equal(before.encoder_decoder.conv3_1.W.array,
                                  after.encoder_decoder.conv3_1.W.array)
    assert not np.array_equal(before.refinement.refine2.W.array, after.refinement.refine2.W.array)
    assert 'main/loss_alpha_stage1' in read_log(second)[-1]


def test_interrupted_run_resumes_from_its_snapshot(dataset, tmp_path):
    log_root = str(tmp_path / 'resume')
    cmd = [sys.executable, str(ROOT / 'train.py'), '--dataset_root', dataset, '--log_root',
           log_root, '--max_iter', '1000', '--ckpt_frq', '4', '--val_frq', '1000'] + TINY
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Ctrl-C's default action in the run even where pytest itself ignores SIGINT (a background
    # job of a script, or nohup: ignored signals stay ignored in children, and Python then
    # installs no KeyboardInterrupt handler), as for a user at a terminal
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    snapshot = os.path.join(log_root, 'snapshot_iter_8')
    deadline = time.time() + 120
    while not os.path.exists(snapshot) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # (no run left behind when it does not stop)
        proc.wait()
    assert proc.returncode == 130, err.decode()
    assert b'resume' in err and b'Traceback' not in err
    snapshots = sorted(int(f.split('_')[-1]) for f in os.listdir(log_root)
                       if f.startswith('snapshot_iter_'))
    last = snapshots[-1]
    assert last >= 8
    assert train.main(['--dataset_root', dataset, '--log_root', log_root, '--max_iter',
                       str(last + 5), '--ckpt_frq', '4', '--val_frq', '1000'] + TINY) == 0
    iterations = [e['iteration'] for e in read_log(log_root)]
    assert iterations[-1] == last + 5
    assert iterations == sorted(set(iterations))  # continued, not restarted from 0


def test_bad_options_give_one_line(tmp_path, dataset):
    for args, needle in ((['--dataset_root', str(tmp_path / 'none')], 'not found'),
                         (['--dataset_root', dataset, '--batch_size', '-3'], 'must be > 0'),
                         (['--dataset_root', dataset, '--base_lr', 'abc'], 'not a valid float')):
        proc = subprocess.run([sys.executable, str(ROOT / 'train.py'), '--log_root',
                               str(tmp_path / 'bad')] + args, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


def test_val_names_hold_back_photographs_from_any_root(dataset, tmp_path):
    from tests.test_loader import make_seed_dataset
    seed_root = make_seed_dataset(tmp_path / 'seed', count=3)
    args = train.options.train_parser().parse_args(
        ['--dataset_root', dataset, str(seed_root), '--val_names', 'im1', '--H', '32',
         '--crop_sizes', '32'])
    training, validation = train.build_datasets(args)
    train_names = {training.raw[i]['name'] for i in range(len(training.raw))}
    assert 'im1.png' not in train_names and {'im0.png', 'im2.png'} <= train_names
    assert len(validation) == 1 and validation._dataset.raw[0]['name'] == 'im1.png'


def test_whole_image_validation_scores_as_evaluate_does(tmp_path):
    """Held-back photographs from two roots are scored whole during training; the last entry
    equals what evaluate.py reports for the final checkpoint (same scoring)."""
    import evaluate
    from tests.test_loader import make_seed_dataset
    roots = [make_seed_dataset(tmp_path / f'root{i}', count=3) for i in range(2)]
    for i in range(3):  # distinct names per root
        for sub in ('input', 'gt', 'trimap/wide'):
            os.rename(roots[1] / sub / f'im{i}.png', roots[1] / sub / f'b{i}.png')
    log_root = str(tmp_path / 'run')
    assert train.main(['--dataset_root', str(roots[0]), str(roots[1]), '--log_root', log_root,
                       '--max_iter', '4', '--ckpt_frq', '4', '--val_frq', '4',
                       '--val_whole_frq', '2', '--val_names', 'im0', 'b1'] + TINY) == 0
    history = json.load(open(os.path.join(log_root, 'whole_validation.json')))
    assert [v['iteration'] for v in history['validations']] == [2, 4]
    assert sorted(r['name'] for r in history['validations'][-1]['images']) == ['b1.png', 'im0.png']
    assert os.path.getsize(os.path.join(log_root, 'whole_validation.png')) > 0
    logged = np.mean([v['mean']['SAD'] for v in history['validations']])  # one log interval
    assert read_log(log_root)[-1]['validation/whole/SAD'] == pytest.approx(logged, rel=1e-6)

    ours = {}
    for root, name in ((roots[0], 'im0'), (roots[1], 'b1')):
        out = tmp_path / f'eval_{name}'
        assert evaluate.main([str(root), '--names', name, '--method', 'dim', 'closed_form',
                              '--no_refine',
                              '--ckpt_path', os.path.join(log_root, 'model_final.npz'),
                              '--out_dir', str(out)]) == 0
        with open(out / 'metrics.csv') as f:
            rows = [r.split(',') for r in f.read().splitlines()]
        header = rows[0]
        for r in rows[1:]:
            if r[header.index('name')] == f'{name}.png':
                ours[name, r[header.index('method')]] = float(r[header.index('SAD')])
    want_dim = np.mean([ours['im0', 'dim'], ours['b1', 'dim']])
    want_cf = np.mean([ours['im0', 'closed_form'], ours['b1', 'closed_form']])
    # (metrics.csv holds 6 significant digits: up to 5e-6 relative)
    assert history['validations'][-1]['mean']['SAD'] == pytest.approx(want_dim, rel=1e-5)
    assert history['closed_form']['mean']['SAD'] == pytest.approx(want_cf, rel=1e-5)


def test_whole_image_validation_needs_val_names(dataset, tmp_path, capsys):
    assert train.main(['--dataset_root', dataset, '--log_root', str(tmp_path / 'r'),
                       '--max_iter', '2', '--val_whole_frq', '2'] + TINY) == 1
    assert '--val_whole_frq needs --val_names' in capsys.readouterr().err


def test_the_seed_repositorys_option_names_still_work(dataset):
    import options
    args = options.train_parser().parse_args(['--dataset_root', dataset, '--alpha', '0.3'])
    assert args.alpha_weight == 0.3
    demo_args = options.demo_parser().parse_args(['--newimgs_dir', 'x.png'])
    assert demo_args.backgrounds == 'x.png'
