"""Train Deep Image Matting with Chainer's Trainer: ``bash scripts/train.sh DATASET_ROOT [options]``.

Re-running the same command resumes from the last snapshot in --log_root.
"""
from utils.errors import quiet_while_importing

quiet_while_importing(__name__)  # (first: Ctrl-C during the imports below ends quietly)

import os
import sys

import nnet.compat  # noqa: F401  (NumPy 2: before chainer; see nnet/compat.py)

# isort: split
import chainer
import numpy as np
from chainer import training
from chainer.training import extensions

import options
from nnet.loss import MattingLoss
from nnet.model import DIM, VGG_INPUT_SCALE
from utils.data.iterators import training_iterator
from utils.errors import InputError, run_reporting_errors
from utils.loader import (
    AugmentedDataset,
    MattingTransform,
    foreground_loaders,
    make_dataset,
    seed_layout_files,
)
from utils.training import distributed
from utils.training.checkpoint import SNAPSHOT_PREFIX, load_checkpoint, save_checkpoint
from utils.training.extensions import (
    AtomicPlotReport,
    DivergenceGuard,
    MattingEvaluator,
    ModelCheckpoint,
    TrainingDiverged,
    WholeImageValidation,
)
from utils.training.vgg import read_vgg16_params

INTERRUPTED_MESSAGE = 'interrupted: re-run the same command to resume from the last snapshot'
NOISY_ALPHA_FLOOR = 16 / 255  # --noisy_alpha_roots: alpha below this is noise, set to 0


def build_model(args):
    """The DIM to train: from --init_from, else fresh (optionally with VGG16 weights)."""
    if args.init_from:
        model = load_checkpoint(args.init_from)
        if model.config['width'] != args.width:
            print(f'note: --init_from has width {model.config["width"]}; using it', file=sys.stderr)
            args.width = model.config['width']
        return model
    model = DIM(args.width, input_scale=VGG_INPUT_SCALE if args.vgg_weights else 1.0)
    if args.vgg_weights:
        copied = model.encoder_decoder.load_vgg16(read_vgg16_params(args.vgg_weights))
        print(f'VGG16 weights loaded into {", ".join(copied)}')
    return model


def held_back_files(roots, names, trimap_sets=None):
    """{root: [names it holds]} for the held-back ``names`` over the seed-layout ``roots``
    (each name may live in a different root); InputError for a name no root has."""
    found = {}
    for root in dict.fromkeys(roots):
        try:
            files = seed_layout_files(root, trimap_sets=trimap_sets, names=names)
        except InputError:
            continue
        have = sorted({f.name for f in files} | {os.path.splitext(f.name)[0] for f in files})
        found[root] = [n for n in names if n in have]
    missing = [n for n in names if not any(n in held for held in found.values())]
    if missing:
        raise InputError(f'--val_names {missing[0]}: no seed-layout --dataset_root has it')
    return found


