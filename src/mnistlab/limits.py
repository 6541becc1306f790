"""A kernel with limits, for running a notebook that someone else wrote (`mnistlab check
--rerun`): `Limits.wrap(argv)` puts this file in front of the kernel's command line, in the
kernel spec, so that the kernel's own process starts with the limits set, and passes them on
to anything it starts:

    python .../mnistlab/limits.py CPU_SECONDS DATA_BYTES -- python -m ipykernel_launcher ...

sets RLIMIT_CPU and RLIMIT_DATA with `resource.setrlimit`, then replaces itself with the
command (`os.execv`). It runs as a file rather than `-m mnistlab.limits`, so that
Python does not import the package (and nbformat) on the way: it needs only the standard
library. RLIMIT_DATA bounds the memory a process allocates (its heap and private mappings,
where NumPy's and Keras's arrays live): JAX trains the lab's model under 2 GiB of it, and a
3 GiB array then fails with a MemoryError in its cell. RLIMIT_AS would count address space
too, which JAX reserves without using (a 3 GiB array failed under 4 GiB of it here). The
wall-clock limit is `notebook.execute`'s, from the same `Limits`. These are limits, not a
sandbox: the kernel can still read and write the files of the user who runs it, and reach the
network.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30


@dataclass(frozen=True)
class Limits:
    seconds: int = 1800  # wall clock for the whole notebook: the full lab takes 7 minutes here
    memory: int = 4 * GIB  # bytes of data for the kernel process

    @property
    def cpu_seconds(self) -> int:
        """CPU time for the kernel: the wall clock on every core (threads add up)."""
        return self.seconds * (os.cpu_count() or 1)

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started with these limits."""
        limits = [str(self.cpu_seconds), str(self.memory)]
        # -P: the package's folder is not put on sys.path, so its modules shadow nothing
        return [sys.executable, "-P", str(Path(__file__).resolve()), *limits, "--", *argv]


def main(args: list[str]) -> None:
    cpu, memory, separator, *command = args
    if separator != "--" or not command:
        raise SystemExit("usage: python limits.py CPU_SECONDS DATA_BYTES -- COMMAND...")
    # the soft limit sends SIGXCPU, which ends the kernel; the hard one a moment later, SIGKILL
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 5))
    resource.setrlimit(resource.RLIMIT_DATA, (int(memory), int(memory)))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
