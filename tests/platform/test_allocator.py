"""The allocator tuning the server applies before serving: socket-read-sized blocks (256 KiB) come
from the heap instead of a fresh mapping each time (what made proxied downloads fault memory in on
every read). Measured in fresh interpreters, whose thresholds nothing has moved yet."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import ctypes
import sys
from nekzus.server import tune_allocator

if sys.argv[1] == "tuned":
    assert tune_allocator()


class MallInfo2(ctypes.Structure):  # glibc's statistics; hblks = blocks served by their own mmap()
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
before = mallinfo2().hblks
blocks = [bytearray(256 * 1024) for _ in range(4)]
print(mallinfo2().hblks - before)
"""


def new_mappings(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout.strip())


def test_read_sized_blocks_stay_on_the_heap_once_tuned() -> None:
    assert new_mappings("default") == 4  # glibc maps each block above 128 KiB by itself
    assert new_mappings("tuned") == 0