def build_datasets(args):
    """(training, validation) datasets of augmented examples."""
    kernel = tuple(args.trimap_kernel)
    if args.stage == 2:  # the paper trains refinement without random dilation
        kernel = (sum(kernel) // 2,) * 2
    common = dict(bg_dir=args.bg_dir, backgrounds_per_fg=args.n_bg, trimap_sets=args.trimap_sets)
    noisy = {os.path.realpath(r) for r in args.noisy_alpha_roots}
    raws = [make_dataset(root, exclude=args.val_names, **common,
                         alpha_floor=NOISY_ALPHA_FLOOR if os.path.realpath(root) in noisy else 0.0)
            for root in args.dataset_root]
    raw = raws[0] if len(raws) == 1 else chainer.datasets.ConcatenatedDataset(*raws)
    if args.val_root:
        val_raw = make_dataset(args.val_root, **common)
    elif args.val_names:  # the held-back photographs as they are (no re-compositing)
        held = held_back_files(args.dataset_root, args.val_names, args.trimap_sets)
        parts = [make_dataset(root, names=names, trimap_sets=args.trimap_sets)
                 for root, names in held.items()]
        val_raw = parts[0] if len(parts) == 1 else chainer.datasets.ConcatenatedDataset(*parts)
    else:  # hold back every tenth example (at least one)
        held = np.arange(len(raw)) % 10 == min(9, len(raw) - 1)
        order = np.concatenate([np.flatnonzero(held), np.flatnonzero(~held)])
        val_raw = chainer.datasets.SubDataset(raw, 0, int(held.sum()), order=order)
        raw = chainer.datasets.SubDataset(raw, int(held.sum()), len(raw), order=order)
    if len(raw) == 0:
        raise InputError('no training examples left after holding back validation examples')
    transform = dict(size=args.H, crop_sizes=args.crop_sizes, kernel_range=kernel,
                     generate_trimaps=not args.given_trimaps)
    train = AugmentedDataset(raw, MattingTransform(seed=args.seed, augment=args.augment,
                                                   partners=foreground_loaders(raw), **transform))
    val = AugmentedDataset(val_raw, MattingTransform(seed=args.seed + 1, flip=False, **transform))
    return train, chainer.datasets.SubDataset(val, 0, min(args.n_val, len(val)))


def build_trainer(args, job, model, train, device):
    """The Trainer of one process: the loss, the optimizer (averaged over the ranks under MPI),
    the iterator over this rank's share of each global batch, the updater."""
    loss = MattingLoss(model, stage=args.stage, alpha_weight=args.alpha_weight, eps=args.epsilon,
                       unknown_pixels=job.unknown_pixels())
    if args.optimizer == 'adam':
        optimizer = chainer.optimizers.Adam(alpha=args.base_lr)
    else:
        optimizer = chainer.optimizers.MomentumSGD(lr=args.base_lr, momentum=0.9)
    optimizer = job.optimizer(optimizer)
    loss.setup_optimizer(optimizer)
    train_iter = training_iterator(train, args.batch_size, args.seed, job.rank, job.size,
                                   args.loader_workers)
    updater = training.updaters.StandardUpdater(train_iter, optimizer, device=device)
    stop = (args.max_iter, 'iteration') if args.max_iter else (args.max_epochs, 'epoch')
    return job.trainer(updater, stop, out=args.log_root)


def add_extensions(trainer, args, job, model, val, device, n_train):
    """Validation, logs, plots and snapshots; rank 0 alone writes and prints (``if writer``)."""
    last_iteration = args.max_iter or args.max_epochs * -(-n_train // args.batch_size)

    def every(frq):
        return lambda t: t.updater.iteration % frq == 0 or t.updater.iteration >= last_iteration

    log_every, snapshot_every = every(args.log_frq), every(args.ckpt_frq)
    refine = args.stage != 1
    # on the GPU the guard reads the loss only where a log or a snapshot is written
    trainer.extend(DivergenceGuard(read_trigger=lambda t: log_every(t) or snapshot_every(t)))
    if args.optimizer == 'momentum_sgd':
        trainer.extend(extensions.LinearShift('lr', (args.base_lr, 0.0), (0, last_iteration)))
    crops = chainer.iterators.SerialIterator(job.shard(val), 1, repeat=False, shuffle=False)
    evaluator = MattingEvaluator(crops, model, refine, device, n_grid=4 if job.is_writer else 0)
    trainer.extend(job.evaluator(evaluator), trigger=every(args.val_frq))
    if not job.is_writer:
        return
    if args.val_whole_frq:
        files = [f for root, names in held_back_files(args.dataset_root, args.val_names,
                                                      args.trimap_sets).items()
                 for f in seed_layout_files(root, args.trimap_sets, names)]
        trainer.extend(WholeImageValidation(files, model, refine, batch_size=args.batch_size),
                       trigger=every(args.val_whole_frq))
    trainer.extend(extensions.observe_lr(observation_key='lr'), trigger=log_every)
    trainer.extend(extensions.LogReport(trigger=log_every))
    report_keys = ['epoch', 'iteration', 'main/loss', 'main/loss_alpha', 'main/loss_comp',
                   'validation/main/SAD', 'validation/main/MSE', 'validation/whole/SAD',
                   'validation/whole/Grad', 'lr', 'elapsed_time']
    trainer.extend(extensions.PrintReport(report_keys), trigger=log_every)
    if AtomicPlotReport.available():
        trainer.extend(AtomicPlotReport(['main/loss', 'main/loss_alpha', 'main/loss_comp'],
                                        'iteration', file_name='loss.png', trigger=log_every))
        trainer.extend(AtomicPlotReport(['validation/main/SAD'], 'iteration',
                                        file_name='validation_sad.png', trigger=log_every))
    trainer.extend(extensions.snapshot(filename=SNAPSHOT_PREFIX + '{.updater.iteration}', n_retains=2),
                   trigger=snapshot_every)
    trainer.extend(ModelCheckpoint(model), trigger=snapshot_every)
    trainer.extend(extensions.ProgressBar(update_interval=max(1, min(10, args.log_frq))))


def run(args, job=None):
    job = job or distributed.Job()  # one process, unless --distributed (utils/training/distributed.py)
    options.check_train_args(args)
    job.check_batch(args.batch_size)
    if args.val_whole_frq and not args.val_names:
        raise InputError('--val_whole_frq needs --val_names (the photographs to score whole)')
    device = job.device(args.gpu_id)
    np.random.seed(args.seed)  # Chainer's initializers draw from NumPy's global generator
    model = build_model(args)
    train, val = build_datasets(args)
    print(f'stage {args.stage}, width {args.width}: {len(train)} training examples, '
          f'{len(val)} validation crops, device {device}')
    model.to_device(device)
    device.use()
    trainer = build_trainer(args, job, model, train, device)
    if job.is_writer:
        options.save_options(args, args.log_root)
    add_extensions(trainer, args, job, model, val, device, len(train))
    job.ready()  # every rank set up (else all stop, rank 0 saying why); collectives from here
    job.share_weights(model, trainer.updater.get_optimizer('main'))
    resumed = job.resume(trainer, args.log_root)
    if resumed is not None:
        print(f'resuming from the snapshot of iteration {resumed}')
    trainer.run(show_loop_exception_msg=False)  # (errors: one line, from main())
    job.check_in_sync(model)
    if not job.is_writer:
        return
    model.to_cpu()
    final = os.path.join(args.log_root, 'model_final.npz')
    save_checkpoint(final, model)
    print(f'done: {final}')


def train(args):
    """One process's part of the run (alone, or one rank of an MPI job)."""
    job = distributed.Job.start(args)
    with job.reporting_errors(errors=(TrainingDiverged,), interrupted=INTERRUPTED_MESSAGE):
        run(args, job)


def main(argv=None):
    with distributed.stderr_on_rank0_only():
        args = options.train_parser().parse_args(argv)
    return run_reporting_errors(options.with_precision(train), args, errors=(TrainingDiverged,),
                                interrupted=INTERRUPTED_MESSAGE)


if __name__ == '__main__':
    sys.exit(main())
