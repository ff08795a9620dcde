"""Evaluation runs on a small seed-layout dataset written here, and on alphamatting.com's images."""
import csv
import os
import shutil
import subprocess
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]
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
                             'seconds', 'n', 'refused']
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
    assert table[0].startswith('| method | trimap set | scored | refused |')
    assert set(table[1]) <= set('|-:')
    assert len(table) == 2 + 3 * 3  # header, rule, 3 methods x (2 sets + all)
    assert '| closed_form | b | 2 | 0 |' in summary
    assert '| pred_dir | all | 4 | 0 | 0.00 |' in summary
    assert 'every method scored' not in summary  # nothing refused: one table
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
                                  'corrupt_ckpt', 'missing_default_ckpt', 'comp1k_and_root',
                                  'voc_without_comp1k'])
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
    elif case == 'comp1k_and_root':
        extra += ['--comp1k', str(tmp_path)]
    elif case == 'voc_without_comp1k':
        extra += ['--voc', str(tmp_path)]
    else:
        monkeypatch.setattr(options, 'DEFAULT_CHECKPOINT', str(tmp_path / 'ckpt' / 'dim.npz'))
        extra = []
    code = evaluate.main([str(root), '--out_dir', str(tmp_path / 'out')] + extra)
    err = capsys.readouterr().err
    assert code == 1 and one_error_line(err), err
    assert not (tmp_path / 'out').exists()  # nothing half-written
    expected = {'missing_gt': 'alpha missing', 'unknown_name': 'zebra',
                'unknown_set': 'trimap set c', 'missing_default_ckpt': 'no trained checkpoint',
                'comp1k_and_root': 'one of the two', 'voc_without_comp1k': 'go with --comp1k'}
    assert expected.get(case, 'error') in err


