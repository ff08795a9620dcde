"""Evaluation runs on a small seed-layout dataset written here, and on alphamatting.com's images."""
import csv
import os
import shutil

import numpy as np
import pytest
import skimage.io
from scipy import ndimage

import evaluate
import options
from tests.helpers import one_error_line
from utils.data import synthetic
from utils.data.trimap import erode_to_trimap
from utils.evaluation import report
from utils.evaluation.metrics import evaluate_all
from utils.images import composite, read_alpha, read_trimap, to_uint8

H, W = 48, 64
NAMES = ['s0.png', 's1.png']
SETS = {'a': 2, 'b': 5}  # trimap set: unknown-band dilation in pixels


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """input/ gt/ trimap/a/ trimap/b/ with two synthetic composites."""
    root = tmp_path_factory.mktemp('dataset')
    rng = np.random.default_rng(0)
    for name in NAMES:
        alpha = synthetic.make_alpha(rng, H, W)
        image = composite(alpha, synthetic.make_foreground(rng, H, W),
                          synthetic.make_background(rng, H, W))
        alpha8 = to_uint8(alpha)
        for sub, array in [('input', to_uint8(image)), ('gt', alpha8)] + [
                (f'trimap/{s}', erode_to_trimap(alpha8 / 255.0, d, d)) for s, d in SETS.items()]:
            os.makedirs(root / sub, exist_ok=True)
            skimage.io.imsave(root / sub / name, array, check_contrast=False)
    return root


@pytest.fixture(scope='module')
def full_run(dataset, ckpt, tmp_path_factory):
    """dim, closed_form and the ground truth as --pred_dir, mattes kept with --save_dir."""
    out = tmp_path_factory.mktemp('run')
    code = evaluate.main([str(dataset), '--method', 'dim', 'closed_form', '--pred_dir',
                          str(dataset / 'gt'), '--ckpt_path', ckpt, '--out_dir', str(out / 'eval'),
                          '--save_dir', str(out / 'mattes')])
    return code, out


def test_csv_has_a_row_per_image_set_and_method_then_means(full_run):
    code, out = full_run
    assert code == 0
    rows = read_csv(out / 'eval' / 'metrics.csv')
    assert list(rows[0]) == ['name', 'trimap_set', 'method', 'SAD', 'MSE', 'Grad', 'Conn',
                             'seconds']
    methods = ['dim', 'closed_form', 'pred_dir']
    per_image = [r for r in rows if r['name'] != report.MEAN_NAME]
    assert [(r['name'], r['trimap_set'], r['method']) for r in per_image] == [
        (n, s, m) for n in NAMES for s in SETS for m in methods]
    means = [r for r in rows if r['name'] == report.MEAN_NAME]
    assert [(r['trimap_set'], r['method']) for r in means] == [
        (s, m) for m in methods for s in list(SETS) + [report.ALL_SETS]]
    for mean in means:
        chosen = [r for r in per_image if r['method'] == mean['method'] and
                  mean['trimap_set'] in (report.ALL_SETS, r['trimap_set'])]
        for key in report.METRICS:
            assert float(mean[key]) == pytest.approx(np.mean([float(r[key]) for r in chosen]),
                                                     rel=1e-5, abs=1e-9)
    for r in per_image:
        if r['method'] == 'pred_dir':  # the ground truth scored against itself
            assert [float(r[k]) for k in report.METRICS] == [0.0] * 4
            assert r['seconds'] == ''
        else:
            assert all(np.isfinite(float(r[k])) and float(r[k]) >= 0 for k in report.METRICS)
            assert float(r['seconds']) > 0
        if r['method'] == 'dim':  # an untrained network is far from the truth
            assert float(r['SAD']) > 0.01
    cf = [float(r['SAD']) for r in per_image if r['method'] == 'closed_form']
    dim = [float(r['SAD']) for r in per_image if r['method'] == 'dim']
    assert np.mean(cf) < np.mean(dim)


