"""The house's layout as the interpreter sees it: every module imports without CuPy (the CPU needs
none), no module imports another that imports it back, and nothing below the faces (the
command-line programs) imports their options."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = ('train', 'demo', 'evaluate', 'options')

# Imports every project module with CuPy made unimportable, recording which project module's
# top level imported which (at run time, through __import__), and prints the edges as JSON.
IMPORT_ALL = r'''
import builtins, json, sys
sys.modules['cupy'] = None  # "import cupy" raises ImportError
import nnet.compat
modules, edges, stack = sys.argv[1:], set(), []
project = {m.split('.')[0] for m in modules}
real_import = builtins.__import__

def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get('__name__', '')
    module = real_import(name, globals, locals, fromlist, level)
    # "from package import submodule" imports the submodule, not the package's other parts
    targets = [f'{name}.{f}' for f in fromlist or () if f'{name}.{f}' in sys.modules] or [name]
    for target in targets:
        if importer.split('.')[0] in project and target.split('.')[0] in project \
                and target != importer and target in modules and importer in modules:
            edges.add((importer, target))
    return module

builtins.__import__ = recording_import
for m in modules:
    __import__(m)
print(json.dumps(sorted(edges)))
'''


def project_modules():
    paths = [p for d in ('nnet', 'utils', 'scripts') for p in (ROOT / d).rglob('*.py')]
    paths += [ROOT / f'{face}.py' for face in FACES]
    names = ['.'.join(p.relative_to(ROOT).with_suffix('').parts) for p in paths]
    return sorted(n.removesuffix('.__init__') for n in names)


def import_edges():
    proc = subprocess.run([sys.executable, '-c', IMPORT_ALL, *project_modules()], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(e) for e in json.loads(proc.stdout.splitlines()[-1])]


def find_cycle(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                return path + [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = 'done'
        return None
    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle([('a', 'b'), ('b', 'c'), ('c', 'a')])[-1] == 'a'
    assert find_cycle([('a', 'b'), ('a', 'c'), ('b', 'c')]) is None


def test_modules_import_without_cupy_with_no_circle_and_no_upward_arrow():
    edges = import_edges()
    assert ('train', 'utils.loader') in edges  # the recording sees the imports
    assert find_cycle(edges) is None, f'import circle: {" -> ".join(find_cycle(edges))}'
    below = [(a, b) for a, b in edges if a.split('.')[0] in ('nnet', 'utils')]
    upward = [(a, b) for a, b in below if b.split('.')[0] in FACES + ('scripts',)]
    assert not upward, f'{upward[0][0]} imports {upward[0][1]}, a face'
    assert not [(a, b) for a, b in below if a.startswith('nnet') and b.startswith('utils')]