def test_a_refused_matte_is_recorded_and_the_evaluation_goes_on(dataset, ckpt, tmp_path, capsys):
    """Closed-form cannot run on a trimap without background, and --pred_dir lacks a matte: both
    are refused for that image alone; every other matte is scored and the tables are written."""
    root = tmp_path / 'copy'
    shutil.copytree(dataset, root)
    no_background = np.where(np.arange(W) < 10, 255, 128).astype(np.uint8)[None].repeat(H, 0)
    skimage.io.imsave(root / 'trimap' / 'b' / NAMES[0], no_background, check_contrast=False)
    preds = tmp_path / 'preds'
    shutil.copytree(dataset / 'gt', preds)
    os.remove(preds / NAMES[1])
    code = evaluate.main([str(root), '--method', 'dim', 'closed_form', '--pred_dir', str(preds),
                          '--ckpt_path', ckpt, '--out_dir', str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert code == 0
    assert f'{NAMES[0]} b closed_form: refused: closed_form failed' in out
    assert f'{NAMES[1]} a pred_dir: refused: no matte in' in out
    rows = read_csv(tmp_path / 'out' / 'metrics.csv')
    per_image = [r for r in rows if r['name'] not in (report.MEAN_NAME, report.COMMON_NAME)]
    refused = {(r['name'], r['trimap_set'], r['method']) for r in per_image if r['refused']}
    assert refused == {(NAMES[0], 'b', 'closed_form'), (NAMES[1], 'a', 'pred_dir'),
                       (NAMES[1], 'b', 'pred_dir')}
    assert all(r['SAD'] == '' for r in per_image if r['refused'])
    assert sum(r['method'] == 'dim' and not r['refused'] for r in per_image) == 4
    means = {(r['name'], r['method'], r['trimap_set']): r for r in rows
             if r['name'] in (report.MEAN_NAME, report.COMMON_NAME)}
    cf = means[report.MEAN_NAME, 'closed_form', report.ALL_SETS]
    assert (cf['n'], cf['refused']) == ('3', '1')
    scored_cf = [float(r['SAD']) for r in per_image if r['method'] == 'closed_form' and r['SAD']]
    assert float(cf['SAD']) == pytest.approx(np.mean(scored_cf), rel=1e-5)
    # over the images every method scored: s0 with set a alone
    for method in ('dim', 'closed_form', 'pred_dir'):
        assert means[report.COMMON_NAME, method, report.ALL_SETS]['n'] == '1'
    summary = (tmp_path / 'out' / 'summary.md').read_text()
    assert 'each method scored' in summary and 'every method scored' in summary
    assert '| closed_form | all | 3 | 1 |' in summary
    assert (tmp_path / 'out' / 'figure.png').is_file()


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


# --------------------------------------------------------------------------- Composition-1k
COMP1K_FGS = ['hair.png', 'glass.png']
# (width, height) of the backgrounds: larger, smaller in both, narrower only, shorter only, equal
COMP1K_BGS = [(90, 70), (40, 36), (50, 60), (80, 40), (W, H)]


def adobe_rule(fg_path, alpha_path, bg_path):
    """Adobe's test composite, computed here from the rule: the background upscaled (bicubic,
    by the larger ratio, sizes rounded up) only when smaller, its top-left corner kept,
    alpha F + (1 - alpha) B truncated to 8 bits."""
    import math

    from PIL import Image
    fg = np.asarray(Image.open(fg_path).convert('RGB'), np.float64)
    alpha = np.asarray(Image.open(alpha_path).convert('RGB'), np.float64) / 255.0
    bg = Image.open(bg_path).convert('RGB')
    h, w = fg.shape[:2]
    ratio = max(w / bg.size[0], h / bg.size[1])
    if ratio > 1:
        bg = bg.resize((math.ceil(bg.size[0] * ratio), math.ceil(bg.size[1] * ratio)),
                       Image.BICUBIC)
    bg = np.asarray(bg, np.float64)[:h, :w]
    return np.floor(fg * alpha + bg * (1 - alpha)).astype(np.uint8), fg, alpha, bg


@pytest.fixture(scope='module')
def comp1k_release(tmp_path_factory):
    """A miniature of Adobe's Test_set (2 foregrounds x 20 backgrounds) and a VOC JPEGImages."""
    from PIL import Image
    root = tmp_path_factory.mktemp('comp1k')
    test_set, voc = root / 'Combined_Dataset' / 'Test_set', root / 'VOC2012' / 'JPEGImages'
    adobe = test_set / 'Adobe-licensed images'
    for sub in ('fg', 'alpha', 'trimaps'):
        os.makedirs(adobe / sub)
    os.makedirs(voc)
    rng = np.random.default_rng(3)
    for name in COMP1K_FGS:
        alpha = synthetic.make_alpha(rng, H, W)
        skimage.io.imsave(adobe / 'fg' / name, to_uint8(synthetic.make_foreground(rng, H, W)),
                          check_contrast=False)
        skimage.io.imsave(adobe / 'alpha' / name, to_uint8(alpha), check_contrast=False)
        for k in range(20):
            skimage.io.imsave(adobe / 'trimaps' / name.replace('.png', f'_{k}.png'),
                              erode_to_trimap(alpha, 3 + k % 3, 3 + k % 3), check_contrast=False)
    bg_names = []
    for i, (w, h) in enumerate(COMP1K_BGS):
        name = f'2008_{i:06d}.jpg'
        background = rng.random((h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
        Image.fromarray(to_uint8(background)).save(voc / name, quality=95)
        bg_names.append(name)
    (test_set / 'test_fg_names.txt').write_text('\n'.join(COMP1K_FGS) + '\n')
    (test_set / 'test_bg_names.txt').write_text(
        '\n'.join(bg_names[i % len(bg_names)] for i in range(40)) + '\n')
    return test_set.parent, voc


def test_comp1k_is_built_by_adobes_rule_and_scored_on_its_trimaps(comp1k_release, tmp_path):
    combined, voc = comp1k_release
    cache, out = tmp_path / 'composites', tmp_path / 'eval'
    proc = subprocess.run(['bash', str(ROOT / 'scripts' / 'evaluate.sh'), '--comp1k',
                           str(combined), '--voc', str(voc), '--method', 'closed_form',
                           '--comp1k_cache', str(cache), '--out_dir', str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'about' in proc.stdout and 's left' in proc.stdout  # how long the rest will take
    adobe = combined / 'Test_set' / 'Adobe-licensed images'
    bg_names = (combined / 'Test_set' / 'test_bg_names.txt').read_text().split()
    truncated = False
    for i, fg in enumerate(COMP1K_FGS):
        for k in range(20):
            made = skimage.io.imread(cache / fg.replace('.png', f'_{k}.png'))
            expected, fg_f, alpha, bg = adobe_rule(adobe / 'fg' / fg, adobe / 'alpha' / fg,
                                                   voc / bg_names[20 * i + k])
            np.testing.assert_array_equal(made, expected)
            truncated |= bool(np.any(np.round(fg_f * alpha + bg * (1 - alpha)) != expected))
    assert truncated  # the rule truncates: rounding would differ somewhere
    rows = read_csv(out / 'metrics.csv')
    per_image = [r for r in rows if r['name'] != report.MEAN_NAME]
    assert len(per_image) == 40 and {r['trimap_set'] for r in per_image} == {'comp1k'}
    assert all(float(r['SAD']) >= 0 for r in per_image)
    assert 'Composition-1k (40 composites)' in (out / 'summary.md').read_text()


def test_comp1k_names_pick_foregrounds_built_in_memory(comp1k_release, tmp_path):
    combined, voc = comp1k_release
    assert evaluate.main(['--comp1k', str(combined / 'Test_set'), '--voc', str(voc), '--names',
                          'glass', '--method', 'closed_form', '--out_dir', str(tmp_path)]) == 0
    names = [r['name'] for r in read_csv(tmp_path / 'metrics.csv') if r['name'] != 'MEAN']
    assert names == [f'glass_{k}.png' for k in range(20)]


def test_comp1k_missing_background_is_one_error_line(comp1k_release, tmp_path, capsys):
    combined, _ = comp1k_release
    empty = tmp_path / 'voc'
    empty.mkdir()
    assert evaluate.main(['--comp1k', str(combined), '--voc', str(empty), '--method',
                          'closed_form', '--out_dir', str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert one_error_line(err) and '2008_000000.jpg: missing' in err
