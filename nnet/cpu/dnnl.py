"""oneDNN (libdnnl 3.x, its C API) through ctypes: the library, one CPU engine and stream, memory
descriptors of NumPy arrays, cached primitives and their execution.

The library comes from the PyPI wheel ``onednn-cpu-gomp`` (requirements-nodeps.txt): a CPU-only
oneDNN 3.2 on GNU OpenMP, installed as ``<prefix>/lib/libdnnl.so.3``. (The newer ``onednn``
2026.x wheels are SYCL builds: their CPU engine needs a SYCL CPU device, i.e. Intel's OpenCL
runtime and more, and ``dnnl_engine_create`` fails without one.) ``library()`` finds it through
the package's file list (or ``$DIM_ONEDNN_LIBRARY``) and returns None, with the reason in
``load_error()``, when it cannot be loaded or does not work.

Enum values and struct layouts are those of oneDNN 3.2's include/oneapi/dnnl/dnnl_types.h
(``onednn-devel-cpu-gomp==2023.2.0``); only 3.x libraries are accepted.
"""
import ctypes
import functools
import importlib.metadata
import os

import ml_dtypes
import numpy as np

from nnet.cpu import memory

# dnnl_status_t
SUCCESS = 0
# dnnl_data_type_t
F32, BF16, U8 = 3, 2, 6
# dnnl_format_tag_t
TAG_ANY, TAG_A, TAG_ABCD, TAG_ACDB = 1, 2, 5, 22
# dnnl_prop_kind_t
FORWARD_TRAINING, FORWARD_INFERENCE, BACKWARD_DATA, BACKWARD_WEIGHTS = 64, 96, 160, 192
# dnnl_alg_kind_t
CONVOLUTION_DIRECT = 1
ELTWISE_RELU, ELTWISE_RELU_USE_DST_FOR_BWD = 32, 256
POOLING_MAX, POOLING_AVG_INCLUDE_PADDING = 511, 767
BINARY_MUL = 0x1fff1
# dnnl_engine_kind_t, dnnl_stream_flags_t
ENGINE_CPU, STREAM_DEFAULT_FLAGS = 1, 1
# dnnl_query_t
QUERY_SRC_MD, QUERY_DIFF_SRC_MD, QUERY_WEIGHTS_MD, QUERY_DIFF_WEIGHTS_MD = 129, 130, 131, 132
QUERY_DST_MD, QUERY_DIFF_DST_MD, QUERY_WORKSPACE_MD, QUERY_SCRATCHPAD_MD = 133, 134, 135, 136
QUERY_IMPL_INFO_STR = 8
# execution arguments (DNNL_ARG_*)
ARG_SRC_1 = 2  # (ARG_SRC is ARG_SRC_0)
ARG_SRC, ARG_DST, ARG_WEIGHTS, ARG_BIAS, ARG_WORKSPACE, ARG_SCRATCHPAD = 1, 17, 33, 41, 64, 80
ARG_DIFF_SRC, ARG_DIFF_DST, ARG_DIFF_WEIGHTS, ARG_DIFF_BIAS = 129, 145, 161, 169
MAX_NDIMS = 12
# dnnl_scratchpad_mode_t
SCRATCHPAD_USER = 1
# dnnl_cpu_isa_t: bit masks, each ISA's bits include those of the ISAs below it
ISA_AVX512_CORE = 0x27

Dims = ctypes.c_int64 * MAX_NDIMS
_VP = ctypes.c_void_p


class ExecArg(ctypes.Structure):
    """dnnl_exec_arg_t: {int arg; dnnl_memory_t memory;} (16 bytes)."""
    _fields_ = [('arg', ctypes.c_int), ('memory', _VP)]


class Version(ctypes.Structure):
    """dnnl_version_t."""
    _fields_ = [('major', ctypes.c_int), ('minor', ctypes.c_int), ('patch', ctypes.c_int),
                ('hash', ctypes.c_char_p), ('cpu_runtime', ctypes.c_uint),
                ('gpu_runtime', ctypes.c_uint)]


DISTRIBUTIONS = ('onednn-cpu-gomp', 'onednn-cpu-tbb', 'onednn-cpu-iomp', 'onednn')