def test_summary_and_figure_are_written(full_run):
    _, out = full_run
    summary = (out / 'eval' / 'summary.md').read_text()
    table = [line for line in summary.splitlines() if line.startswith('|')]
    assert table[0].startswith('| method | trimap set |') and set(table[1]) <= set('|-:')
    assert len(table) == 2 + 3 * 3  # header, rule, 3 methods x (2 sets + all)
    assert '| closed_form | b | 2 |' in summary and '| pred_dir | all | 4 | 0.00 |' in summary
    figure = skimage.io.imread(out / 'eval' / 'figure.png')
    assert figure.ndim == 3 and 300 < figure.shape[0] < 3000 and 400 < figure.shape[1] < 3000
    assert figure[..., :3].std() > 10  # not blank
    assert not [f for f in os.listdir(out / 'eval') if f.startswith('.tmp')]


def test_saved_mattes_are_8bit_with_known_pixels_forced_and_score_the_same(full_run, dataset,
                                                                          tmp_path):
    _, out = full_run
    for s in SETS:
        for name in NAMES:
            matte = skimage.io.imread(out / 'mattes' / 'dim' / s / name)
            trimap = skimage.io.imread(dataset / 'trimap' / s / name)
            assert matte.shape == (H, W) and matte.dtype == np.uint8
            assert np.all(matte[trimap == 0] == 0) and np.all(matte[trimap == 255] == 255)
    code = evaluate.main([str(dataset), '--pred_dir', str(out / 'mattes' / 'dim'),
                          '--out_dir', str(tmp_path)])
    assert code == 0
    first = {(r['name'], r['trimap_set']): r for r in read_csv(out / 'eval' / 'metrics.csv')
             if r['method'] == 'dim'}
    again = {(r['name'], r['trimap_set']): r for r in read_csv(tmp_path / 'metrics.csv')}
    for key, row in first.items():
        assert [row[k] for k in report.METRICS] == [again[key][k] for k in report.METRICS]


