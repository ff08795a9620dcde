"""nnet.compat: Chainer 7.8.1 imports and runs under the installed NumPy, with nothing else patched."""
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT


def run_python(code):
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)


def test_chainer_imports_after_compat_and_as_strided_runs():
    out = run_python(
        'import nnet.compat, chainer, chainer.functions as F, numpy as np\n'
        'x = chainer.Variable(np.arange(6, dtype=np.float32))\n'
        'y = F.as_strided(x, (2, 2), (1, 1))\n'  # uses np.sctypes at import and in backward
        'F.sum(y * y).backward()\n'
        'print(x.grad.tolist())')
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['[0.0,', '4.0,', '4.0,', '0.0,', '0.0,', '0.0]']


def test_sctypes_lists_the_scalar_types():
    import nnet.compat  # noqa: F401
    assert np.sctypes['int'] == [np.int8, np.int16, np.int32, np.int64]
    assert np.float32 in np.sctypes['float'] and np.float64 in np.sctypes['float']


def test_compat_changes_nothing_else_in_numpy():
    out = run_python('import numpy as np\nbefore = set(dir(np))\nimport nnet.compat\n'
                     'print(sorted(set(dir(np)) - before))')
    assert out.returncode == 0, out.stderr[-2000:]
    added = eval(out.stdout)
    assert added in ([], ['sctypes']), added
    assert (added == ['sctypes']) == (int(np.__version__.split('.')[0]) >= 2)