# name: (restype, argtypes) of the functions used
_SIGNATURES = {
    'dnnl_version': (ctypes.POINTER(Version), []),
    'dnnl_get_effective_cpu_isa': (ctypes.c_int, []),
    'dnnl_engine_create': (ctypes.c_int, [ctypes.POINTER(_VP), ctypes.c_int, ctypes.c_size_t]),
    'dnnl_stream_create': (ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_uint]),
    'dnnl_stream_wait': (ctypes.c_int, [_VP]),
    'dnnl_memory_desc_create_with_strides': (ctypes.c_int, [ctypes.POINTER(_VP), ctypes.c_int,
                                                            Dims, ctypes.c_int, Dims]),
    'dnnl_memory_desc_create_with_tag': (ctypes.c_int, [ctypes.POINTER(_VP), ctypes.c_int, Dims,
                                                        ctypes.c_int, ctypes.c_int]),
    'dnnl_memory_desc_destroy': (ctypes.c_int, [_VP]),
    'dnnl_memory_desc_equal': (ctypes.c_int, [_VP, _VP]),
    'dnnl_memory_desc_get_size': (ctypes.c_size_t, [_VP]),
    'dnnl_memory_create': (ctypes.c_int, [ctypes.POINTER(_VP), _VP, _VP, _VP]),
    'dnnl_memory_set_data_handle': (ctypes.c_int, [_VP, _VP]),
    'dnnl_memory_destroy': (ctypes.c_int, [_VP]),
    'dnnl_primitive_attr_create': (ctypes.c_int, [ctypes.POINTER(_VP)]),
    'dnnl_primitive_attr_destroy': (ctypes.c_int, [_VP]),
    'dnnl_primitive_attr_set_scratchpad_mode': (ctypes.c_int, [_VP, ctypes.c_int]),
    'dnnl_primitive_attr_set_post_ops': (ctypes.c_int, [_VP, _VP]),
    'dnnl_post_ops_create': (ctypes.c_int, [ctypes.POINTER(_VP)]),
    'dnnl_post_ops_append_eltwise': (ctypes.c_int, [_VP, ctypes.c_int, ctypes.c_float,
                                                    ctypes.c_float]),
    'dnnl_post_ops_destroy': (ctypes.c_int, [_VP]),
    'dnnl_primitive_desc_query_md': (_VP, [_VP, ctypes.c_int, ctypes.c_int]),
    'dnnl_primitive_desc_query': (ctypes.c_int, [_VP, ctypes.c_int, ctypes.c_int, _VP]),
    'dnnl_primitive_desc_destroy': (ctypes.c_int, [_VP]),
    'dnnl_primitive_create': (ctypes.c_int, [ctypes.POINTER(_VP), _VP]),
    'dnnl_primitive_destroy': (ctypes.c_int, [_VP]),
    'dnnl_primitive_execute': (ctypes.c_int, [_VP, _VP, ctypes.c_int, ctypes.POINTER(ExecArg)]),
    'dnnl_reorder_primitive_desc_create': (ctypes.c_int, [ctypes.POINTER(_VP), _VP, _VP, _VP, _VP,
                                                          _VP]),
    'dnnl_convolution_forward_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, ctypes.c_int, _VP, _VP, _VP, _VP,
                       Dims, Dims, Dims, Dims, _VP]),
    'dnnl_convolution_backward_data_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, _VP, _VP, _VP, Dims, Dims, Dims,
                       Dims, _VP, _VP]),
    'dnnl_convolution_backward_weights_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, _VP, _VP, _VP, _VP, Dims, Dims,
                       Dims, Dims, _VP, _VP]),
    'dnnl_pooling_forward_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, ctypes.c_int, _VP, _VP, Dims, Dims,
                       Dims, Dims, Dims, _VP]),
    'dnnl_eltwise_forward_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, ctypes.c_int, _VP, _VP,
                       ctypes.c_float, ctypes.c_float, _VP]),
    'dnnl_eltwise_backward_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, _VP, _VP, _VP, ctypes.c_float,
                       ctypes.c_float, _VP, _VP]),
    'dnnl_binary_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, _VP, _VP, _VP, _VP]),
    'dnnl_pooling_backward_primitive_desc_create': (
        ctypes.c_int, [ctypes.POINTER(_VP), _VP, ctypes.c_int, _VP, _VP, Dims, Dims, Dims, Dims,
                       Dims, _VP, _VP]),
}


class DnnlError(RuntimeError):
    pass


def _candidates():
    """Paths that may hold libdnnl.so.3: $DIM_ONEDNN_LIBRARY, then the wheels' own files."""
    env = os.environ.get('DIM_ONEDNN_LIBRARY')
    if env:
        return [env]
    paths = []
    for name in DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in dist.files or ():
            if f.name.startswith('libdnnl.so'):
                paths.append(os.path.normpath(str(dist.locate_file(f))))
    return sorted(set(paths), key=lambda p: (not p.endswith('.so.3'), p))


