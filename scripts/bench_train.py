"""Training throughput: ranks x threads, and the time each iteration waits for its data.

Runs train.py for ``--iterations`` iterations per configuration (1 rank x T threads, or R ranks
under mpiexec x T/R threads each; --loader_workers 0 and n) on a dataset, and reads train.py's own
log: samples per second over the iterations after ``--warmup`` (the last one, which validates
and saves, left out) and the mean ``data_wait`` (seconds an iteration waited for its batch; in
an MPI run the mean over the ranks). The configurations run one after another in one call:
compare the ratios of one call.

Usage: python -m scripts.bench_train DATASET_ROOT [--width 1.0] [--batch_size 2]
           [--iterations 8] [--warmup 2] [--configs 1x2:0 2x1:0 1x2:2] [--rounds 1]
A configuration RxT:W is R ranks, T threads per rank (OMP_NUM_THREADS for oneDNN's
convolutions, OPENBLAS_NUM_THREADS for NumPy), W --loader_workers.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_config(args, ranks, threads, workers, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(ROOT / 'train.py'), '--dataset_root', args.dataset_root,
           '--log_root', str(out), '--width', str(args.width), '--batch_size', str(args.batch_size),
           '--max_iter', str(args.iterations), '--log_frq', '1', '--ckpt_frq', '100000',
           '--val_frq', '100000', '--n_val', '1', '--loader_workers', str(workers)]
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / 'mpiexec'), '--allow-run-as-root',
               '--oversubscribe', '-n', str(ranks)] + cmd + ['--distributed']
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    log = json.load(open(out / 'log'))
    timed = log[args.warmup - 1:-1]  # from the end of warm-up to the one before the last
    seconds = timed[-1]['elapsed_time'] - timed[0]['elapsed_time']
    samples = args.batch_size * (len(timed) - 1)
    wait = sum(e['data_wait'] for e in timed[1:]) / (len(timed) - 1)
    step = seconds / (len(timed) - 1)
    return samples / seconds, step, wait


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dataset_root')
    p.add_argument('--width', type=float, default=1.0)
    p.add_argument('--batch_size', type=int, default=2, help='global batch (all ranks)')
    p.add_argument('--iterations', type=int, default=8)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--configs', nargs='+', default=['1x2:0', '2x1:0', '1x2:2'])
    p.add_argument('--rounds', type=int, default=1,
                   help='run the configurations this many times, in turn (a load that comes '
                        'and goes on a shared machine shows as rounds that disagree)')
    args = p.parse_args()
    if args.iterations < args.warmup + 3:
        p.error('--iterations must be at least --warmup + 3')
    print(f'width {args.width}, global batch {args.batch_size}, {args.iterations} iterations '
          f'({args.warmup} warm-up, the last left out)')
    print('| round | ranks x threads | loader workers | samples/s | s/iteration '
          '| data wait s/iteration |')
    print('|---|---|---|---|---|---|')
    tmp = Path(tempfile.mkdtemp(prefix='bench_train_'))
    try:
        for round_ in range(1, args.rounds + 1):
            for config in args.configs:
                shape, workers = config.split(':')
                ranks, threads = (int(x) for x in shape.split('x'))
                out = tmp / f'{round_}-{config}'
                rate, step, wait = run_config(args, ranks, threads, int(workers), out)
                print(f'| {round_} | {ranks} x {threads} | {workers} | {rate:.3f} | {step:.2f} '
                      f'| {wait:.3f} |', flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
