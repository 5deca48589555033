"""Bare-metal programs on QEMU's Arm boards: build an ELF with arm-none-eabi-gcc, run it.

The board layer lives in ``micro_project/boards/``: ``startup.c`` (vector table, reset handler
copying .data, zeroing .bss, enabling the FPU), one linker script per board and a tiny HAL
(``hal.h``: CMSDK UART0, CMSDK Timer0, semihosting exit). ``main()``'s return value becomes
QEMU's exit status.

Timing: QEMU runs with ``-icount shift=6`` (every guest instruction advances virtual time by
64 ns), so Timer0 counts deterministically; ``Board.instructions(ticks)`` converts ticks to
executed instructions with the factor measured for that board (tests/micro_project).

Modelled cycles: with the plugin ``micro_project/qemu_plugin`` (built by ``.ci/setup`` into
``build/qemu-plugin``), QEMU also counts instructions and Cortex-M4 cycles (the TRM's cost per
instruction, see its README). Every call of ``hal_timer_read()`` is a mark: the plugin writes its
counters to a file as the call starts, so the region between two timer reads of the firmware
has exact counts as soon as the firmware has answered (``CountsFile``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from .board_table import QEMU_BOARDS

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
ICOUNT_SHIFT = 6
PLUGIN_ENV = "QMCU_QEMU_PLUGIN"           # path of libqmcu_cycles.so, if not the default
PLUGIN_DEFAULT = BOARDS_DIR.parent.parent / "build" / "qemu-plugin" / "libqmcu_cycles.so"
MARK_SYMBOL = "hal_timer_read"            # a timer read that marks region borders


@dataclass(frozen=True)
class Board:
    name: str                    # QEMU machine name, also the linker-script name
    cpu: str
    cflags: tuple[str, ...]      # -mcpu/-mfpu/-mfloat-abi
    uart_base: int
    timer_base: int
    timer_hz: int                # Timer0 clock
    has_dsp: bool                # ARMv7E-M/ARMv8.1-M DSP extension (SMLAD, SXTB16, ...)
    extra_defines: tuple[str, ...] = ()

    @property
    def linker_script(self) -> Path:
        return BOARDS_DIR / f"{self.name}.ld"

    @property
    def ticks_per_instruction(self) -> float:
        """Timer0 ticks per guest instruction under -icount shift=6 (64 ns/instruction)."""
        return (1 << ICOUNT_SHIFT) * 1e-9 * self.timer_hz

    def instructions(self, ticks: int) -> int:
        return int(round(ticks / self.ticks_per_instruction))

    @property
    def cycle_table(self) -> str | None:
        """The cycles plugin's cost table for this CPU (cpu=...), None: no model."""
        return {"cortex-m4": "m4", "cortex-m55": "m55"}.get(self.cpu)

    @property
    def models_cycles(self) -> bool:
        """The plugin's cost table is the Cortex-M4's: cycles are reported for M4 boards only."""
        return self.cpu == "cortex-m4"


def _board(machine: str, uart_base: int, timer_base: int, *extra_defines: str) -> Board:
    """The board layer's addresses on top of the board table's CPU and counter rate."""
    t = QEMU_BOARDS[machine]
    return Board(machine, t.cpu.name, t.cpu.gcc_flags, uart_base, timer_base, t.counter_hz,
                 t.cpu.dsp, extra_defines)


BOARDS: dict[str, Board] = {
    "mps2-an386": _board("mps2-an386", 0x40004000, 0x40000000),
    "mps2-an500": _board("mps2-an500", 0x40004000, 0x40000000),
    # SSE-300 system counter (32 MHz) read through system timer 0
    "mps3-an547": _board("mps3-an547", 0x59303000, 0x58000000,
                         "HAL_SSE_COUNTER_CTRL=0x58100000u"),
}
DEFAULT_BOARD = "mps2-an386"


@dataclass
class RunResult:
    exit_code: int | None        # None when the run timed out
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class ToolMissing(RuntimeError):
    """arm-none-eabi-gcc or qemu-system-arm is not installed."""