class Library:
    """The loaded libdnnl with one CPU engine and one stream."""

    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
            setattr(self, name[len('dnnl_'):], fn)
        v = self.version().contents
        self.version_info = (v.major, v.minor, v.patch)
        if v.major != 3:
            raise DnnlError(f'oneDNN {v.major}.{v.minor} at {path}: 3.x is needed')
        self.engine, self.stream = _VP(), _VP()
        check(self.engine_create(ctypes.byref(self.engine), ENGINE_CPU, 0), 'engine_create')
        check(self.stream_create(ctypes.byref(self.stream), self.engine, STREAM_DEFAULT_FLAGS),
              'stream_create')
        # primitives use a scratchpad we pass (a NumPy buffer reused between calls);
        # attr_relu also applies max(., 0) to the output (a fused ReLU post-op)
        self.attr, self.attr_relu = self._attr(), self._attr()
        post_ops = _VP()
        check(self.post_ops_create(ctypes.byref(post_ops)), 'post_ops_create')
        check(self.post_ops_append_eltwise(post_ops, ELTWISE_RELU, 0.0, 0.0), 'post_ops')
        check(self.primitive_attr_set_post_ops(self.attr_relu, post_ops), 'set_post_ops')
        self.post_ops_destroy(post_ops)  # (the attribute keeps its own copy)

    def _attr(self):
        attr = _VP()
        check(self.primitive_attr_create(ctypes.byref(attr)), 'primitive_attr_create')
        check(self.primitive_attr_set_scratchpad_mode(attr, SCRATCHPAD_USER),
              'set_scratchpad_mode')
        return attr


def check(status, what):
    if status != SUCCESS:
        raise DnnlError(f'oneDNN {what} failed (status {status})')


_LIB = None
_ERROR = None


def library():
    """The loaded ``Library``, or None (see ``load_error()``) where oneDNN cannot be used."""
    global _LIB, _ERROR
    if _LIB is None and _ERROR is None:
        paths = _candidates()
        if not paths:
            _ERROR = 'no oneDNN library found (pip install --no-deps onednn-cpu-gomp==2023.2.0)'
        for path in paths:
            try:
                _LIB = Library(path)
                _ERROR = None
                break
            except (OSError, AttributeError, DnnlError) as e:
                _ERROR = f'{path}: {e}'
    return _LIB


def load_error():
    return _ERROR


@functools.cache
def has_avx512():
    """Whether oneDNN runs AVX-512 (avx512_core) kernels here: the CPU has it and
    ``ONEDNN_MAX_CPU_ISA`` does not stop below it."""
    isa = library().get_effective_cpu_isa()
    return isa & ISA_AVX512_CORE == ISA_AVX512_CORE


# ---------------------------------------------------------------------------------------------
# Memory descriptors, memories, primitives
# ---------------------------------------------------------------------------------------------
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)  # NumPy's bfloat16 (ml_dtypes): 2 bytes, kind 'V'
DTYPES = {np.dtype(np.float32): F32, BFLOAT16: BF16, np.dtype(np.uint8): U8}
NUMPY_DTYPES = {dt: numpy_dtype for numpy_dtype, dt in DTYPES.items()}