def test_progress_and_table_on_stdout(dataset, tmp_path, capsys):
    code = evaluate.main([str(dataset), '--method', 'knn', '--names', 's1', '--trimap_sets', 'b',
                          '--out_dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert '[1/1] s1.png b knn: SAD' in out
    assert any(line.startswith('knn') and ' b ' in line for line in out.splitlines())
    assert [r['name'] for r in read_csv(tmp_path / 'metrics.csv')] == ['s1.png', 'MEAN', 'MEAN']


@pytest.mark.parametrize('case', ['no_dataset', 'missing_gt', 'unknown_name', 'unknown_set',
                                  'corrupt_ckpt', 'missing_prediction', 'missing_default_ckpt',
                                  'trimap_without_background'])
def test_bad_inputs_give_one_error_line(dataset, ckpt, tmp_path, capsys, monkeypatch, case):
    root, extra = dataset, ['--method', 'closed_form']
    if case == 'no_dataset':
        root = tmp_path / 'nothing'
    elif case == 'missing_gt':
        root = tmp_path / 'copy'
        shutil.copytree(dataset, root)
        os.remove(root / 'gt' / NAMES[1])
    elif case == 'unknown_name':
        extra += ['--names', 's0', 'zebra']
    elif case == 'unknown_set':
        extra += ['--trimap_sets', 'c']
    elif case == 'corrupt_ckpt':
        garbage = tmp_path / 'garbage.npz'
        garbage.write_bytes(b'PK\x03\x04' + np.random.default_rng(0).bytes(2000))
        extra = ['--ckpt_path', str(garbage)]
    elif case == 'trimap_without_background':
        root = tmp_path / 'copy'
        shutil.copytree(dataset, root)
        skimage.io.imsave(root / 'trimap' / 'b' / NAMES[0],
                          np.where(np.arange(W) < 10, 255, 128).astype(np.uint8)[None].repeat(H, 0),
                          check_contrast=False)
        extra += ['--trimap_sets', 'b']
    elif case == 'missing_prediction':
        (tmp_path / 'preds').mkdir()
        extra += ['--pred_dir', str(tmp_path / 'preds')]
    else:
        monkeypatch.setattr(options, 'DEFAULT_CHECKPOINT', str(tmp_path / 'ckpt' / 'dim.npz'))
        extra = []
    code = evaluate.main([str(root), '--out_dir', str(tmp_path / 'out')] + extra)
    err = capsys.readouterr().err
    assert code == 1 and one_error_line(err), err
    assert not (tmp_path / 'out').exists()  # nothing half-written
    expected = {'trimap_without_background': 'closed_form failed', 'missing_gt': 'alpha missing',
                'unknown_name': 'zebra', 'unknown_set': 'trimap set c',
                'missing_default_ckpt': 'no trained checkpoint', 'missing_prediction': 's0.png'}
    assert expected.get(case, 'error') in err


def test_pred_dir_matches_metrics_on_alphamatting(shared_data, tmp_path):
    root = shared_data / 'alphamatting'
    gt = read_alpha(str(root / 'alpha' / 'GT05.png'))
    trimap = read_trimap(str(root / 'trimap1' / 'GT05.png'))
    pred = ndimage.gaussian_filter(gt, 2.0)  # a plausible, imperfect matte
    os.makedirs(tmp_path / 'preds' / 'trimap1')
    skimage.io.imsave(tmp_path / 'preds' / 'trimap1' / 'GT05.png', to_uint8(pred),
                      check_contrast=False)
    code = evaluate.main([str(root), '--names', 'GT05', '--trimap_sets', 'trimap1',
                          '--pred_dir', str(tmp_path / 'preds'),
                          '--out_dir', str(tmp_path / 'out')])
    assert code == 0
    row = read_csv(tmp_path / 'out' / 'metrics.csv')[0]
    assert (row['name'], row['trimap_set'], row['method']) == ('GT05.png', 'trimap1', 'pred_dir')
    expected_pred = to_uint8(pred)
    expected_pred[trimap == 0] = 0
    expected_pred[trimap == 255] = 255
    expected = evaluate_all(expected_pred, to_uint8(gt), trimap)
    assert expected['SAD'] > 0.1
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value, rel=1e-5)


def test_several_roots_score_together_with_names_from_each(dataset, ckpt, tmp_path):
    """Held-back photographs of two datasets in one run: per-set means, then all of them."""
    other = tmp_path / 'other'
    for sub in ('input', 'gt', 'trimap/a'):
        os.makedirs(other / sub)
        shutil.copy(dataset / sub / 's0.png', other / sub / 'o0.png')
    out = tmp_path / 'eval'
    assert evaluate.main([str(dataset), str(other), '--names', 's1', 'o0', '--method', 'dim',
                          '--ckpt_path', ckpt, '--out_dir', str(out)]) == 0
    rows = read_csv(out / 'metrics.csv')
    scored = sorted((r['name'], r['trimap_set']) for r in rows if r['name'] != report.MEAN_NAME)
    assert scored == [('o0.png', 'a'), ('s1.png', 'a'), ('s1.png', 'b')]
    means = {r['trimap_set']: r for r in rows if r['name'] == report.MEAN_NAME}
    alone = {r['trimap_set']: float(r['SAD']) for r in rows if r['name'] != report.MEAN_NAME
             and r['name'] == 's1.png'}
    assert float(means['b']['SAD']) == pytest.approx(alone['b'], rel=1e-5)
    assert f'{dataset.name} + other' in (out / 'summary.md').read_text()


def test_a_name_in_no_root_is_one_error_line(dataset, ckpt, tmp_path, capsys):
    assert evaluate.main([str(dataset), str(dataset), '--names', 'nope', '--ckpt_path', ckpt,
                          '--out_dir', str(tmp_path / 'e')]) == 1
    err = capsys.readouterr().err
    assert one_error_line(err) and 'no such image' in err
