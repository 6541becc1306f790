"""`mnistlab report|notebook`: figures and a page to look at, and the lab's notebook."""

from __future__ import annotations

from pathlib import Path

import click

from mnistlab.cli.common import (
    complete_experiment,
    data_options,
    dataset_option,
    load_data,
    log,
    out_folder,
    say,
)


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@out_folder("Folder for the figures and index.html (default: FOLDER/report).")
@data_options
def report(folder: Path, out: Path | None, data_dir: Path | None, offline: bool) -> None:
    """Figures and one self-contained HTML page for a run folder or a sweep folder."""
    from mnistlab.reports.page import make

    page, figures = make(folder, out, lambda name: load_data(name, data_dir, offline))
    for figure in figures:
        say(f"Wrote {figure}")
    say(f"Wrote {page}")


@click.command()
@dataset_option
@click.option(
    "--experiments",
    "experiments",
    shell_complete=complete_experiment,
    help="Experiment for the experiments part: a shipped name or a TOML file (default: lab, "
    "or fashion for fashion-mnist).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("lab.ipynb"),
    show_default=True,
    help="The notebook to write; its figures and runs go to NAME-files/ beside it.",
)
@click.option("--html", is_flag=True, help="Also export it as NAME.html.")
@click.option("--quick", is_flag=True, help="Fewer epochs and seeds: runs in a few minutes.")
@click.option(
    "--sample-data",
    type=click.Path(path_type=Path, file_okay=False),
    help="A folder with mnist/ and fashion-mnist/ sample IDX files, used unverified "
    "(for a fast try or a test).",
)
@click.option(
    "--student",
    is_flag=True,
    help="Instead, a notebook for a student to fill in (TODO cells, the lab's questions), "
    "written, not run; `mnistlab check` checks the hand-in.",
)
def notebook(
    dataset: str,
    experiments: str | None,
    out: Path,
    html: bool,
    quick: bool,
    sample_data: Path | None,
    student: bool,
) -> None:
    """Write the lab's notebook, run every cell headless, and write its results into its text;
    or, with --student, the notebook a student fills in."""
    from mnistlab import notebook as nb

    if student:
        running: dict[str, object] = {"--experiments": experiments, "--html": html}
        running |= {"--quick": quick, "--sample-data": sample_data}
        if given := [name for name, value in running.items() if value]:
            raise click.UsageError(f"{given[0]} is for a notebook that runs, not for --student")
        say(f"Wrote {nb.write_student(dataset, out)}")
        return
    settings = nb.settings(dataset, experiments, quick, sample_data, out)
    log(f"Running {out} in a fresh kernel{' (quick version)' if quick else ''} ...")
    for written in nb.make(settings, out, html=html, progress=log):
        say(f"Wrote {written}")


COMMANDS = [report, notebook]
