"""The README's Python examples run as written: each ```python block, in order, in a fresh
process of its own in one empty folder (the second block reads the run the first saved).
Marked `realdata`: they train on MNIST and run the lab's experiments on one seed (2 minutes)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.experiments import find

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_the_python_examples():
    blocks = python_blocks()
    assert len(blocks) == 2
    assert blocks[0].count("\n") <= 6  # the promise: five lines
    assert "ml.train(" in blocks[0] and "ml.run_experiment(" in blocks[1]


@pytest.mark.realdata
def test_the_readme_python_examples_run_as_written(tmp_path):
    outputs = []
    for block in python_blocks():
        done = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        outputs.append(done.stdout)
    first, second = outputs
    accuracy = float(re.search(r"test accuracy (\d+\.\d+)%", first)[1])
    assert accuracy >= 97.0  # the lab's model, 10 epochs: 97.7% ± 0.2 over 5 seeds
    assert (tmp_path / "runs" / "mine" / "model.keras").is_file()
    lines = second.splitlines()
    assert lines[0] == "[7 2 1 0 4] [7 2 1 0 4]"  # MNIST's first five test digits
    assert float(lines[1]) == pytest.approx(accuracy / 100, abs=5e-5)
    assert "101,770" in second  # the summary's total
    assert "7" in lines  # the seven drawn dark on white, read through read_image
    best, mean = lines[-2].split()
    assert best in {v.name for v in find("lab").variants}
    assert 96.0 <= float(mean.rstrip("%")) <= 99.0
    assert lines[-1] == "runs/experiments/lab/report/index.html"
    assert (tmp_path / lines[-1]).is_file()