class MemoryDesc:
    """An owned dnnl_memory_desc_t."""

    def __init__(self, handle):
        self.handle = handle

    @classmethod
    def strided(cls, shape, dtype, strides):
        """Plain layout: ``strides`` in elements (one per dimension)."""
        lib = library()
        h = _VP()
        check(lib.memory_desc_create_with_strides(ctypes.byref(h), len(shape), Dims(*shape),
                                                  dtype, Dims(*strides)), 'memory_desc')
        return cls(h)

    @classmethod
    def tagged(cls, shape, dtype, tag):
        lib = library()
        h = _VP()
        check(lib.memory_desc_create_with_tag(ctypes.byref(h), len(shape), Dims(*shape), dtype,
                                              tag), 'memory_desc')
        return cls(h)

    @classmethod
    def of(cls, a, dtype=None):
        """The descriptor of NumPy array ``a`` as it lies in memory (the stride of a leading
        dimension of extent 1, which never matters, as in a dense array)."""
        strides = [s // a.itemsize for s in a.strides]
        if a.ndim > 1 and a.shape[0] == 1:
            strides[0] = max(max(s * e for s, e in zip(strides[1:], a.shape[1:])), 1)
        return cls.strided(a.shape, DTYPES[a.dtype] if dtype is None else dtype, strides)

    def __del__(self):
        if self.handle and _LIB is not None:
            _LIB.memory_desc_destroy(self.handle)


def md_size(md):
    return int(library().memory_desc_get_size(md))


def md_equal(a, b):
    return bool(library().memory_desc_equal(a, b))


class Primitive:
    """A primitive with its descriptor, one dnnl_memory_t per argument (data handle set per
    call) and the size of its scratchpad.

    ``args``: {arg: query or (query, index)} of the descriptors to ask the pd for; ``mds``:
    {arg: const dnnl_memory_desc_t} as the primitive wants them (owned by the pd).
    """

    def __init__(self, pd, args, keep=()):
        lib = library()
        self.pd = pd
        self.keep = keep  # descriptors the pd was created from
        self.prim = _VP()
        check(lib.primitive_create(ctypes.byref(self.prim), pd), 'primitive_create')
        self.mds = {}
        self.mems = {}
        for arg, query in args.items():
            query, index = query if isinstance(query, tuple) else (query, 0)
            md = lib.primitive_desc_query_md(pd, query, index)
            self.mds[arg] = md
            mem = _VP()
            check(lib.memory_create(ctypes.byref(mem), md, lib.engine, None), 'memory_create')
            self.mems[arg] = mem
        sp = lib.primitive_desc_query_md(pd, QUERY_SCRATCHPAD_MD, 0)
        self.scratch_bytes = md_size(sp) if sp else 0
        if self.scratch_bytes:
            mem = _VP()
            check(lib.memory_create(ctypes.byref(mem), sp, lib.engine, None), 'memory_create')
            self.mems[ARG_SCRATCHPAD] = mem
        self._args = (ExecArg * len(self.mems))()
        for i, (arg, mem) in enumerate(self.mems.items()):
            self._args[i].arg, self._args[i].memory = arg, mem

    def impl(self):
        """The implementation oneDNN chose (e.g. 'brg:avx512_core_bf16')."""
        out = ctypes.c_char_p()
        library().primitive_desc_query(self.pd, QUERY_IMPL_INFO_STR, 0, ctypes.byref(out))
        return out.value.decode()

    def md(self, arg):
        return self.mds[arg]

    def __call__(self, buffers):
        """Run with {arg: NumPy array} (each laid out as ``md(arg)`` says)."""
        lib = library()
        for arg, a in buffers.items():
            check(lib.memory_set_data_handle(self.mems[arg], a.ctypes.data), 'set_data_handle')
        if self.scratch_bytes:
            check(lib.memory_set_data_handle(self.mems[ARG_SCRATCHPAD],
                                             scratchpad(self.scratch_bytes).ctypes.data),
                  'set_data_handle')
        check(lib.primitive_execute(self.prim, lib.stream, len(self.mems), self._args), 'execute')
        check(lib.stream_wait(lib.stream), 'stream_wait')

    def __del__(self):
        if _LIB is None:
            return
        for mem in self.mems.values():
            _LIB.memory_destroy(mem)
        _LIB.primitive_destroy(self.prim)
        _LIB.primitive_desc_destroy(self.pd)


_SCRATCH = np.empty(0, np.uint8)


def scratchpad(nbytes):
    """A reused, 64-byte aligned buffer of at least ``nbytes`` (primitives run one at a time)."""
    global _SCRATCH
    if _SCRATCH.size < nbytes + 64:
        _SCRATCH = np.empty(nbytes + 64, np.uint8)
    off = (-_SCRATCH.ctypes.data) % 64
    return _SCRATCH[off:off + nbytes]


def aligned_empty(nbytes):
    """A 64-byte aligned uint8 buffer of ``nbytes`` (``nnet.cpu.memory.empty``)."""
    return memory.empty((nbytes,), np.uint8)


_CACHE = {}


def cached(key, make):
    """The primitive cached under ``key``, made by ``make()`` on first use."""
    p = _CACHE.get(key)
    if p is None:
        if len(_CACHE) > 512:
            _CACHE.clear()
        p = _CACHE[key] = make()
    return p


def reorder(src_md, dst_md, key):
    """A cached reorder primitive from ``src_md`` to ``dst_md`` (MemoryDesc or raw handles)."""
    def make():
        lib = library()
        s = getattr(src_md, 'handle', src_md)
        d = getattr(dst_md, 'handle', dst_md)
        pd = _VP()
        check(lib.reorder_primitive_desc_create(ctypes.byref(pd), s, lib.engine, d, lib.engine,
                                                lib.attr), 'reorder')
        return Primitive(pd, {ARG_SRC: QUERY_SRC_MD, ARG_DST: QUERY_DST_MD},
                         keep=(src_md, dst_md))
    return cached(('reorder',) + key, make)