class BuildError(RuntimeError):
    pass


def have_toolchain() -> bool:
    return shutil.which(GCC) is not None and shutil.which(QEMU) is not None


def get_board(board: str | Board) -> Board:
    if isinstance(board, Board):
        return board
    try:
        return BOARDS[board]
    except KeyError:
        raise ValueError(f"unknown board {board!r}; known boards: {', '.join(BOARDS)}") \
            from None


def board_sources() -> list[Path]:
    return [BOARDS_DIR / "startup.c", BOARDS_DIR / "hal.c"]


def build_elf(sources, board: str | Board = DEFAULT_BOARD, out_dir=".", include_dirs=(),
              defines=(), opt: str = "-O2", name: str = "app", extra_cflags=(),
              link_board: bool = True) -> Path:
    """Compile and link `sources` (plus the board's startup and HAL) into ``out_dir/name.elf``.

    defines: "NAME" or "NAME=VALUE" strings. Returns the ELF path; raises BuildError with the
    compiler's message on failure."""
    b = get_board(board)
    if shutil.which(GCC) is None:
        raise ToolMissing(f"{GCC} not found: apt-get install gcc-arm-none-eabi "
                          "libnewlib-arm-none-eabi")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    elf = out / f"{name}.elf"
    srcs = [str(s) for s in sources] + ([str(s) for s in board_sources()] if link_board else [])
    cmd = [GCC, *b.cflags, "-mthumb", opt, "-g", "-std=gnu11", "-ffunction-sections",
           "-fdata-sections", f"-I{BOARDS_DIR}", *[f"-I{d}" for d in include_dirs],
           f"-DHAL_UART_BASE={b.uart_base:#x}u", f"-DHAL_TIMER_BASE={b.timer_base:#x}u",
           *[f"-D{d}" for d in (*b.extra_defines, *defines)], *extra_cflags, *srcs,
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           f"-T{b.linker_script}", "-Wl,--gc-sections", f"-Wl,-Map={out / (name + '.map')}",
           "-o", str(elf), "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(f"{GCC} failed for board {b.name} ({' '.join(map(str, sources))}):\n"
                         f"{p.stderr.strip()}")
    return elf


def cycle_plugin() -> Path | None:
    """The built modelled-cycles plugin, or None (run .ci/setup to build it)."""
    p = Path(os.environ.get(PLUGIN_ENV) or PLUGIN_DEFAULT)
    return p if p.is_file() else None


def plugin_args(elf, counts, mark: str = MARK_SYMBOL, table: str = "m4") -> list[str]:
    """QEMU arguments loading the cycles plugin, writing marks and totals to `counts`; every
    call of the function `mark` (called only at region borders) is a mark."""
    lib = cycle_plugin()
    if lib is None:
        raise ToolMissing(f"the QEMU cycles plugin is not built ({PLUGIN_DEFAULT}): run "
                          "bash .ci/setup (or micro_project/qemu_plugin/build.sh)")
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    addr = [int(f[0], 16) for f in (line.split() for line in nm.splitlines())
            if len(f) == 3 and f[2] == mark]
    if not addr:
        raise BuildError(f"{elf} has no {mark}(): the cycles plugin needs it as a mark")
    return ["-plugin", f"{lib},out={counts},mark={addr[0] & ~1:#x}"
            + (f",cpu={table}" if table != "m4" else "")]


@dataclass(frozen=True)
class Counts:
    instructions: int
    cycles: int

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.instructions - other.instructions, self.cycles - other.cycles)


