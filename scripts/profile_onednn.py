"""Where a 320x320 pass of the full-width encoder-decoder spends its oneDNN time, by primitive.

    .venv/bin/python -m scripts.profile_onednn [--impl ours|torch] [--precision bf16|fp32]
                                               [--backward] [--runs 3] [--reorders] [--width 1]

Runs the pass ``--runs`` times in a child process with ``ONEDNN_VERBOSE=1`` (this project's
layers, or PyTorch's in channels_last, bf16 by autocast, as ``scripts/benchmark.py`` builds them)
and prints, for the last run (the others warm up), milliseconds and count per (primitive,
propagation, implementation), then the total; ``--reorders`` lists the reorders by layouts and
shape instead. oneDNN's own timings: work outside oneDNN (Python, NumPy passes) is not in them.
"""
import argparse
import collections
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = 'profile_onednn: run'


def child(args):
    sys.path[:0] = [ROOT, os.path.join(ROOT, 'scripts')]
    import benchmark

    from nnet.cpu import keep_freed_memory
    keep_freed_memory()  # as the benchmark and train.py run
    x = benchmark.make_input(320, 320)
    if args.impl == 'ours':
        run = benchmark.chainer_runner(args.width, x, args.backward, False, args.precision)
    else:
        run = benchmark.torch_runner(args.width, x, args.backward, len(os.sched_getaffinity(0)),
                                     args.precision, True)
    def mark():  # straight to the descriptor oneDNN writes its lines to, in order with them
        sys.stdout.flush()
        os.write(1, (MARK + '\n').encode())

    for _ in range(args.runs):
        mark()
        run()
    mark()


def last_run_lines(stdout):
    """The ``exec`` lines of oneDNN's verbose output between the last two marks, split at ','."""
    lines = stdout.splitlines()
    marks = [i for i, line in enumerate(lines) if line == MARK]
    return [line.split(',') for line in lines[marks[-2]:marks[-1]] if ',exec,' in line]


def summarize(rows, reorders):
    """{description: [milliseconds, count]} of oneDNN verbose ``exec`` rows."""
    totals = collections.defaultdict(lambda: [0.0, 0])
    for f in rows:
        i = f.index('cpu')
        kind, impl, prop = f[i + 1], f[i + 2], f[i + 3]
        if reorders:
            if kind != 'reorder':
                continue
            key = ' '.join(x for x in f[i + 4:-1] if x)
        else:
            key = f'{kind} {prop if kind != "reorder" else ""} {impl}'
        totals[key][0] += float(f[-1])
        totals[key][1] += 1
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--impl', choices=('ours', 'torch'), default='ours')
    parser.add_argument('--precision', choices=('bf16', 'fp32'), default='bf16')
    parser.add_argument('--backward', action='store_true', help='forward + backward')
    parser.add_argument('--runs', type=int, default=3, help='runs, the last one reported (>= 2)')
    parser.add_argument('--reorders', action='store_true', help='list the reorders')
    parser.add_argument('--width', type=float, default=1.0, help='network width (1: the paper)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.runs < 2:
        parser.error('--runs must be at least 2 (the first warms up)')
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--impl', args.impl,
           '--precision', args.precision, '--runs', str(args.runs), '--width', str(args.width)]
    cmd += ['--backward'] if args.backward else []
    out = subprocess.run(cmd, env=dict(os.environ, ONEDNN_VERBOSE='1'), capture_output=True,
                         text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ['no message'])[-1]
        print(f'error: the profiled run failed: {last}', file=sys.stderr)
        return 1
    totals = summarize(last_run_lines(out.stdout), args.reorders)
    for key, (ms, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f'{ms:8.1f} ms {count:4d}  {key}')
    print(f'{sum(ms for ms, _ in totals.values()):8.1f} ms in all')
    return 0


if __name__ == '__main__':
    sys.exit(main())
