"""CPU speed and memory of the full DIM encoder-decoder: this project's CPU backend (nnet.cpu:
oneDNN, in float32 and in bfloat16) against stock Chainer (the backend's fallback) and, when
``import torch`` works, the same network in PyTorch in its four CPU modes: float32, float32 +
channels_last, bfloat16 autocast, bfloat16 autocast + channels_last; and onnxruntime running the
network exported to ONNX (forward cases).

Cases, batch 1: 320x320 forward (no_backprop, train=False), 320x320 forward+backward (train=True,
loss = sum of the output, gradients of all parameters), and a 1920x1080 forward (the input padded
to 1920x1088 as ``DIM.forward`` does, no_backprop, train=False). For each case and implementation:
median seconds over ``--repeats`` timed runs (after one warm-up run), the achieved GFLOP/s
counting the direct convolutions' multiply-adds analytically (2 FLOPs each; forward+backward
counts the forward, the weight gradients and the input gradients of every layer but the first),
and the peak resident memory (ru_maxrss) of a process
that ran only that case and implementation.

Each (case, implementation, precision) runs in its own fresh worker process; this project's and
PyTorch's workers take their runs in turns (ours fp32, ours bf16, torch fp32, ..., half a second
of quiet before each) so that a background load on the shared machine hits them alike; stock
Chainer's runs come after theirs. Speed comparisons are the ratios of one run of this script.
``--json`` prints one JSON object per line and (case, implementation, precision) instead of the
table: keys case, implementation, precision, seconds, peak_gb (and gflops, runs, check).

``--predict-once`` instead times what demo.py does for one photo: one two-stage DIM.predict of a
1920x1080 picture in a fresh process, with and without ``keep_freed_memory()``.

Usage: scripts/bench.sh [--repeats 5] [--big-repeats 2] [--width 1.0] [--threads N]
                        [--precisions fp32,bf16] [--json] [--no-torch] [--no-stock]
                        [--no-onnxruntime] [--no-big] [--no-keep-freed-memory]
                        [--stack-python .venv-np1/bin/python]
       scripts/bench.sh --predict-once [--big-repeats 2]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CASES = {  # name: (label, height, width, backward)
    'fwd320': ('320x320 forward', 320, 320, False),
    'fwdbwd320': ('320x320 forward+backward', 320, 320, True),
    'fwd1080': ('1920x1080 forward', 1080, 1920, False),
}
# name: (label, runner kind, precision, channels_last)
IMPLS = {
    'ours-fp32': ('this project fp32', 'ours', 'fp32', False),
    'ours-bf16': ('this project bf16', 'ours', 'bf16', False),
    'torch-fp32': ('pytorch fp32', 'torch', 'fp32', False),
    'torch-fp32-cl': ('pytorch fp32 chan-last', 'torch', 'fp32', True),
    'torch-bf16': ('pytorch bf16', 'torch', 'bf16', False),
    'torch-bf16-cl': ('pytorch bf16 chan-last', 'torch', 'bf16', True),
    'stock': ('chainer stock (fallback)', 'stock', 'fp32', False),
    'onnxruntime': ('onnxruntime (exported)', 'onnxruntime', 'fp32', False),
    'stack': ('this project fp32, --stack-python', 'ours', 'fp32', False),  # other interpreter
}
PAUSE = 0.5  # seconds of quiet before each timed run


# ---------------------------------------------------------------------------------------------
# FLOP count
# ---------------------------------------------------------------------------------------------
def conv_layers(width, height, img_width):
    """[(name, in_ch, out_ch, k, H, W)] of the encoder-decoder's convolutions at that input."""
    from nnet.model import CONV6, DECODER, ENCODER_STAGES, scaled
    layers, size, in_ch = [], (height, img_width), 4
    for stage in ENCODER_STAGES:
        for name, ch in stage:
            layers.append((name, in_ch, scaled(ch, width), 3) + size)
            in_ch = scaled(ch, width)
        size = (size[0] // 2, size[1] // 2)
    name, ch, k = CONV6
    layers.append((name, in_ch, scaled(ch, width), k) + size)
    in_ch = scaled(ch, width)
    for i, (name, ch, k) in enumerate(DECODER):
        if i:
            size = (size[0] * 2, size[1] * 2)
        layers.append((name, in_ch, scaled(ch, width), k) + size)
        in_ch = scaled(ch, width)
    layers.append(('pred', in_ch, 1, 5) + size)
    return layers


def conv_flops(width, height, img_width, backward):
    per_layer = [2 * ci * co * k * k * h * w for _, ci, co, k, h, w in
                 conv_layers(width, height, img_width)]
    total = sum(per_layer)
    if backward:  # weight gradients of all layers, input gradients of all but the first
        total += sum(per_layer) + sum(per_layer[1:])
    return total


def padded(height, img_width):
    from nnet.model import DOWNSAMPLING
    up = lambda v: -(-v // DOWNSAMPLING) * DOWNSAMPLING  # noqa: E731
    return up(height), up(img_width)


# ---------------------------------------------------------------------------------------------
# Worker: one implementation, one case; runs on request
# ---------------------------------------------------------------------------------------------
def make_input(height, img_width):
    """The padded network input of a fixed random picture and trimap, (1, 4, H', W') float32."""
    import numpy as np

    from nnet.model import network_input, pad_to_multiple
    rng = np.random.RandomState(0)
    image = rng.rand(1, 3, height, img_width).astype(np.float32)
    trimap = rng.choice(np.array([0.0, 128 / 255, 1.0], np.float32), (1, 1, height, img_width))
    x, _ = pad_to_multiple(network_input(image, trimap))
    return x


def chainer_model(width):
    import numpy as np

    from nnet.model import EncoderDecoder
    np.random.seed(0)  # Chainer's initializers draw from NumPy's global generator
    return EncoderDecoder(width)


def chainer_runner(width, x, backward, stock, precision):
    import contextlib

    import nnet.compat  # noqa: F401  (NumPy 2: before chainer; see nnet/compat.py)

    # isort: split
    import chainer
    import chainer.functions as F

    from nnet.cpu import set_precision, stock_path
    set_precision(precision)
    model = chainer_model(width)
    model.cleargrads()  # as utils.training.checkpoint.load_model (no NaN-filled gradients held)

    def run():
        ctx = stock_path() if stock else contextlib.nullcontext()
        with ctx:
            if backward:
                model.cleargrads()
                with chainer.using_config('train', True):
                    y = model(x)
                    F.sum(y).backward()
                return float(y.array.sum())
            with chainer.using_config('train', False), chainer.no_backprop_mode():
                y = model(x)
            return float(y.array.sum())
    return run


def torch_runner(width, x, backward, threads, precision, channels_last):
    import numpy as np
    import torch
    from torch import nn

    from nnet.model import DECODER, ENCODER_STAGES
    torch.set_num_threads(threads)
    params = {name: (link.W.array, link.b.array)  # same weights as the Chainer workers
              for name, link in chainer_model(width).namedlinks(skipself=True)}

    def conv(name):
        W, b = params['/' + name]
        out_ch, in_ch, k, _ = W.shape
        m = nn.Conv2d(in_ch, out_ch, k, padding=k // 2)
        m.weight.data = torch.from_numpy(np.array(W))
        m.bias.data = torch.from_numpy(np.array(b))
        return m

    class EncoderDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList(nn.ModuleList(conv(name) for name, _ in stage)
                                        for stage in ENCODER_STAGES)
            self.conv6, self.deconv6 = conv('conv6'), conv('deconv6')
            self.decoder = nn.ModuleList(conv(name) for name, _, _ in DECODER[1:])
            self.pred = conv('pred')
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2, 2)

        def forward(self, h):
            pooled = []
            for stage in self.stages:
                for layer in stage:
                    h = torch.relu(layer(h))
                size = h.shape[2:]
                h, indices = self.pool(h)
                pooled.append((indices, size))
            h = torch.relu(self.deconv6(torch.relu(self.conv6(h))))
            for layer, (indices, size) in zip(self.decoder, reversed(pooled)):
                h = torch.relu(layer(self.unpool(h, indices, output_size=size)))
            return torch.sigmoid(self.pred(h))

    model = EncoderDecoder()
    params.clear()
    xt = torch.from_numpy(x)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    import contextlib
    autocast = ((lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if precision == 'bf16'
                else contextlib.nullcontext)

    def run():
        if backward:
            model.train()
            model.zero_grad(set_to_none=True)
            with autocast():
                y = model(xt)
                loss = y.float().sum()
            loss.backward()  # outside autocast, as PyTorch recommends
            return float(y.detach().float().sum())
        model.eval()
        with torch.no_grad(), autocast():
            return float(model(xt).float().sum())
    return run


def onnxruntime_runner(width, x, backward, threads):
    """The same network exported with utils.inference.onnx, run by onnxruntime (forward only)."""
    import onnxruntime

    from utils.inference.onnx import to_onnx
    if backward:
        raise SystemExit('onnxruntime: forward only')
    proto = to_onnx(chainer_model(width), (x,), ['x'], ['alpha']).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(proto, options, providers=['CPUExecutionProvider'])
    return lambda: float(session.run(None, {'x': x})[0].sum())


def worker(args):
    label, height, img_width, backward = CASES[args.case]
    _, kind, precision, channels_last = IMPLS[args.impl]
    x = make_input(height, img_width)
    if kind == 'ours' and not args.no_keep_freed_memory:
        from nnet.cpu import keep_freed_memory
        keep_freed_memory()  # as train.py, demo.py and evaluate.py do
    if kind == 'torch':
        run = torch_runner(args.width, x, backward, args.threads, precision, channels_last)
    elif kind == 'onnxruntime':
        run = onnxruntime_runner(args.width, x, backward, args.threads)
    else:
        run = chainer_runner(args.width, x, backward, kind == 'stock', precision)
    print(json.dumps({'ready': True}), flush=True)
    for line in sys.stdin:
        if line.strip() != 'run':
            break
        t0 = time.perf_counter()
        check = run()
        seconds = time.perf_counter() - t0
        print(json.dumps({'seconds': seconds, 'check': check}), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({'peak_rss': rss}), flush=True)


class Worker:
    def __init__(self, impl, case, args):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
                   OMP_NUM_THREADS=str(args.threads))
        env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
        python = args.stack_python if impl == 'stack' else sys.executable
        cmd = [python, os.path.abspath(__file__), '--worker', '--impl', impl,
               '--case', case, '--width', str(args.width), '--threads', str(args.threads)]
        cmd += ['--no-keep-freed-memory'] if args.no_keep_freed_memory else []
        self.impl = impl
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.times, self.checks, self.peak_rss, self.error = [], [], None, None
        self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.error = f'worker exited ({self.proc.wait()})'
            return None
        return json.loads(line)

    def run(self, record=True):
        if self.error:
            return
        self.proc.stdin.write('run\n')
        self.proc.stdin.flush()
        out = self._read()
        if out and record:
            self.times.append(out['seconds'])
            self.checks.append(out['check'])

    def close(self):
        if not self.error:
            self.proc.stdin.write('exit\n')
            self.proc.stdin.flush()
            out = self._read()
            if out:
                self.peak_rss = out['peak_rss']
        self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def have_torch():
    try:
        import torch
        return bool(torch.__version__)
    except Exception:
        return False


def sgemm_ceiling(threads, python=sys.executable):
    """GFLOP/s of NumPy's float32 matrix product (2048^3) in a fresh process, best of 5."""
    code = ('import numpy as np, time\n'
            'a = np.random.rand(2048, 2048).astype(np.float32); a @ a; best = 1e9\n'
            'for _ in range(5):\n'
            '    t = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t)\n'
            'print(2 * 2048 ** 3 / best / 1e9)\n')
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([python, '-c', code], capture_output=True, text=True, env=env)
    return float(out.stdout.strip()) if out.returncode == 0 else float('nan')


def stack_info(python):
    """(NumPy version, 'BLAS name version; CPU backend') of an interpreter."""
    code = ('import nnet.compat, numpy\n'
            'from nnet import cpu\n'
            "b = numpy.show_config(mode='dicts')['Build Dependencies']['blas']\n"
            "print(numpy.__version__); print(f\"{b['name']} {b['version']}; CPU backend "
            "{cpu.backend()}\")\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([python, '-c', code], capture_output=True, text=True, env=env)
    lines = out.stdout.split('\n') if out.returncode == 0 else ['?', 'BLAS unknown']
    return lines[0], lines[1]


def median(values):
    v = sorted(values)
    n = len(v)
    return (v[n // 2] + v[(n - 1) // 2]) / 2 if n else float('nan')


def run_in_turns(workers, repeats):
    """One warm-up run each, then ``repeats`` timed runs in turns; returns the closed workers."""
    for w in workers:
        w.run(record=False)
    for _ in range(repeats):
        for w in workers:
            time.sleep(PAUSE)  # the previous worker's threads may still spin for a moment
            w.run()
    for w in workers:
        w.close()
    return workers


def predict_once_worker(keep):
    """One two-stage ``DIM.predict`` (width 1.0) of a random 1920x1080 picture in this fresh
    process, as demo.py runs it for one photo; prints seconds and peak memory as JSON."""
    import numpy as np

    from nnet.cpu import keep_freed_memory
    from nnet.model import DIM
    if keep:
        keep_freed_memory()
    np.random.seed(0)
    model = DIM(1.0)
    rng = np.random.RandomState(0)
    image = rng.rand(1080, 1920, 3).astype(np.float32)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (1080, 1920))
    t0 = time.perf_counter()
    model.predict(image, trimap)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'seconds': seconds, 'peak_rss': rss}), flush=True)


def predict_once(args):
    """Fresh processes, with and without keep_freed_memory in turns, ``--big-repeats`` each."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    runs = {True: [], False: []}
    for _ in range(args.big_repeats):
        for keep in (True, False):
            cmd = [sys.executable, os.path.abspath(__file__), '--predict-worker']
            out = subprocess.run(cmd + (['--keep'] if keep else []), capture_output=True,
                                 text=True, env=env)
            if out.returncode:
                sys.exit(f'error: the predict worker failed: {out.stderr.strip()[-500:]}')
            runs[keep].append(json.loads(out.stdout.strip().splitlines()[-1]))
            time.sleep(PAUSE)
    print('two-stage DIM.predict, width 1, one 1920x1080 picture, once per fresh process:')
    for keep in (True, False):
        seconds = ', '.join(f'{r["seconds"]:.1f}' for r in runs[keep])
        peak = max(r['peak_rss'] for r in runs[keep])
        print(f'  keep freed memory: {"yes" if keep else "no ":3s}  seconds {seconds}  '
              f'peak memory {fmt_gb(peak).strip()}')


def fmt_gb(nbytes):
    return f'{nbytes / 2 ** 30:6.2f} GB' if nbytes else '     -   '


def main():
    parser = argparse.ArgumentParser(
        description='CPU speed and peak memory of the full DIM encoder-decoder (batch 1): this '
                    "project's Chainer path, stock Chainer and PyTorch (when installed).")
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed runs per case and implementation (median reported); '
                             'default 5')
    parser.add_argument('--big-repeats', type=int, default=2,
                        help='timed runs for the 1920x1080 case (each takes several seconds); '
                             'default 2')
    parser.add_argument('--width', type=float, default=1.0,
                        help='channel multiplier of the network; default 1.0 (the paper)')
    parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                        help='threads for oneDNN, OpenBLAS and PyTorch; default: the usable '
                             'cores')
    parser.add_argument('--precisions', default='fp32,bf16',
                        help="this project's precisions to time (comma-separated); default "
                             'fp32,bf16')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object per line and case instead of the table')
    parser.add_argument('--no-torch', action='store_true', help='skip PyTorch')
    parser.add_argument('--no-stock', action='store_true', help='skip stock Chainer')
    parser.add_argument('--no-onnxruntime', action='store_true',
                        help='skip onnxruntime (forward cases: the network exported to ONNX)')
    parser.add_argument('--stack-python', metavar='PYTHON',
                        help="also time this project's fp32 path under another interpreter "
                             '(another NumPy/OpenBLAS stack), in turns with the others')
    parser.add_argument('--no-big', action='store_true', help='skip the 1920x1080 case')
    parser.add_argument('--no-keep-freed-memory', action='store_true',
                        help="this project's path without nnet.cpu.keep_freed_memory() "
                             '(glibc returns freed memory to the system)')
    parser.add_argument('--cases', default=','.join(CASES),
                        help=f'comma-separated subset of {",".join(CASES)}')
    parser.add_argument('--predict-once', action='store_true',
                        help='instead: time one two-stage DIM.predict of a 1920x1080 picture per '
                             'fresh process, with and without keep_freed_memory()')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--predict-worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--keep', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--impl', choices=sorted(IMPLS), help=argparse.SUPPRESS)
    parser.add_argument('--case', choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.predict_worker:
        return predict_once_worker(args.keep)
    if args.predict_once:
        return predict_once(args)

    from nnet import cpu
    torch_ok = not args.no_torch and have_torch()
    cases = [c for c in args.cases.split(',') if c]
    if args.no_big:
        cases = [c for c in cases if c != 'fwd1080']
    precisions = [p for p in args.precisions.split(',') if p]
    no_bf16 = not cpu.bf16_available()
    if no_bf16:
        # (PyTorch's bf16 modes too: without bfloat16 kernels its 320x320 forward took over
        # 10 minutes on an AVX2-only CPU)
        print(f'bf16 (this project and PyTorch): skipped: {cpu.bf16_missing()}',
              file=sys.stderr if args.json else sys.stdout)
        precisions = [p for p in precisions if p != 'bf16']
    ours = [f'ours-{p}' for p in precisions]
    torch_impls = [k for k, v in IMPLS.items()
                   if v[1] == 'torch' and not (no_bf16 and v[2] == 'bf16')] if torch_ok else []
    say = (lambda *a, **k: None) if args.json else print
    say(f'DIM encoder-decoder, width {args.width:g}, batch 1, {args.threads} threads; CPU '
        f'backend: {cpu.backend()}; load average before: {os.getloadavg()[0]:.2f} on '
        f"{os.cpu_count()} cores; this project keeps freed memory: "
        f"{'no' if args.no_keep_freed_memory else 'yes'}")
    say(f'NumPy float32 matrix product (2048^3): {sgemm_ceiling(args.threads):.0f} GFLOP/s')
    if args.stack_python:
        for name, python in (('this interpreter', sys.executable),
                             ('--stack-python', args.stack_python)):
            version, blas = stack_info(python)
            say(f'{name}: {python}, numpy {version}, {blas}; float32 matrix product '
                f'{sgemm_ceiling(args.threads, python):.0f} GFLOP/s')
    if not torch_ok:
        say('PyTorch: ' + ('skipped (--no-torch)' if args.no_torch else
                           'not installed (pip install torch==2.13.0 to compare)'))
    say(f'seconds: median of {args.repeats} runs ({args.big_repeats} at 1920x1080) after one '
        'warm-up; peak memory: max resident set of a process running only that case')
    say('GFLOP/s: 2 x the multiply-adds of direct convolutions per second')
    say()
    header = f'{"case":26s} {"implementation":26s} {"seconds":>8s} {"GFLOP/s":>8s} ' \
             f'{"peak mem":>9s}  notes'
    say(header)
    say('-' * len(header))
    for case in cases:
        label, height, img_width, backward = CASES[case]
        ph, pw = padded(height, img_width)
        flops = conv_flops(args.width, ph, pw, backward)
        big = case == 'fwd1080'
        repeats = args.big_repeats if big else args.repeats
        # this project and PyTorch take turns; stock Chainer runs afterwards (its gigabyte of
        # memory churn slowed whichever implementation ran next)
        groups = [ours + (['stack'] if args.stack_python else []) + torch_impls
                  + (['onnxruntime'] if not args.no_onnxruntime and not backward else [])]
        groups += [['stock']] if not args.no_stock and not big else []
        workers = []
        for group in groups:
            workers += run_in_turns([Worker(impl, case, args) for impl in group], repeats)
        results = {w.impl: w for w in workers}
        ref = results.get(ours[0]) if ours else None
        first = True
        for w in workers:
            name = label if first else ''
            first = False
            impl_label, kind, precision, _ = IMPLS[w.impl]
            if w.error or not w.times:
                say(f'{name:26s} {impl_label:26s} failed: {w.error}')
                continue
            t = median(w.times)
            if args.json:
                impl_name = {'ours': 'nnet.cpu', 'stock': 'chainer-stock'}.get(kind, kind)
                impl_name += '-stack-python' if w.impl == 'stack' else ''
                impl_name += '-channels_last' if IMPLS[w.impl][3] else ''
                print(json.dumps({'case': case, 'implementation': impl_name,
                                  'precision': precision, 'seconds': round(t, 4),
                                  'peak_gb': round(w.peak_rss / 2 ** 30, 3) if w.peak_rss
                                  else None, 'gflops': round(flops / t / 1e9, 1),
                                  'runs': [round(v, 4) for v in w.times],
                                  'check': w.checks[0]}), flush=True)
                continue
            note = ''
            if w is not ref and ref is not None and ref.checks and w.checks:
                a, b = ref.checks[0], w.checks[0]
                note = f'output sum differs from {ours[0]} by {abs(a - b) / max(abs(a), 1e-30):.1e}'
            say(f'{name:26s} {impl_label:26s} {t:8.3f} {flops / t / 1e9:8.1f} '
                f'{fmt_gb(w.peak_rss)}  {note}')
        if big and not args.no_stock:
            say(f'{"":26s} {IMPLS["stock"][0]:26s} {"skipped":>8s}  (its im2col needs tens of '
                'GB at this size)')
        timed = {k: median(w.times) for k, w in results.items() if w.times}
        best_torch = min((k for k in timed if k.startswith('torch')), key=timed.get, default=None)
        for mine in ours:
            for other in [best_torch, 'onnxruntime', 'stack', 'stock']:
                if mine in timed and other in timed:
                    say(f'{"":26s} {"ratio " + mine + "/" + other:29s} '
                        f'{timed[mine] / timed[other]:8.2f}  (time; < 1 = this project faster)')
        padding = f', input padded to {pw}x{ph}' if (ph, pw) != (height, img_width) else ''
        say(f'{"":26s} ({flops / 1e9:.1f} GFLOP of convolutions{padding})')
        say()
    say(f'load average after: {os.getloadavg()[0]:.2f} (other processes on the machine slow '
        'every implementation; compare the ratios)')


if __name__ == '__main__':
    main()
