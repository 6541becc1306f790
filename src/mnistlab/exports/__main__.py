"""`python -m mnistlab.exports RUN_DIR FORMAT OUT [--quantize] [--data NPZ]`: an export in a
process of its own, on TensorFlow, for `export` called where Keras runs another backend. Each
line on stdout is JSON: {"progress": ...} as it goes, then {"report": ...} or {"error", "fix"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(args: list[str]) -> int:
    from mnistlab import backend
    from mnistlab.errors import MnistlabError

    backend.use("tensorflow", what="the export")
    from mnistlab.exports.convert import export_here

    def send(value: dict[str, object]) -> None:
        print(json.dumps(value), flush=True)

    run, format, out, *rest = args
    data = None
    if "--data" in rest:
        data = load_arrays(Path(rest[rest.index("--data") + 1]))
    try:
        report = export_here(
            run,
            format,
            Path(out),
            "--quantize" in rest,
            data,
            lambda message: send({"progress": message}),
        )
    except MnistlabError as e:
        send({"error": e.problem, "fix": e.fix})
        return 0
    send({"report": report.to_dict()})
    return 0


def load_arrays(path: Path):  # type: ignore[no-untyped-def]
    import numpy as np

    from mnistlab.data import Dataset

    arrays = np.load(path)
    described = json.loads(path.with_suffix(".json").read_text())
    return Dataset(
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        tuple(described["class_names"]),
        described["source"],
        described["name"],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
