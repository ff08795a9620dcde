"""Memory of the CPU layers: freed memory kept for reuse (glibc malloc settings) and recycled
buffers for large arrays."""
import ctypes
import mmap

import numpy as np


def keep_freed_memory(limit=1 << 30):
    """Ask glibc's malloc to keep freed blocks of up to ``limit`` bytes for reuse instead of
    returning them to the system (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).

    Each layer's output and scratch is a fresh array; memory new to the process costs a page
    fault per 4 KiB on first touch (about 2.7 ms per MB on this project's VM: 70 ms for one
    320x320x64 float32 activation), while reused memory costs nothing. The peak memory stays the
    same; the process just keeps it until it exits. Called by train.py, demo.py, evaluate.py
    and the benchmark (not on import). Returns whether glibc took both settings.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_threshold = -1, -3
    limit = int(min(limit, 2 ** 31 - 1))
    return bool(mallopt(m_mmap_threshold, limit)) & bool(mallopt(m_trim_threshold, limit))


# ---------------------------------------------------------------------------------------------
# Recycled buffers for the large arrays of the CPU layers
# ---------------------------------------------------------------------------------------------
RECYCLE_MIN = 8 << 20  # arrays of at least this many bytes come from recycled buffers
RECYCLE_MAX_HELD = 1 << 30  # bytes of free buffers kept for reuse, at most (smallest go first)
_FREE = {}  # nbytes -> [(mmap, address)], free buffers
_HELD = [0]
_LEASES = {}


def _lease_class(nbytes):
    """A ctypes byte array type of ``nbytes`` whose instances (placed on a buffer) hand the
    buffer back for reuse when the last NumPy array using them is gone."""
    cls = _LEASES.get(nbytes)
    if cls is None:
        class Lease(ctypes.c_ubyte * nbytes):
            def __del__(self):
                try:
                    _give_back(self._buffer)
                except Exception:  # (interpreter shutdown)
                    pass
        cls = _LEASES[nbytes] = Lease
    return cls


def _give_back(buffer):
    nbytes = len(buffer[0])
    _FREE.setdefault(nbytes, []).append(buffer)
    _HELD[0] += nbytes
    _release(_HELD[0] - RECYCLE_MAX_HELD)


def _release(nbytes):
    """Unmap free buffers, the largest first, until ``nbytes`` are back with the system."""
    while nbytes > 0 and _HELD[0] > 0:
        size = max(k for k, v in _FREE.items() if v)
        _FREE[size].pop()[0].close()
        _HELD[0] -= size
        nbytes -= size


def _take(nbytes):
    """(mmap, address) of a buffer of at least nbytes: the smallest free one of nbytes to
    2 * nbytes, else a new mapping (for which as much free memory goes back to the system
    first: the total does not grow while free buffers of other sizes are held)."""
    fits = [size for size, free in _FREE.items() if free and nbytes <= size <= 2 * nbytes]
    if fits:
        size = min(fits)
        _HELD[0] -= size
        return _FREE[size].pop()
    _release(nbytes)
    _malloc_trim()
    mm = mmap.mmap(-1, nbytes)
    if hasattr(mmap, 'MADV_HUGEPAGE'):
        mm.madvise(mmap.MADV_HUGEPAGE)
    view = ctypes.c_ubyte.from_buffer(mm)
    address = ctypes.addressof(view)
    del view  # (no export left: the mapping can be closed when it is dropped)
    return mm, address


_TRIM = []


def _malloc_trim():
    """Give malloc's free memory back to the system (glibc), before mapping a large buffer."""
    if not _TRIM:
        try:
            fn = ctypes.CDLL(None).malloc_trim
            fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_size_t]
        except (OSError, AttributeError):
            fn = None
        _TRIM.append(fn)
    if _TRIM[0] is not None:
        _TRIM[0](0)


def empty(shape, dtype=np.float32):
    """``np.empty(shape, dtype)`` (C order, 64-byte aligned); large ones reuse the memory of
    large arrays of the same size that are gone.

    Each layer's output is a fresh array. Memory new to a process costs a page fault per 4 KiB
    on first touch (about 2.7 ms per MB on this project's VM), and malloc's free blocks get cut
    up by smaller arrays, so that a 1920x1080 forward pass asked the system for ever more
    memory. Large arrays from here are whole mappings of their own, reused for arrays of the
    same size or up to half as large once the old ones are gone (``_take``): the peak stays
    near what is alive at once.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < RECYCLE_MIN:
        raw = np.empty(nbytes + 64, np.uint8)
        off = (-raw.ctypes.data) % 64
        return raw[off:off + nbytes].view(dtype).reshape(shape)
    buffer = _take(nbytes)
    lease = _lease_class(nbytes).from_address(buffer[1])
    lease._buffer = buffer
    return np.frombuffer(lease, dtype).reshape(shape)


def nhwc_empty(shape, dtype=np.float32):
    """``empty`` of an (N, C, H, W) shape, laid out channels-last (NHWC in memory)."""
    n, c, h, w = shape
    return empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)


def empty_as(a, dtype=np.float32):
    """``empty`` of ``a``'s shape, laid out in memory as ``a`` is (axes in ``a``'s stride order)."""
    order = sorted(range(a.ndim), key=lambda d: -a.strides[d])  # outermost first
    buf = empty(tuple(a.shape[d] for d in order), dtype)
    return buf.transpose(np.argsort(order))


def hwio(W):
    """A copy of convolution weights W (Cout, Cin, kh, kw), laid out in memory as
    (kh, kw, Cin, Cout): oneDNN reorders this layout into its blocked ones about twice as fast as
    C order (the output channels, innermost in those, are innermost here too)."""
    out = np.empty((W.shape[2], W.shape[3], W.shape[1], W.shape[0]), W.dtype).transpose(3, 2, 0, 1)
    out[...] = W
    return out


def is_channels_last(a):
    """Whether the (N, C, H, W) array ``a`` lies in memory as a dense NHWC array (the strides of
    dimensions of extent 1 do not matter)."""
    expect = a.itemsize
    for dim in (1, 3, 2, 0):
        if a.shape[dim] != 1 and a.strides[dim] != expect:
            return False
        expect *= a.shape[dim]
    return True
