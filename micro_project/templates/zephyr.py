"""`zephyr` template: a Zephyr application (CMakeLists.txt, prj.conf, board overlays, src/)
around the portable RPC core, for Cortex-M boards. `build`/`flash` run `west build`/`west
flash` when a Zephyr tree is available (ZEPHYR_BASE); otherwise they stop and say what to
install. Board names are accepted in the Zephyr 3.x form (`mps2_an385`) and the qualified
form of later releases (`mps2/an385`)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..project_api import (MAX_PAYLOAD_OPTION, PACKAGE_DIR, ProjectAPIHandler,
                           ProjectError, ProjectOption, ToolMissingError)
from ..transport import SerialTransport, Transport, TransportTimeouts

APP_DIR = PACKAGE_DIR / "templates" / "zephyr_app"

INSTALL_HINT = (
    "install Zephyr 3.4 or later and point ZEPHYR_BASE at it: `pip install west && "
    "west init ~/zephyrproject && cd ~/zephyrproject && west update && "
    "pip install -r zephyr/scripts/requirements-base.txt && "
    "export ZEPHYR_BASE=~/zephyrproject/zephyr`; then a toolchain: the Zephyr SDK, or GNU Arm "
    "Embedded with `export ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb GNUARMEMB_TOOLCHAIN_PATH=/usr` "
    "(apt-get install gcc-arm-none-eabi); CMake >= 3.20 and Ninja")


@dataclass(frozen=True)
class ZephyrBoard:
    legacy: str                  # Zephyr <= 3.6 name (also the key)
    qualified: str               # Zephyr 3.7 / 4.0 (hardware model v2)
    latest: str                  # Zephyr >= 4.1
    cpu: str
    gcc_flags: tuple[str, ...]   # for compiling the app sources outside Zephyr
    uart: str
    qemu: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.legacy, self.qualified, self.latest)))

    def name_for(self, version: tuple[int, int]) -> str:
        if version >= (4, 1):
            return self.latest
        if version >= (3, 7):
            return self.qualified
        return self.legacy


_M3 = ("-mcpu=cortex-m3", "-mfloat-abi=soft")
_M4F = ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
_M7F = ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard")
_M55 = ("-mcpu=cortex-m55", "-mfloat-abi=hard")

BOARDS: dict[str, ZephyrBoard] = {b.legacy: b for b in (
    ZephyrBoard("qemu_cortex_m3", "qemu_cortex_m3", "qemu_cortex_m3", "cortex-m3", _M3,
                "uart0", qemu=True),
    ZephyrBoard("mps2_an385", "mps2/an385", "mps2/an385", "cortex-m3", _M3, "uart0", qemu=True),
    ZephyrBoard("mps3_an547", "mps3/an547", "mps3/corstone300/an547", "cortex-m55", _M55,
                "uart0", qemu=True),
    ZephyrBoard("nucleo_f746zg", "nucleo_f746zg", "nucleo_f746zg", "cortex-m7", _M7F, "usart3"),
    ZephyrBoard("nucleo_l4r5zi", "nucleo_l4r5zi", "nucleo_l4r5zi", "cortex-m4", _M4F, "lpuart1"),
    ZephyrBoard("disco_l475_iot1", "disco_l475_iot1", "disco_l475_iot1", "cortex-m4", _M4F,
                "usart1"),
)}


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


def find_board(name: str) -> ZephyrBoard:
    """Accept any known spelling (`mps2_an385`, `mps2/an385`, `mps3/corstone300/an547`)."""
    for b in BOARDS.values():
        if name in b.names:
            return b
    known = ", ".join(n for b in BOARDS.values() for n in b.names)
    raise ProjectError(f"zephyr template: unknown board {name!r}; known: {known}")


def overlay_stem(board_name: str) -> str:
    """File stem Zephyr looks up in boards/ for a board name (qualifiers joined by `_`)."""
    return board_name.replace("/", "_")


def zephyr_version(zephyr_base: Path) -> tuple[int, int]:
    text = (zephyr_base / "VERSION").read_text()
    major = re.search(r"VERSION_MAJOR\s*=\s*(\d+)", text)
    minor = re.search(r"VERSION_MINOR\s*=\s*(\d+)", text)
    if not (major and minor):
        raise ProjectError(f"{zephyr_base / 'VERSION'}: no VERSION_MAJOR/VERSION_MINOR")
    return int(major.group(1)), int(minor.group(1))


class ZephyrProject(ProjectAPIHandler):
    platform_name = "zephyr"
    options = (
        MAX_PAYLOAD_OPTION,
        ProjectOption("board", "Zephyr board (3.x `mps2_an385` or 4.x `mps2/an385` form)",
                      "str", None, required=("generate_project",)),
        ProjectOption("zephyr_base", "Zephyr tree (default: $ZEPHYR_BASE)", "str", None,
                      optional=("build", "flash")),
        ProjectOption("west", "west command", "str", "west", optional=("build", "flash")),
        ProjectOption("toolchain", "ZEPHYR_TOOLCHAIN_VARIANT (gnuarmemb or zephyr; default: "
                      "the environment's)", "str", None, optional=("build",)),
        ProjectOption("gnuarmemb_path", "GNUARMEMB_TOOLCHAIN_PATH for gnuarmemb", "str", None,
                      optional=("build",)),
        ProjectOption("cmake_args", "extra CMake arguments for west build (e.g. "
                      "-DZEPHYR_MODULES=/path/to/cmsis)", "str", None, optional=("build",)),
        ProjectOption("serial_port", "serial URL of the board (/dev/ttyACM0, socket://h:p)",
                      "str", None, required=("open_transport",)),
        ProjectOption("baudrate", "UART baud rate", "int", 115200, optional=("open_transport",)),
    )

    def _generate(self, project_dir: Path, options: dict) -> None:
        board = find_board(options["board"])
        for name in ("CMakeLists.txt", "prj.conf"):
            shutil.copy(APP_DIR / name, project_dir / name)
        shutil.copytree(APP_DIR / "src", project_dir / "src")
        shutil.copytree(APP_DIR / "boards", project_dir / "boards")
        for name in board.names:
            if not (project_dir / "boards" / f"{overlay_stem(name)}.overlay").exists():
                raise ProjectError(f"zephyr template: no overlay for {name}")
        options["board"] = board.legacy
        (project_dir / "README.md").write_text(
            f"# RPC firmware for {board.legacy} (Zephyr)\n\n"
            "Build and flash with a Zephyr 3.4+ workspace (ZEPHYR_BASE set):\n\n"
            f"    west build -b {board.legacy} -d build .     # Zephyr 3.4 - 3.6\n"
            f"    west build -b {board.qualified} -d build .     # Zephyr 3.7 - 4.0\n"
            f"    west build -b {board.latest} -d build .     # Zephyr 4.1 and later\n"
            "    west flash -d build\n\n"
            "With GNU Arm Embedded instead of the Zephyr SDK: `export "
            "ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb GNUARMEMB_TOOLCHAIN_PATH=/usr`.\n"
            f"The RPC runs on &{board.uart} at 115200 baud (boards/*.overlay); the protocol is "
            "described in micro_project/PROTOCOL.md.\n")
        _size_main_stack(project_dir)
        if options.get("max_payload", 512) != 512:
            with open(project_dir / "CMakeLists.txt", "r+") as f:
                text = f.read().replace("set(QMCU_MAX_PAYLOAD 512)",
                                        f"set(QMCU_MAX_PAYLOAD {options['max_payload']})")
                f.seek(0)
                f.write(text)
                f.truncate()

    @property
    def board(self) -> ZephyrBoard:
        return find_board(self.project["options"]["board"])

    def app_sources(self) -> list[Path]:
        """The C files of the application, as its CMakeLists.txt lists them."""
        d = self._need_project()
        return [d / "src" / "main.c", d / "src" / "qmcu_hal_zephyr.c",
                d / "core" / "src" / "qmcu_frame.c", d / "core" / "src" / "qmcu_server.c",
                *self.model_sources()]

    def _zephyr(self, o: dict) -> tuple[Path, str]:
        base = o.get("zephyr_base") or os.environ.get("ZEPHYR_BASE")
        if not base:
            raise ToolMissingError(f"zephyr template: ZEPHYR_BASE is not set; {INSTALL_HINT}")
        base = Path(base)
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
        if o.get("gnuarmemb_path"):
            env["GNUARMEMB_TOOLCHAIN_PATH"] = o["gnuarmemb_path"]
        return env

    def build(self, options: dict | None = None) -> Path:
        o = self.resolve_options("build", options)
        d = self._need_project()
        base, west = self._zephyr(o)
        board = self.board.name_for(zephyr_version(base))
        cmd = [west, "build", "-b", board, "-d", str(d / "build"), str(d)]
        if o.get("cmake_args"):
            cmd += ["--", *shlex.split(o["cmake_args"])]
        # run inside ZEPHYR_BASE so west uses that tree's workspace
        p = subprocess.run(cmd, env=self._env(o, base), cwd=base, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise ProjectError(f"`{' '.join(cmd)}` failed:\n{(p.stdout + p.stderr)[-4000:]}")
        return d / "build" / "zephyr" / "zephyr.elf"

    def flash(self, options: dict | None = None) -> None:
        o = self.resolve_options("flash", options)
        d = self._need_project()
        base, west = self._zephyr(o)
        if not (d / "build").exists():
            raise ProjectError(f"{d / 'build'} does not exist: build() first")
        cmd = [west, "flash", "-d", str(d / "build")]
        p = subprocess.run(cmd, env=self._env(o, base), cwd=base, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise ProjectError(f"`{' '.join(cmd)}` failed:\n{(p.stdout + p.stderr)[-4000:]}")

    def _open(self, options: dict) -> Transport:
        return SerialTransport(options["serial_port"], options["baudrate"])

    def timeouts(self) -> TransportTimeouts:
        return TransportTimeouts(1.0, 10.0, 30.0)
