"""The one exception type that the command line turns into a clear message and exit code 2.

Library code raises `MnistlabError(problem, fix)` for anything the user can correct (bad input,
missing or corrupt data, a foreign run folder); everything else is a bug and keeps its traceback.
"""


class MnistlabError(Exception):
    """A problem the user can fix: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}. {self.fix}" if self.fix else self.problem
