"""`qemu` template: bare-metal firmware for QEMU's Arm boards, built with arm-none-eabi-gcc on
the board layer of micro_project/boards (startup code, linker scripts, UART/timer HAL).
"flash" boots QEMU; the link is the emulated UART0 over the process's stdio (parallel-safe) or
a TCP socket; timing comes from the board timer under -icount (instructions, not seconds)."""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from .. import qemu as board_layer
from ..project_api import (FIRMWARE_DIR, MAX_PAYLOAD_OPTION, ProjectAPIHandler, ProjectError,
                           ProjectOption, ToolMissingError)
from ..transport import (ProcessTransport, SerialTransport, Transport, TransportError,
                         TransportTimeouts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QemuSocketLink(Transport):
    """The socket link plus the QEMU process behind it: closing one ends both."""

    def __init__(self, process: ProcessTransport, link: SerialTransport):
        self.process, self.link = process, link

    def read(self, n, timeout):
        return self.link.read(n, timeout)

    def write(self, data, timeout=None):
        self.link.write(data, timeout)

    def close(self):
        try:
            self.link.close()
        finally:
            self.process.close()


class QemuProject(ProjectAPIHandler):
    platform_name = "qemu"
    options = (
        MAX_PAYLOAD_OPTION,
        ProjectOption("board", "QEMU machine", "str", board_layer.DEFAULT_BOARD,
                      tuple(board_layer.BOARDS), optional=("generate_project",)),
        ProjectOption("opt", "optimisation flag", "str", "-O2", optional=("build",)),
        ProjectOption("serial", "UART link: the QEMU process's stdio, or a TCP socket", "str",
                      "stdio", ("stdio", "socket"), optional=("flash",)),
        ProjectOption("port", "TCP port of the socket link (0: pick a free one)", "int", 0,
                      optional=("flash",)),
        ProjectOption("icount", "deterministic instruction-count timing (-icount shift=6)",
                      "bool", True, optional=("flash",)),
        ProjectOption("cycles", "modelled Cortex-M4 cycles of each run (QEMU plugin; M4 boards)",
                      "bool", True, optional=("flash",)),
        ProjectOption("time_limit", "seconds after which QEMU is killed in any case", "int",
                      600, optional=("flash",)),
    )

    def _generate(self, project_dir: Path, options: dict) -> None:
        hal = project_dir / "hal"
        hal.mkdir()
        shutil.copy(FIRMWARE_DIR / "hal" / "qemu" / "qmcu_hal_qemu.c", hal)

    @property
    def board(self) -> board_layer.Board:
        return board_layer.get_board(self.project.get("options", {}).get(
            "board", board_layer.DEFAULT_BOARD))

    @property
    def counter_name(self) -> str:
        """What hal_timer_read() counts on this board (see micro_project/boards/hal.c)."""
        sse = any(d.startswith("HAL_SSE_COUNTER") for d in getattr(self.board, "extra_defines", ()))
        return "sse300-system-counter" if sse else "cmsdk-timer0"

    @property
    def elf(self) -> Path:
        return self._need_project() / "build" / "firmware.elf"

    def build(self, options: dict | None = None) -> Path:
        o = self.resolve_options("build", options)
        d = self._need_project()
        b = self.board
        if shutil.which(board_layer.GCC) is None:
            raise ToolMissingError("qemu template: arm-none-eabi-gcc not found (apt-get install "
                                   "--no-install-recommends gcc-arm-none-eabi "
                                   "libnewlib-arm-none-eabi)")
        max_payload = self.project["options"].get("max_payload", 512)
        sources = [*self.core_sources(), d / "hal" / "qmcu_hal_qemu.c", *self.model_sources()]
        try:
            return board_layer.build_elf(
                sources, b, d / "build", include_dirs=[d / "core" / "include", d / "model"],
                defines=[f"QMCU_MAX_PAYLOAD={max_payload}u", f'QMCU_BOARD_NAME="{b.name}"',
                         f"QMCU_TIMER_HZ={b.timer_hz}u",
                         f'QMCU_COUNTER_NAME="{self.counter_name}"'],
                opt=o["opt"], name="firmware")
        except board_layer.BuildError as e:
            raise ProjectError(f"qemu build of {d} failed: {e}") from None

    def flash(self, options: dict | None = None) -> None:
        """Boot QEMU with the built firmware (killed by close_transport, or after
        time_limit seconds whatever happens)."""
        o = self.resolve_options("flash", options)
        if shutil.which(board_layer.QEMU) is None:
            raise ToolMissingError("qemu template: qemu-system-arm not found (apt-get install "
                                   "--no-install-recommends qemu-system-arm)")
        if not self.elf.exists():
            raise ProjectError(f"{self.elf} does not exist: build() first")
        self.close_transport()
        self._counts = None
        if o["cycles"] and self.board.models_cycles and board_layer.cycle_plugin() is not None:
            self._counts = board_layer.CountsFile(self.elf.parent / "counts.txt")
        # the server times each run between two qmcu_hal_cycles() calls
        argv = board_layer.qemu_command(self.elf, self.board, icount=o["icount"],
                                        counts=self._counts and self._counts.path,
                                        mark="qmcu_hal_cycles")
        self._port = None
        if o["serial"] == "socket":
            self._port = o["port"] or _free_port()
            stdio = [i for i, a in enumerate(argv) if a.startswith("stdio,id=")]
            if not stdio:
                raise ProjectError(f"qemu template: no stdio chardev to replace in {argv}")
            chardev_id = argv[stdio[0]].split("id=")[1].split(",")[0]
            argv[stdio[0]] = (f"socket,id={chardev_id},host=127.0.0.1,port={self._port},"
                              "server=on,wait=on,nodelay=on")
        argv = ["timeout", "-s", "KILL", str(o["time_limit"]), *argv]
        self._qemu = ProcessTransport(argv, f"QEMU {self.board.name} ({self.elf.name})",
                                      stderr_path=self.elf.parent / "qemu.log")

    @property
    def qemu_pid(self) -> int | None:
        q = getattr(self, "_qemu", None)
        return q.pid if q is not None else None

    def _open(self, options: dict) -> Transport:
        from ..client import LinkError, ProtocolMismatch, wait_for_hello
        if getattr(self, "_qemu", None) is None or not self._qemu.alive():
            self.flash()
        proc, self._qemu = self._qemu, None
        if self._port is None:
            self._await_boot(proc, proc)
            return proc
        deadline = time.monotonic() + 10.0
        while True:          # QEMU listens a moment after it starts
            link = None
            try:
                link = _QemuSocketLink(proc, SerialTransport(f"socket://127.0.0.1:{self._port}"))
                wait_for_hello(link, max(0.1, deadline - time.monotonic()),
                               f"QEMU {self.board.name}")
                return link
            except TransportError:   # not listening yet (or a relay that could not reach it)
                if link is not None:
                    link.link.close()
                if time.monotonic() > deadline or not proc.alive():
                    proc.close()
                    raise
                time.sleep(0.05)
            except (LinkError, ProtocolMismatch):
                link.close()
                raise

    def _await_boot(self, link: Transport, proc: ProcessTransport) -> None:
        """QEMU's UART model can stall for good on bytes that arrive before the guest turns
        its receiver on: send nothing until the firmware's HELLO frame has come."""
        from ..client import LinkError, wait_for_hello
        try:
            wait_for_hello(link, 10.0, f"QEMU {self.board.name}")
        except (LinkError, TransportError):
            link.close()
            proc.close()
            raise

    def close_transport(self) -> None:
        super().close_transport()
        q = getattr(self, "_qemu", None)
        if q is not None:          # flashed but never opened
            self._qemu = None
            q.close()

    def instructions(self, ticks: float) -> int:
        """Board timer ticks → guest instructions (valid with icount on)."""
        return self.board.instructions(ticks)

    def modelled_cycles(self) -> list[int]:
        """Modelled Cortex-M4 cycles of each timed run (RUN / RUN_KERNEL repeat) answered
        since the previous call; empty when QEMU runs without the cycles plugin."""
        counts = getattr(self, "_counts", None)
        return [r.cycles for r in counts.regions()] if counts is not None else []

    def timeouts(self) -> TransportTimeouts:
        return TransportTimeouts(1.0, 10.0, 30.0)
