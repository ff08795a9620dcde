"""Pictures of training runs: whole-photograph validation curves of chained phases."""
import json

import numpy as np
import skimage.io

from scripts import plot_logs
from tests.helpers import one_error_line
from utils.training import curves


def write_history(root, iterations, sad):
    root.mkdir(parents=True)
    history = {'closed_form': {'mean': {'SAD': 4.0, 'MSE': 0.02, 'Grad': 7.0}, 'images': []},
               'validations': [{'iteration': i, 'mean': {'SAD': s, 'MSE': 0.1, 'Grad': 2 * s},
                                'images': []} for i, s in zip(iterations, sad)]}
    (root / 'whole_validation.json').write_text(json.dumps(history))
    return str(root)


def test_chained_phases_continue_the_iteration_axis(tmp_path):
    first = write_history(tmp_path / 's1_160', [150, 300], [30.0, 20.0])
    second = write_history(tmp_path / 's1_320', [200, 400], [15.0, 10.0])
    its, sad, grad, cf = curves.read_whole_validation(f'{first}+{second}')
    assert its == [150, 300, 500, 700] and sad == [30.0, 20.0, 15.0, 10.0]
    assert grad == [60.0, 40.0, 30.0, 20.0] and cf['SAD'] == 4.0
    out = tmp_path / 'curves.png'
    assert plot_logs.main(['--whole', f'{first}+{second}', first, '--labels', 'a', 'b',
                           '--out', str(out)]) == 0
    picture = skimage.io.imread(out)
    assert picture.ndim == 3 and np.ptp(picture) > 0


def test_missing_validation_and_wrong_labels_are_one_line(tmp_path, capsys):
    first = write_history(tmp_path / 'run', [150], [30.0])
    assert plot_logs.main(['--whole', str(tmp_path / 'none'), '--out', str(tmp_path / 'x.png')]) == 1
    assert one_error_line(capsys.readouterr().err)
    assert plot_logs.main(['--whole', first, '--labels', 'a', 'b', '--out', str(tmp_path / 'x.png')]) == 1
    assert one_error_line(capsys.readouterr().err)
    assert not (tmp_path / 'x.png').exists()


def test_examples_seen_scale_each_phase_by_its_batch_size(tmp_path):
    first = write_history(tmp_path / 's1_160', [150, 300], [30.0, 20.0])
    second = write_history(tmp_path / 's1_320', [200, 400], [15.0, 10.0])
    (tmp_path / 's1_160' / 'options.json').write_text(json.dumps({'batch_size': 4}))
    (tmp_path / 's1_320' / 'options.json').write_text(json.dumps({'batch_size': 2}))
    seen, *_ = curves.read_whole_validation(f'{first}+{second}', examples=True)
    assert seen == [600, 1200, 1600, 2000]
    out = tmp_path / 'curves.png'
    assert plot_logs.main(['--whole', f'{first}+{second}', '--examples', '--out', str(out)]) == 0
    assert out.stat().st_size > 0
