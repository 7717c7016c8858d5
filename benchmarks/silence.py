"""How long a command stays silent: runs it with stdout and stderr merged into a pipe (as a log
gets them, not a terminal), stamps each line as it arrives and reports the longest gap, counting
the start and the exit as lines; ``PYTHONUNBUFFERED`` is removed from its environment, as a
user's shell has none. Issue 24's target: no command that runs longer than 10 s stays
silent, i.e. the longest gap is under 10 s.

    python benchmarks/silence.py [--limit 10] [--show] -- fervid evaluate default --data ...

Prints one line: ``<longest gap> s longest silence, <lines> lines, <total> s, rc <code>: <command>``
(and the lines with their times with ``--show``); exits 1 when the gap exceeds ``--limit`` or the
command failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time


def gaps(cmd: list[str]) -> tuple[list[tuple[float, str]], float, int]:
    """The command's lines with their arrival times (seconds from the start), its run time and
    its exit status."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as in a user's shell
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    assert proc.stdout is not None
    lines = [(time.monotonic() - t0, line.rstrip("\n")) for line in proc.stdout]
    rc = proc.wait()
    return lines, time.monotonic() - t0, rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=10.0, help="longest allowed silence in seconds (10)")
    parser.add_argument("--show", action="store_true", help="print every line with its time")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given (put it after --)")
    lines, total, rc = gaps(cmd)
    times = [0.0] + [t for t, _ in lines] + [total]
    longest = max(b - a for a, b in zip(times, times[1:]))
    if args.show:
        for t, line in lines:
            print(f"{t:8.1f}  {line}")
    print(f"{longest:.1f} s longest silence, {len(lines)} lines, {total:.1f} s, rc {rc}: {shlex.join(cmd)}")
    return 0 if rc == 0 and longest <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
