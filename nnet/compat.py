"""What Chainer 7.8.1 needs from NumPy 1.x, restored under NumPy 2 before Chainer is imported.

Chainer 7.8.1 (the last release) uses two NumPy APIs that NumPy 2 removed; nothing else stops it
from importing and running under NumPy 2 (the whole test suite passes with just these two):

* ``numpy.sctypes`` (removed in NumPy 2.0): ``chainer/functions/array/as_strided.py`` reads
  ``np.sctypes['int']`` at import time and ``np.sctypes['float']`` in its backward pass. Restored
  as the dict of scalar types NumPy 1.x had.
* ``numpy.distutils`` (removed for Python >= 3.12): ``chainer/_environment_check.py`` imports
  ``numpy.distutils.system_info`` only to warn about a slow BLAS on macOS. Restored, where it
  cannot be imported, as a stub module whose ``get_info`` returns ``{}`` ("nothing known").

Under NumPy 1.x (and Python < 3.12) both are present and this module changes nothing. It patches
nothing else. Import it before ``chainer``: ``nnet/__init__.py`` and ``utils/__init__.py`` do, so
any ``import nnet...`` or ``import utils...`` comes first.
"""
import importlib.util
import sys
import types

import numpy as np

if not hasattr(np, 'sctypes'):
    np.sctypes = {
        'int': [np.int8, np.int16, np.int32, np.int64],
        'uint': [np.uint8, np.uint16, np.uint32, np.uint64],
        'float': [np.float16, np.float32, np.float64, np.longdouble],
        'complex': [np.complex64, np.complex128, np.clongdouble],
        'others': [bool, object, bytes, str, np.void],
    }

if 'numpy.distutils' not in sys.modules and (
        sys.version_info >= (3, 12) or importlib.util.find_spec('numpy.distutils') is None):
    _distutils = types.ModuleType('numpy.distutils')
    _system_info = types.ModuleType('numpy.distutils.system_info')
    _system_info.get_info = lambda name, notfound_action=0: {}
    _distutils.system_info = _system_info
    sys.modules['numpy.distutils'] = _distutils
    sys.modules['numpy.distutils.system_info'] = _system_info
