"""`zephyr` template: a Zephyr application (CMakeLists.txt, prj.conf, board overlays, src/)
around the portable RPC core, for Arm Cortex-M boards.

The board's facts (CPU, flash, RAM, QEMU machine) come from ``micro_project.board_table``: read
from the board's own files when a Zephyr tree is given, else from its built-in list. `build`
runs `west build` on the tree of ZEPHYR_BASE (or the `zephyr_base` option); `flash` boots the
image under QEMU with ``-icount`` for boards Zephyr runs in QEMU, else runs `west flash`.
Board names are accepted in the Zephyr 3.x form (`mps2_an385`) and the qualified form of later
releases (`mps2/an385`)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import board_table
from ..project_api import (MAX_PAYLOAD_OPTION, PACKAGE_DIR, ProjectAPIHandler,
                           ProjectError, ProjectOption, ToolMissingError)
from ..qemu import ICOUNT_SHIFT, QEMU
from ..transport import ProcessTransport, SerialTransport, Transport, TransportTimeouts

APP_DIR = PACKAGE_DIR / "templates" / "zephyr_app"
CALIBRATION_SOURCE = PACKAGE_DIR / "templates" / "zephyr_calibrate" / "systick_rate.c"
BOARD_FILE = "board.json"

INSTALL_HINT = (
    "install Zephyr 3.4 or later and point ZEPHYR_BASE (or --zephyr-base) at it: `pip install "
    "west && west init ~/zephyrproject && cd ~/zephyrproject && west update && "
    "pip install -r zephyr/scripts/requirements-base.txt && "
    "export ZEPHYR_BASE=~/zephyrproject/zephyr`; then a toolchain: the Zephyr SDK, or GNU Arm "
    "Embedded (ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb, apt-get install gcc-arm-none-eabi; "
    "chosen when it is on PATH and nothing else is set); "
    "CMake >= 3.20, Ninja and dtc (apt-get install cmake ninja-build device-tree-compiler)")

MAIN_STACK_MIN = 4096     # the RPC server and the model's own frames
MAIN_STACK_MARGIN = 4096  # on top of the largest kernel scratch


def main_stack_size(model_meta: dict) -> int:
    """Main-thread stack for the model: the generated kernels keep their scratch (padded input
    rows, accumulators) on the stack, up to the model's largest call."""
    scratch = max((int(c.get("scratch_bytes", 0)) for c in model_meta.get("calls", [])),
                  default=0)
    if not scratch:
        return MAIN_STACK_MIN
    return max(MAIN_STACK_MIN, -(-(scratch + MAIN_STACK_MARGIN) // 1024) * 1024)


def _size_main_stack(project_dir: Path) -> None:
    meta_file = project_dir / "model" / "model.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    conf = project_dir / "prj.conf"
    conf.write_text(re.sub(r"^CONFIG_MAIN_STACK_SIZE=\d+$",
                           f"CONFIG_MAIN_STACK_SIZE={main_stack_size(meta)}",
                           conf.read_text(), flags=re.M))


def zephyr_tree(zephyr_base: str | Path | None = None) -> Path | None:
    """The Zephyr tree to use: the given one, else $ZEPHYR_BASE; None when there is none."""
    base = zephyr_base or os.environ.get("ZEPHYR_BASE")
    return Path(base).expanduser().resolve() if base else None


def find_board(name: str, zephyr_base: str | Path | None = None) -> board_table.Board:
    """The board's facts (any spelling: `mps2_an385`, `mps2/an385`, `mps3/corstone300/an547`);
    read from the tree when one is given."""
    base = zephyr_tree(zephyr_base)
    try:
        return board_table.zephyr_board(name, base if base and (base / "VERSION").exists()
                                        else None)
    except board_table.BoardError as e:
        raise ProjectError(f"zephyr template: {e}") from None


def overlay_stem(board_name: str) -> str:
    """File stem Zephyr looks up in boards/ for a board name (qualifiers joined by `_`)."""
    return board_name.replace("/", "_")


def overlay_text(name: str, uart: str) -> str:
    return (f"/* {name}: the RPC runs on &{uart} (the board's console / debug-probe serial "
            f"port) at 115200 baud. */\n/ {{\n\tchosen {{\n\t\tqmcu,rpc-uart = &{uart};\n\t}};"
            f"\n}};\n\n&{uart} {{\n\tstatus = \"okay\";\n\tcurrent-speed = <115200>;\n}};\n")


def zephyr_version(zephyr_base: Path) -> tuple[int, int]:
    text = (zephyr_base / "VERSION").read_text()
    major = re.search(r"VERSION_MAJOR\s*=\s*(\d+)", text)
    minor = re.search(r"VERSION_MINOR\s*=\s*(\d+)", text)
    if not (major and minor):
        raise ProjectError(f"{zephyr_base / 'VERSION'}: no VERSION_MAJOR/VERSION_MINOR")
    return int(major.group(1)), int(minor.group(1))


def _board_json(b: board_table.Board) -> dict:
    return {"name": b.name, "names": list(board_table.zephyr_names(b)), "cpu": b.cpu.name,
            "dsp": b.cpu.dsp, "fpu": b.cpu.fpu, "mve": b.cpu.mve,
            "flash_bytes": b.flash_bytes, "ram_bytes": b.ram_bytes,
            "qemu_machine": b.qemu_machine, "configured_counter_hz": b.configured_counter_hz,
            "uart": b.uart, "source": b.source}


class ZephyrProject(ProjectAPIHandler):
    platform_name = "zephyr"
    options = (
        MAX_PAYLOAD_OPTION,
        ProjectOption("board", "Zephyr board (3.x `mps2_an385` or 4.x `mps2/an385` form)",
                      "str", None, required=("generate_project",)),
        ProjectOption("zephyr_base", "Zephyr tree (default: $ZEPHYR_BASE)", "str", None,
                      optional=("generate_project", "build", "flash")),
        ProjectOption("west", "west command", "str", "west", optional=("build", "flash")),
        ProjectOption("toolchain", "ZEPHYR_TOOLCHAIN_VARIANT (gnuarmemb or zephyr; default: "
                      "the environment's, else gnuarmemb when arm-none-eabi-gcc is on PATH)",
                      "str", None, optional=("build",)),
        ProjectOption("gnuarmemb_path", "GNUARMEMB_TOOLCHAIN_PATH for gnuarmemb", "str", None,
                      optional=("build",)),
        ProjectOption("cmake_args", "extra CMake arguments for west build (e.g. "
                      "-DZEPHYR_MODULES=/path/to/cmsis)", "str", None, optional=("build",)),
        ProjectOption("icount", "QEMU boards: deterministic instruction-count timing "
                      "(-icount shift=6)", "bool", True, optional=("flash",)),
        ProjectOption("time_limit", "QEMU boards: seconds after which QEMU is killed in any "
                      "case", "int", 600, optional=("flash",)),
        ProjectOption("serial_port", "hardware boards: serial URL of the board (/dev/ttyACM0, "
                      "socket://h:p)", "str", None, optional=("open_transport",)),
        ProjectOption("baudrate", "UART baud rate", "int", 115200, optional=("open_transport",)),
    )

    def _generate(self, project_dir: Path, options: dict) -> None:
        board = find_board(options["board"], options.get("zephyr_base"))
        for name in ("CMakeLists.txt", "prj.conf"):
            shutil.copy(APP_DIR / name, project_dir / name)
        shutil.copytree(APP_DIR / "src", project_dir / "src")
        (project_dir / "boards").mkdir()
        names = board_table.zephyr_names(board)
        if board.uart:        # else the HAL serves on the board's console UART
            for name in names:
                (project_dir / "boards" / f"{overlay_stem(name)}.overlay").write_text(
                    overlay_text(name, board.uart))
        options["board"] = board.name
        (project_dir / BOARD_FILE).write_text(json.dumps(_board_json(board), indent=1) + "\n")
        run = (f"It runs in QEMU (-M {board.qemu_machine})." if board.qemu_machine else
               "    west flash -d build")
        (project_dir / "README.md").write_text(
            f"# RPC firmware for {board.name} (Zephyr)\n\n"
            f"{board.describe()}\n\n"
            "Build with a Zephyr 3.4+ workspace (ZEPHYR_BASE set):\n\n"
            + "".join(f"    west build -b {n} -d build .\n" for n in names) + "\n"
            f"{run}\n\nWith GNU Arm Embedded instead of the Zephyr SDK: `export "
            "ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb GNUARMEMB_TOOLCHAIN_PATH=/usr`.\n"
            f"The RPC runs on &{board.uart or 'the console UART'} at 115200 baud; the protocol "
            "is described in micro_project/PROTOCOL.md.\n")
        _size_main_stack(project_dir)
        text = (project_dir / "CMakeLists.txt").read_text()
        text = text.replace("set(QMCU_MAX_PAYLOAD 512)",
                            f"set(QMCU_MAX_PAYLOAD {options.get('max_payload', 512)})")
        (project_dir / "CMakeLists.txt").write_text(text)

    @property
    def board_info(self) -> dict:
        return json.loads((self._need_project() / BOARD_FILE).read_text())

    @property
    def runs_in_qemu(self) -> bool:
        return bool(self.board_info.get("qemu_machine"))

    @property
    def elf(self) -> Path:
        return self._need_project() / "build" / "zephyr" / "zephyr.elf"

    def app_sources(self) -> list[Path]:
        """The C files of the application, as its CMakeLists.txt lists them."""
        d = self._need_project()
        return [d / "src" / "main.c", d / "src" / "qmcu_hal_zephyr.c",
                d / "core" / "src" / "qmcu_frame.c", d / "core" / "src" / "qmcu_server.c",
                *self.model_sources()]

    def _zephyr(self, o: dict) -> tuple[Path, str]:
        base = zephyr_tree(o.get("zephyr_base"))
        if base is None:
            raise ToolMissingError(f"zephyr template: ZEPHYR_BASE is not set; {INSTALL_HINT}")
        if not (base / "VERSION").exists():
            raise ToolMissingError(f"zephyr template: {base} is not a Zephyr tree (no VERSION "
                                   f"file); {INSTALL_HINT}")
        if shutil.which(o["west"]) is None:
            raise ToolMissingError(f"zephyr template: `{o['west']}` not found; {INSTALL_HINT}")
        return base, o["west"]

    def _env(self, o: dict, base: Path) -> dict:
        env = dict(os.environ, ZEPHYR_BASE=str(base))
        if o.get("toolchain"):
            env["ZEPHYR_TOOLCHAIN_VARIANT"] = o["toolchain"]
        gcc = shutil.which("arm-none-eabi-gcc")
        if not env.get("ZEPHYR_TOOLCHAIN_VARIANT") and not env.get("ZEPHYR_SDK_INSTALL_DIR") \
                and gcc:
            env["ZEPHYR_TOOLCHAIN_VARIANT"] = "gnuarmemb"
        if o.get("gnuarmemb_path"):
            env["GNUARMEMB_TOOLCHAIN_PATH"] = o["gnuarmemb_path"]
        elif env.get("ZEPHYR_TOOLCHAIN_VARIANT") == "gnuarmemb" and gcc \
                and not env.get("GNUARMEMB_TOOLCHAIN_PATH"):
            env["GNUARMEMB_TOOLCHAIN_PATH"] = str(Path(gcc).resolve().parent.parent)
        return env

    def build(self, options: dict | None = None) -> Path:
        o = self.resolve_options("build", options)
        # west runs inside the Zephyr tree (its workspace): every path it gets is absolute
        d = self._need_project().resolve()
        base, west = self._zephyr(o)
        board = self.board_info
        names = board["names"] or [board["name"]]
        version = zephyr_version(base)
        name = names[0] if version < (3, 7) else names[min(len(names) - 1,
                                                           1 if version < (4, 1) else 2)]
        cmd = [west, "build", "-p", "auto", "-b", name, "-d", str(d / "build"), str(d)]
        if o.get("cmake_args"):
            cmd += ["--", *shlex.split(o["cmake_args"])]
        p = subprocess.run(cmd, env=self._env(o, base), cwd=base, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise ProjectError(f"`{' '.join(cmd)}` failed:\n{(p.stdout + p.stderr)[-4000:]}")
        return d / "build" / "zephyr" / "zephyr.elf"

    def build_config(self) -> dict[str, str]:
        """The Kconfig values of the last build (build/zephyr/.config)."""
        conf = self._need_project() / "build" / "zephyr" / ".config"
        if not conf.exists():
            raise ProjectError(f"{conf} does not exist: build() first")
        return dict(re.findall(r"^(CONFIG_\w+)=\"?([^\"\n]*)\"?$", conf.read_text(), re.M))

    def flash(self, options: dict | None = None) -> None:
        """QEMU boards: boot the image under QEMU (killed by close_transport, or after
        time_limit seconds whatever happens). Hardware boards: `west flash`."""
        o = self.resolve_options("flash", options)
        if not self.elf.exists():
            raise ProjectError(f"{self.elf} does not exist: build() first")
        if self.runs_in_qemu:
            self._boot_qemu(o)
            return
        base, west = self._zephyr(o)
        cmd = [west, "flash", "-d", str(self._need_project().resolve() / "build")]
        p = subprocess.run(cmd, env=self._env(o, base), cwd=base, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise ProjectError(f"`{' '.join(cmd)}` failed:\n{(p.stdout + p.stderr)[-4000:]}")

    def qemu_command(self, icount: bool = True) -> list[str]:
        machine = self.board_info["qemu_machine"]
        return [QEMU, *(["-icount", f"shift={ICOUNT_SHIFT}"] if icount else []), "-M", machine,
                "-display", "none", "-monitor", "none", "-chardev", "stdio,id=s0,signal=off",
                "-serial", "chardev:s0", "-kernel", str(self.elf)]

    def _boot_qemu(self, o: dict) -> None:
        if shutil.which(QEMU) is None:
            raise ToolMissingError("zephyr template: qemu-system-arm not found (apt-get "
                                   "install --no-install-recommends qemu-system-arm)")
        self.close_transport()
        argv = ["timeout", "-s", "KILL", str(o["time_limit"]), *self.qemu_command(o["icount"])]
        self._qemu = ProcessTransport(argv, f"QEMU {self.board_info['qemu_machine']} "
                                            f"(Zephyr {self.board_info['name']})",
                                      stderr_path=self.elf.parent / "qemu.log")

    def _open(self, options: dict) -> Transport:
        if self.runs_in_qemu:
            if getattr(self, "_qemu", None) is None or not self._qemu.alive():
                self._boot_qemu(self.resolve_options("flash", None))
            proc, self._qemu = self._qemu, None
            from ..client import wait_for_hello
            try:      # nothing may reach QEMU's UART before the guest enables its receiver
                wait_for_hello(proc, 20.0, f"Zephyr {self.board_info['name']} on QEMU")
            except Exception:
                proc.close()
                raise
            return proc
        if not options.get("serial_port"):
            raise ProjectError(f"zephyr template: {self.board_info['name']} is a hardware "
                               "board: give its serial port (option serial_port, quantmcu "
                               "deploy --port /dev/ttyACM0)")
        return SerialTransport(options["serial_port"], options["baudrate"])

    def close_transport(self) -> None:
        super().close_transport()
        q = getattr(self, "_qemu", None)
        if q is not None:          # booted but never opened
            self._qemu = None
            q.close()

    # -- timing ----------------------------------------------------------------------------

    def ticks_per_instruction(self) -> float:
        """Counter ticks per guest instruction of this image under QEMU's -icount, measured
        (cached in build/): Zephyr's k_cycle_get_32 counts the SysTick processor clock, whose
        rate on the QEMU machine need not be the one Zephyr is configured with."""
        if not self.runs_in_qemu:
            raise ProjectError("instruction counts need a board that runs in QEMU")
        conf = self.build_config()
        if conf.get("CONFIG_CORTEX_M_SYSTICK") != "y":
            raise ProjectError(f"{self.board_info['name']}: the image's cycle counter is not "
                               "the SysTick (CONFIG_CORTEX_M_SYSTICK); cannot calibrate it")
        cache = self.elf.parent / "counter_calibration.json"
        machine = self.board_info["qemu_machine"]
        if cache.exists():
            cal = json.loads(cache.read_text())
            if cal.get("machine") == machine:
                return cal["ticks_per_instruction"]
        cal = calibrate_systick(machine, self.elf)
        cal["configured_counter_hz"] = int(conf.get("CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC", 0))
        cache.write_text(json.dumps(cal, indent=1) + "\n")
        return cal["ticks_per_instruction"]

    def counter_calibration(self) -> dict:
        self.ticks_per_instruction()
        return json.loads((self.elf.parent / "counter_calibration.json").read_text())

    def instructions(self, ticks: float) -> int:
        """Counter ticks → guest instructions (valid with icount on), the same conversion as
        the bare-metal boards: ticks / (ticks per instruction)."""
        return int(round(ticks / self.ticks_per_instruction()))

    def timeouts(self) -> TransportTimeouts:
        return TransportTimeouts(1.0, 10.0, 30.0)


def _symbol(elf: Path, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout
    m = re.search(rf"^([0-9a-f]+) \w {re.escape(name)}$", out, re.M)
    if not m:
        raise ProjectError(f"{elf}: no symbol {name}")
    return int(m.group(1), 16)


def calibrate_systick(machine: str, zephyr_elf: Path, timeout: float = 30.0) -> dict:
    """Ticks per instruction of the SysTick processor clock on QEMU machine `machine` under
    -icount shift=6, measured with a small program linked where the Zephyr image boots (its
    vector table) with its stack in the image's RAM: the difference of two busy loops of
    known instruction counts."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which(QEMU) is None:
        raise ToolMissingError("counter calibration needs arm-none-eabi-gcc and "
                               "qemu-system-arm")
    vectors = _symbol(zephyr_elf, "_vector_table")
    ram = _symbol(zephyr_elf, "_image_ram_start")
    with tempfile.TemporaryDirectory(prefix="qmcu-cal-") as d:
        ld, elf = Path(d) / "cal.ld", Path(d) / "cal.elf"
        ld.write_text(f"ENTRY(reset)\nSECTIONS {{ . = {vectors:#x}; .text : {{ "
                      "KEEP(*(.vectors)) *(.text*) *(.rodata*) } /DISCARD/ : { *(.ARM.*) "
                      "*(.comment) } }\n")
        p = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", "-O2",
                            "-nostdlib", "-nostartfiles", "-ffreestanding", f"-T{ld}",
                            f"-Wl,--defsym=qmcu_stack_top={ram + 0x1000:#x}",
                            str(CALIBRATION_SOURCE), "-lgcc", "-o", str(elf)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise ProjectError(f"counter calibration program failed to build:\n{p.stderr}")
        try:
            p = subprocess.run([QEMU, "-icount", f"shift={ICOUNT_SHIFT}", "-M", machine,
                                "-display", "none", "-monitor", "none", "-semihosting",
                                "-serial", "null", "-kernel", str(elf)],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ProjectError(f"counter calibration on QEMU {machine} did not finish in "
                               f"{timeout:g} s") from None
    m = re.search(r"ticks (\d+) (\d+) loops (\d+) (\d+)", p.stdout + p.stderr)
    if not m:
        raise ProjectError(f"counter calibration on QEMU {machine} printed no result "
                           f"(exit {p.returncode}): {(p.stdout + p.stderr)[-500:]}")
    t0, t1, n0, n1 = map(int, m.groups())
    tpi = (t1 - t0) / (2 * (n1 - n0))        # 2 instructions per loop iteration
    return {"machine": machine, "ticks_per_instruction": tpi,
            "counter_hz": int(round(tpi / ((1 << ICOUNT_SHIFT) * 1e-9)))}
