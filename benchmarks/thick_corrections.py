"""Corrections as the page would collect them, to try `mnistlab finetune` on: MNIST training
digits written with a thick marker (each stroke widened by a grey dilation of `--width`
pixels, then enlarged to 112x112 and written dark on white, as a drawing would come), kept
only where the run misreads them, with their true label, as a person would correct them.

    python benchmarks/thick_corrections.py RUN_DIR CORRECTIONS_DIR [--count 60] [--width 4]
    mnistlab finetune RUN_DIR --corrections CORRECTIONS_DIR

The digits come from the training set, so MNIST's test set stays unseen by the fine-tuning.
It prints how many thick digits were read and how many misread.
"""

import argparse
import io
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("corrections", type=Path)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--width", type=int, default=4)
    args = parser.parse_args()

    from mnistlab import backend

    backend.use()
    from PIL import Image
    from scipy import ndimage

    from mnistlab import corrections, data, images, runs
    from mnistlab.errors import MnistlabError

    run = runs.load(args.run_dir)
    x_train, y_train = data.load(run.dataset).train
    read = kept = blank = 0
    for image, label in zip(x_train, y_train, strict=True):
        thick = ndimage.grey_dilation(image, size=(args.width, args.width))
        picture = Image.fromarray(255 - thick).resize((112, 112), Image.Resampling.BILINEAR)
        raw = io.BytesIO()
        picture.save(raw, "PNG")
        try:
            prepared = images.read_image(raw.getvalue())
        except MnistlabError:  # the marker filled the whole picture: no paper left to see
            blank += 1
            continue
        said = int(run.predict(prepared).argmax())
        read += 1
        if said != label:
            corrections.save(
                args.corrections,
                prepared.pixels,
                int(label),
                run.class_names,
                raw=raw.getvalue(),
                said={"label": said},
            )
            kept += 1
            if kept == args.count:
                break
    print(
        f"{read} thick digits read, {kept} misread and kept in {args.corrections}; "
        f"{blank} left out, too thick to read"
    )


if __name__ == "__main__":
    main()