class CountsFile:
    """Reads the plugin's output as it grows: ``marks()`` returns the marks written since the
    previous call; ``regions()`` pairs them (start, end) into the counts of each region ended
    since its previous call (a region still open keeps its start for the next call)."""

    def __init__(self, path):
        self.path = Path(path)
        self._pos = 0
        self._open: list[Counts] = []
        self.total: Counts | None = None

    def marks(self) -> list[Counts]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n") + 1            # complete lines only
        self._pos += end
        out = []
        for line in data[:end].decode().splitlines():
            kind, ins, cyc = line.split()
            if kind == "mark":
                out.append(Counts(int(ins), int(cyc)))
            elif kind == "total":
                self.total = Counts(int(ins), int(cyc))
        return out

    def regions(self) -> list[Counts]:
        m = self._open + self.marks()
        self._open = m[len(m) // 2 * 2:]
        return [m[i + 1] - m[i] for i in range(0, len(m) - 1, 2)]


def qemu_command(elf, board: str | Board = DEFAULT_BOARD, icount: bool = True,
                 counts=None, mark: str = MARK_SYMBOL) -> list[str]:
    """counts: a file for the cycles plugin's marks (None: no plugin); mark: plugin_args."""
    b = get_board(board)
    # No -nodefaults: with it, UART input through the stdio chardev was intermittently lost
    # (seen in about 1 run in 7).
    cmd = [QEMU, "-M", b.name, "-display", "none", "-monitor", "none", "-semihosting",
           "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0", "-kernel", str(elf)]
    if icount:
        cmd[1:1] = ["-icount", f"shift={ICOUNT_SHIFT}"]
    if counts is not None:
        cmd += plugin_args(elf, counts, mark, b.cycle_table or "m4")
    return cmd


def run_elf(elf, board: str | Board = DEFAULT_BOARD, timeout: float = 60.0,
            stdin: bytes = b"", icount: bool = True,
            stdin_after: bytes | None = None, counts=None) -> RunResult:
    """Run an ELF on QEMU; returns its exit status (semihosting) and UART output. On timeout
    the QEMU process (and only it) is killed and ``timed_out`` is set.

    The emulated UART drops bytes that arrive before the firmware has enabled its receiver
    (hal_init), and QEMU may deliver stdin before the first guest instruction runs: a program
    that reads input should print a marker once ready and pass it as `stdin_after`, so stdin is
    written only after the marker appears on the UART. `counts`: run with the cycles plugin,
    its marks written to that file (read it with CountsFile)."""
    if shutil.which(QEMU) is None:
        raise ToolMissing(f"{QEMU} not found: apt-get install qemu-system-arm")
    proc = subprocess.Popen(qemu_command(elf, board, icount, counts), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # stdin stays open until QEMU exits: its stdio chardev may drop input still pending
    # when it sees end-of-file.
    chunks = {"out": [], "err": []}
    seen = threading.Event() if stdin_after else None
    readers = [threading.Thread(target=_drain, args=(proc.stdout, chunks["out"], stdin_after,
                                                     seen), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, chunks["err"]), daemon=True)]
    for t in readers:
        t.start()
    timed_out = False
    try:
        if stdin:
            if seen is not None and not seen.wait(timeout):
                raise subprocess.TimeoutExpired(str(elf), timeout)
            proc.stdin.write(stdin)
            proc.stdin.flush()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BrokenPipeError:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        for t in readers:
            t.join(5)
    return RunResult(None if timed_out else proc.returncode, b"".join(chunks["out"]),
                     b"".join(chunks["err"]), timed_out=timed_out)


def _drain(stream, sink: list, marker: bytes | None = None,
           seen: threading.Event | None = None) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        sink.append(chunk)
        if seen is not None and not seen.is_set() and marker in b"".join(sink):
            seen.set()


def build_and_run(sources, board: str | Board = DEFAULT_BOARD, out_dir=".", timeout=60.0,
                  stdin: bytes = b"", stdin_after: bytes | None = None,
                  **build_kw) -> RunResult:
    elf = build_elf(sources, board, out_dir, **build_kw)
    return run_elf(elf, board, timeout=timeout, stdin=stdin, stdin_after=stdin_after)


def elf_sizes(elf) -> dict[str, int]:
    """text/data/bss bytes of an ELF (arm-none-eabi-size, Berkeley format)."""
    p = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                       check=True)
    text, data, bss = (int(v) for v in p.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}
