"""Folder mode of the demo: every image of a folder with the trimap (or mask) of the same stem.

Each pair goes through ``utils.inference.pipeline.matte_one``. A pair that fails (unreadable, sizes differ,
no unknown pixels, an output that would overwrite an input) is reported in one line and skipped;
the others are written. Pairs whose outputs all exist are skipped unless ``overwrite``. Images
without a trimap, trimaps without an image and stems that several images share are listed.
After each pair a progress line: a bar, the count, the time of that image and the time left.
"""
import os
import sys
import time
from collections import defaultdict

from utils.errors import InputError
from utils.images import list_images, refuse_overwriting_inputs
from utils.inference import pipeline

BAR_WIDTH = 20


def by_stem(folder):
    """{stem: [file names]} of the images in ``folder``."""
    if not os.path.isdir(folder):
        raise InputError(f'{folder}: no such folder')
    stems = defaultdict(list)
    for name in list_images(folder):
        stems[os.path.splitext(name)[0]].append(name)
    return dict(stems)


def pair_by_stem(images_dir, guides_dir):
    """Images and trimaps (or masks) paired by file stem.

    Returns:
        (pairs [(stem, image path, guide path)], images without a guide [names],
        guides without an image [names], stems with several images or guides
        {stem: [names]}), each sorted by stem.
    """
    images, guides = by_stem(images_dir), by_stem(guides_dir)
    pairs, ambiguous = [], {}
    for stem in sorted(set(images) & set(guides)):
        if len(images[stem]) > 1 or len(guides[stem]) > 1:
            ambiguous[stem] = images[stem] + guides[stem]
            continue
        pairs.append((stem, os.path.join(images_dir, images[stem][0]),
                      os.path.join(guides_dir, guides[stem][0])))
    lonely_images = [n for s in sorted(set(images) - set(guides)) for n in images[s]]
    lonely_guides = [n for s in sorted(set(guides) - set(images)) for n in guides[s]]
    return pairs, lonely_images, lonely_guides, ambiguous


def progress_line(done, total, name, note, start):
    """'[####------]  3/10  name: note  (elapsed 12 s, about 28 s left)'."""
    filled = round(BAR_WIDTH * done / total)
    elapsed = time.perf_counter() - start
    left = elapsed / done * (total - done)
    return (f'[{"#" * filled}{"-" * (BAR_WIDTH - filled)}] {done:>{len(str(total))}}/{total}  '
            f'{name}: {note}  (elapsed {elapsed:.0f} s, about {left:.0f} s left)')


def run_folder(backend, images_dir, guides_dir, is_mask, out_dir, backgrounds, protected=(),
               band=None, refine=True, overwrite=False):
    """Matte every pair; print progress, then a summary. Returns the exit code (1 if any failed).

    Args:
        backend: a ``utils.inference.backends`` backend.
        guides_dir: the trimaps' folder, or the masks' folder when ``is_mask``.
        backgrounds: ``pipeline.read_backgrounds(...)``.
        protected: files no output may overwrite (the checkpoint, the backgrounds).
    """
    kind = 'mask' if is_mask else 'trimap'
    pairs, lonely_images, lonely_guides, ambiguous = pair_by_stem(images_dir, guides_dir)
    if not pairs:
        raise InputError(f'{images_dir} and {guides_dir}: no image has a {kind} of the same stem '
                         f'({len(lonely_images)} images, {len(lonely_guides)} {kind}s)')
    for label, names in ((f'images without a {kind}', lonely_images),
                         (f'{kind}s without an image', lonely_guides)):
        if names:
            print(f'{label} ({len(names)}): {", ".join(names)}')
    failed = {stem: f'{", ".join(names)}: several files with the stem {stem}'
              for stem, names in ambiguous.items()}
    for message in failed.values():
        print(f'error: {message}', file=sys.stderr)
    print(f'{len(pairs)} image/{kind} pairs -> {out_dir} ({backend.description})')
    all_inputs = [p for _, image, guide in pairs for p in (image, guide)] + list(protected)
    start = time.perf_counter()
    done, skipped, seconds = 0, 0, []
    for i, (stem, image_path, guide_path) in enumerate(pairs, 1):
        name = os.path.basename(image_path)
        outputs = pipeline.output_paths(out_dir, image_path, backgrounds, with_trimap=is_mask)
        try:
            refuse_overwriting_inputs(outputs.values(), all_inputs)
            if not overwrite and pipeline.complete(outputs):
                skipped += 1
                note = 'skipped, outputs exist (--overwrite to redo)'
            else:
                t = time.perf_counter()
                info = pipeline.matte_one(
                    backend, image_path, outputs, backgrounds, refine=refine, band=band,
                    **{('mask_path' if is_mask else 'trimap_path'): guide_path})
                seconds.append(time.perf_counter() - t)
                done += 1
                note = (f'{seconds[-1]:.2f} s ({info["width"]}x{info["height"]}, prediction '
                        f'{info["seconds"]:.2f} s)')
        except InputError as e:
            failed[stem] = str(e).splitlines()[0]
            print(f'error: {failed[stem]}', file=sys.stderr)
            note = 'failed'
        print(progress_line(i, len(pairs), name, note, start), flush=True)
    mean = f', {sum(seconds) / len(seconds):.2f} s per image' if seconds else ''
    print(f'done in {time.perf_counter() - start:.1f} s: {done} matted{mean}, {skipped} skipped '
          f'(already complete), {len(failed)} failed')
    for stem, message in failed.items():
        print(f'  failed: {message}')
    return 1 if failed else 0
