"""Runs a module as ``python -m`` would, and at exit writes its peak resident memory to a file.

    python bench/peak_memory.py OUT_FILE MODULE [ARGS...]

The peak is ``VmHWM`` of the process's own image, read at exit: ``ru_maxrss`` would not do, since a
child starts from its parent's high-water mark at fork and keeps it across exec, so a small stage
would report the benchmark's own memory.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def peak_kilobytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    out, module = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    atexit.register(lambda: out.write_text(str(peak_kilobytes())))
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
