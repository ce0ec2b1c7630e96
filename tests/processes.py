"""For tests of the worker's helper processes (the parse pool, the grouping process)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
PREAMBLE = f"import sys\nsys.path[:0] = [{TESTS!r}, {os.path.dirname(TESTS)!r}]\n"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def ends_with_its_owner_killed(script: str, timeout: float = 20.0) -> bool:
    """Run `script` (it starts a helper process, prints its pid and sleeps), kill -9 it,
    and say whether the helper ended within `timeout` seconds."""
    owner = subprocess.Popen([sys.executable, "-c", PREAMBLE + script],
                             stdout=subprocess.PIPE, text=True)
    try:
        helper = int(owner.stdout.readline())
        assert alive(helper)  # alive while its owner is
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(helper):
        time.sleep(0.1)
    return not alive(helper)


def ends_when_its_owner_exits(script: str, timeout: float = 20.0) -> bool:
    """Run `script` (it starts a helper, prints its pid and exits without stopping it) and
    say whether the owner and then the helper ended within `timeout` seconds each."""
    try:
        out = subprocess.run([sys.executable, "-c", PREAMBLE + script], capture_output=True,
                             text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return False  # the owner waited for its helper at exit
    helper = int(out.split()[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(helper):
        time.sleep(0.1)
    return not alive(helper)
