"""Process-wide settings of the CPU backend: which backend runs and in which precision.

* Backend: 'onednn' where the oneDNN library loads and works (``nnet.cpu.dnnl``), else
  'fallback' (stock Chainer functions), with one warning line the first time it matters.
  ``DIM_CPU_BACKEND=fallback`` forces the fallback (``=onednn`` is the default).
* Precision: 'fp32' (default) or 'bf16': convolutions take bfloat16 operands (inputs, weights,
  output gradients rounded to nearest even), accumulate in float32 and return float32 outputs
  and gradients, except the activations between the model's layers and their gradients, which
  stay bfloat16 (``keep_bf16`` in ``nnet.cpu.conv``); weights, their gradients, optimizer state
  and losses stay float32. bf16 needs oneDNN and a CPU
  it has bfloat16 convolutions for (AVX-512): elsewhere it runs float32 and says so once. Set
  it with ``set_precision`` or, for a block, ``with precision('bf16'):``. It applies to NumPy
  arrays only: CuPy arrays always go through Chainer's own (cuDNN) functions.
"""
import contextlib
import os
import sys

PRECISIONS = ('fp32', 'bf16')
_PRECISION = 'fp32'
_BACKEND = None
_BF16_MISSING = None
_WARNED = set()


def warn_once(key, message):
    if key not in _WARNED:
        _WARNED.add(key)
        print(f'warning: {message}', file=sys.stderr)


def backend():
    """'onednn' or 'fallback' (decided on first call; see the module docstring)."""
    global _BACKEND
    if _BACKEND is None:
        choice = os.environ.get('DIM_CPU_BACKEND', 'onednn').strip().lower()
        if choice == 'fallback':
            _BACKEND = 'fallback'
        else:
            from nnet.cpu import dnnl
            if dnnl.library() is not None:
                _BACKEND = 'onednn'
            else:
                _BACKEND = 'fallback'
                warn_once('fallback', f'oneDNN is not available ({dnnl.load_error()}); CPU '
                                      'layers use stock Chainer functions (slower)')
    return _BACKEND


def set_precision(name):
    """Set the CPU convolutions' precision: 'fp32' or 'bf16'. Returns the previous one."""
    global _PRECISION
    if name not in PRECISIONS:
        raise ValueError(f'precision {name!r}: use one of {", ".join(PRECISIONS)}')
    before, _PRECISION = _PRECISION, name
    return before


def bf16_missing():
    """Why 'bf16' cannot run in bfloat16 here (one phrase), or None where it can: it needs
    oneDNN as the backend and bfloat16 convolutions for this CPU (oneDNN 3.2 has them from
    AVX-512 on; none on an AVX2-only CPU or under ``ONEDNN_MAX_CPU_ISA=AVX2``). Decided once,
    by creating the three bf16 primitives."""
    global _BF16_MISSING
    if _BF16_MISSING is None:
        from nnet.cpu import conv
        if backend() != 'onednn':
            _BF16_MISSING = 'bf16 needs oneDNN'
        elif not conv.bf16_primitives_exist():
            _BF16_MISSING = 'oneDNN has no bfloat16 convolutions for this CPU (AVX-512 is needed)'
        else:
            _BF16_MISSING = ''
    return _BF16_MISSING or None


def bf16_available():
    """Whether 'bf16' runs in bfloat16 here (see ``bf16_missing``)."""
    return bf16_missing() is None


def get_precision():
    """The precision the CPU convolutions run in now: 'fp32' where bf16 is not available."""
    if _PRECISION == 'bf16' and not bf16_available():
        warn_once('bf16', f'{bf16_missing()}; running float32 instead of bf16')
        return 'fp32'
    return _PRECISION


@contextlib.contextmanager
def precision(name):
    """``with precision('bf16'):`` runs the block's CPU convolutions in that precision."""
    before = set_precision(name)
    try:
        yield
    finally:
        set_precision(before)
