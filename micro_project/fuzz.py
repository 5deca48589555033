"""Build and run the fuzz harness of the firmware's frame parser and server
(firmware/fuzz/qmcu_fuzz_frames.c) on the host with AddressSanitizer + UBSan.

    python -m micro_project.fuzz --frames 1000000 --seed 7
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .project_api import FIRMWARE_DIR, ToolMissingError
from .templates.host import SANITIZE_FLAGS

SOURCES = (FIRMWARE_DIR / "src" / "qmcu_frame.c", FIRMWARE_DIR / "src" / "qmcu_server.c",
           FIRMWARE_DIR / "fuzz" / "qmcu_fuzz_frames.c")


@dataclass
class FuzzResult:
    frames: int
    seed: int
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "fuzz:" in self.output

    def counts(self) -> dict[str, int]:
        m = re.search(r"fuzz: (\d+) frames fed, (\d+) parsed intact, (\d+) parser events, "
                      r"(\d+) replies", self.output)
        if not m:
            return {}
        return dict(zip(("fed", "intact", "events", "replies"), map(int, m.groups())))


def build(out_dir, cc: str = "gcc", max_payload: int = 512) -> Path:
    if shutil.which(cc) is None:
        raise ToolMissingError(f"fuzz harness: C compiler {cc!r} not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = out / "qmcu_fuzz_frames"
    cmd = [cc, "-std=c11", "-D_DEFAULT_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           *SANITIZE_FLAGS, f"-DQMCU_MAX_PAYLOAD={max_payload}u",
           f"-I{FIRMWARE_DIR / 'include'}", *map(str, SOURCES), "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fuzz harness build failed:\n{p.stderr.strip()}")
    return exe


def run(exe, frames: int, seed: int = 1, timeout: float = 1800.0) -> FuzzResult:
    """Feed `frames` generated frames; a hang is caught by the harness's own watchdog
    (SIGALRM) and, failing that, by `timeout`."""
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=0:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    watchdog = max(1, int(timeout) - 5)
    try:
        p = subprocess.run([str(exe), str(frames), str(seed), str(watchdog)],
                           capture_output=True, text=True, timeout=timeout, env=env)
        return FuzzResult(frames, seed, p.returncode, p.stdout + p.stderr)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return FuzzResult(frames, seed, -9, out + f"\nhang: no result within {timeout:g} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cc", default="gcc")
    ap.add_argument("--max-payload", type=int, default=512,
                    help="QMCU_MAX_PAYLOAD of the build (64..65535)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        res = run(build(d, a.cc, a.max_payload), a.frames, a.seed)
    print(res.output.strip())
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
