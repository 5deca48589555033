"""The one table of the boards micro_project builds for: the CPU (and whether it has the DSP
extension, an FPU, MVE), flash, RAM, the QEMU machine that runs it and the rate of its counter
there.

The bare-metal QEMU boards and the Zephyr boards known without a Zephyr tree are listed here.
Any other Arm Zephyr board is read from its own files in a Zephyr tree (``zephyr_board(name,
zephyr_base)``): the CPU from its devicetree, flash and RAM from the devicetree's
``zephyr,flash``/``zephyr,sram`` nodes (else the board yaml), the QEMU machine from its
``board.cmake``, the configured counter rate from its defconfig; so a new board needs no code
change here.
"""
from __future__ import annotations

import ast
import operator
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path


class BoardError(ValueError):
    """An unknown board, or a board whose files say it is not a Cortex-M board."""


@dataclass(frozen=True)
class Cpu:
    name: str                    # gcc's -mcpu name, also the kernels' target name
    arch: str                    # Tag_CPU_arch the compiled objects carry
    gcc_flags: tuple[str, ...]   # -mcpu/-mfpu/-mfloat-abi for code that owns its float ABI
    dsp: bool                    # DSP extension (SMLAD, SXTB16, ...): the DSP micro-kernels
    fpu: str | None
    mve: bool = False            # Helium

    def without(self, dsp: bool = False, fpu: bool = False, mve: bool = False) -> "Cpu":
        """This CPU with optional extensions left out (the DSP extension and the FPU are
        optional on v8-M: AN521's CPU0 has neither)."""
        if not (dsp or fpu or mve) or self.arch.startswith(("v6", "v7")) and not fpu:
            return self
        mcpu = self.name + "".join(f"+no{e}" for e, off in (("dsp", dsp and self.dsp),
                                                             ("fp", fpu and self.fpu),
                                                             ("mve", mve and self.mve)) if off)
        has_fpu = self.fpu and not fpu
        flags = (f"-mcpu={mcpu}", *(f for f in self.gcc_flags if f.startswith("-mfpu")
                                    and has_fpu), f"-mfloat-abi={'hard' if has_fpu else 'soft'}")
        return replace(self, gcc_flags=flags, dsp=self.dsp and not dsp,
                       fpu=self.fpu if has_fpu else None, mve=self.mve and not (mve or fpu))


CPUS: dict[str, Cpu] = {c.name: c for c in (
    Cpu("cortex-m0", "v6S-M", ("-mcpu=cortex-m0", "-mfloat-abi=soft"), False, None),
    Cpu("cortex-m0plus", "v6S-M", ("-mcpu=cortex-m0plus", "-mfloat-abi=soft"), False, None),
    Cpu("cortex-m3", "v7", ("-mcpu=cortex-m3", "-mfloat-abi=soft"), False, None),
    Cpu("cortex-m4", "v7E-M", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        True, "fpv4-sp-d16"),
    Cpu("cortex-m7", "v7E-M", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
        True, "fpv5-d16"),
    # As QEMU models it and most silicon ships it (the DSP extension is optional on v8-M).
    Cpu("cortex-m33", "v8-M.mainline",
        ("-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"), True, "fpv5-sp-d16"),
    Cpu("cortex-m55", "v8.1-M.mainline", ("-mcpu=cortex-m55", "-mfloat-abi=hard"), True,
        "fpv5-d16", mve=True),
)}


@dataclass(frozen=True)
class Board:
    name: str
    cpu: Cpu
    flash_bytes: int
    ram_bytes: int
    qemu_machine: str | None = None   # None: real hardware only
    counter_hz: int | None = None     # rate of the timing counter on QEMU's machine; None:
    #                                   calibrate it (the OS's configured rate is not trusted)
    configured_counter_hz: int | None = None   # the rate the OS is configured with
    uart: str | None = None           # devicetree label of the RPC UART (Zephyr)
    names: tuple[str, ...] = ()       # Zephyr spellings: <= 3.6, 3.7 - 4.0, >= 4.1
    source: str = "built-in"          # where the facts come from

    def name_for(self, version: tuple[int, int]) -> str:
        """The Zephyr board name a release of that version expects."""
        names = self.names or (self.name,)
        legacy, qualified, latest = (names + (names[-1],) * 3)[:3]
        if version >= (4, 1):
            return latest
        if version >= (3, 7):
            return qualified
        return legacy

    def describe(self) -> str:
        feats = [f for f, on in (("DSP", self.cpu.dsp), ("FPU", self.cpu.fpu),
                                 ("MVE", self.cpu.mve)) if on]
        return (f"{self.name}: {self.cpu.name}{' + ' + '/'.join(feats) if feats else ''}, "
                f"flash {self.flash_bytes:,} B, RAM {self.ram_bytes:,} B"
                + (f", QEMU -M {self.qemu_machine}" if self.qemu_machine else "")
                + f" ({self.source})")


KIB, MIB = 1 << 10, 1 << 20

# Bare-metal boards (micro_project/boards): keyed by QEMU machine. Flash and RAM are the
# regions of their linker scripts; the counter is CMSDK Timer0 (mps2, 25 MHz) or the SSE-300
# system counter (mps3-an547, 32 MHz), measured against QEMU's -icount (tests/micro_project).
QEMU_BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("mps2-an386", CPUS["cortex-m4"], 4 * MIB, 4 * MIB, "mps2-an386", 25_000_000),
    Board("mps2-an500", CPUS["cortex-m7"], 4 * MIB, 4 * MIB, "mps2-an500", 25_000_000),
    Board("mps3-an547", CPUS["cortex-m55"], 512 * KIB, 512 * KIB, "mps3-an547", 32_000_000),
)}

# Zephyr boards known without a tree (the values their Zephyr 3.4 files give; with a tree,
# `zephyr_board` reads the tree instead).
ZEPHYR_BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("qemu_cortex_m3", CPUS["cortex-m3"], 256 * KIB, 64 * KIB, "lm3s6965evb",
          configured_counter_hz=12_000_000, uart="uart0"),
    Board("mps2_an385", CPUS["cortex-m3"], 4 * MIB, 4 * MIB, "mps2-an385",
          configured_counter_hz=25_000_000, uart="uart0",
          names=("mps2_an385", "mps2/an385", "mps2/an385")),
    Board("mps2_an521", CPUS["cortex-m33"].without(dsp=True, fpu=True), 4 * MIB, 4 * MIB,
          "mps2-an521",
          configured_counter_hz=25_000_000, uart="uart0",
          names=("mps2_an521", "mps2/an521/cpu0", "mps2/an521/cpu0")),
    Board("mps3_an547", CPUS["cortex-m55"], 512 * KIB, 512 * KIB, "mps3-an547",
          configured_counter_hz=25_000_000, uart="uart0",
          names=("mps3_an547", "mps3/an547", "mps3/corstone300/an547")),
    Board("nucleo_f746zg", CPUS["cortex-m7"], 1 * MIB, 256 * KIB, uart="usart3"),
    Board("nucleo_l4r5zi", CPUS["cortex-m4"], 2 * MIB, 640 * KIB, uart="lpuart1"),
    Board("disco_l475_iot1", CPUS["cortex-m4"], 1 * MIB, 96 * KIB, uart="usart1"),
)}


def zephyr_names(board: Board) -> tuple[str, ...]:
    """Every spelling of a Zephyr board's name (3.x `mps2_an385`, 4.x `mps2/an385`)."""
    return tuple(dict.fromkeys(board.names or (board.name,)))


def known_zephyr_board(name: str) -> Board | None:
    for b in ZEPHYR_BOARDS.values():
        if name in zephyr_names(b):
            return b
    return None


def zephyr_board(name: str, zephyr_base: str | Path | None = None) -> Board:
    """The facts of Zephyr board `name`: from its files in the tree at `zephyr_base` when
    given, else from the built-in table."""
    known = known_zephyr_board(name)
    if zephyr_base is None:
        if known is None:
            raise BoardError(
                f"unknown board {name!r}: not one of the built-in Zephyr boards "
                f"({', '.join(ZEPHYR_BOARDS)}); with a Zephyr tree (ZEPHYR_BASE or "
                "--zephyr-base) any Arm board of that tree is read from its own files")
        return known
    read = read_zephyr_board(known.name if known else name, Path(zephyr_base))
    if known is not None:    # keep the spellings of other Zephyr releases
        read = replace(read, names=known.names, uart=read.uart or known.uart)
    return read


# -- reading a board from a Zephyr tree ----------------------------------------------------

def find_board_dir(name: str, base: Path) -> Path:
    stem = name.replace("/", "_")
    hits = sorted((base / "boards").glob(f"**/{stem}.yaml")) or \
        sorted((base / "boards").glob(f"**/{stem}.dts"))
    if not hits:
        raise BoardError(f"unknown board {name!r}: no boards/**/{stem}.yaml or .dts in the "
                         f"Zephyr tree {base}")
    return hits[0].parent


def read_zephyr_board(name: str, base: Path) -> Board:
    """Read a board from the Zephyr tree at `base` (raises BoardError naming what is
    missing)."""
    d = find_board_dir(name, base)
    stem = name.replace("/", "_")
    yaml = _text(d / f"{stem}.yaml")
    arch = _field(yaml, "arch")
    if arch is not None and arch != "arm":
        raise BoardError(f"board {name!r} is an {arch} board ({d}); only Arm Cortex-M "
                         "boards are supported")
    dts = devicetree_text(d / f"{stem}.dts", base)
    cpu, fpu_in_name = _cpu(dts)
    if cpu is None:
        raise BoardError(f"board {name!r}: no Arm Cortex-M CPU in {d / (stem + '.dts')}")
    defconfig = _text(d / f"{stem}_defconfig")
    if cpu.arch.startswith("v8"):    # optional extensions: what the SoC's Kconfig selects
        sel = soc_selects(base, re.findall(r"^CONFIG_(SOC_\w+)=y", defconfig, re.M))
        cpu = cpu.without(dsp="ARMV8_M_DSP" not in sel, fpu="CPU_HAS_FPU" not in sel,
                          mve="ARMV8_1_M_MVEI" not in sel)
    elif cpu.fpu and not fpu_in_name and "CPU_HAS_FPU" not in soc_selects(
            base, re.findall(r"^CONFIG_(SOC_\w+)=y", defconfig, re.M)):
        cpu = cpu.without(fpu=True)
    chosen = _chosen(dts)
    flash = _node_size(dts, chosen.get("zephyr,flash"))
    ram = _node_size(dts, chosen.get("zephyr,sram"))
    if flash is None and _field(yaml, "flash"):
        flash = int(_field(yaml, "flash")) * KIB
    if ram is None and _field(yaml, "ram"):
        ram = int(_field(yaml, "ram")) * KIB
    if flash is None or ram is None:
        raise BoardError(f"board {name!r}: flash or RAM size not found in its devicetree "
                         f"or {stem}.yaml ({d})")
    cmake = _text(d / "board.cmake")
    machine = re.search(r"-(?:machine|M)\s+([\w.-]+)", cmake)
    hz = re.search(r"^CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC=(\d+)", defconfig, re.M)
    if hz is None:        # Zephyr's default: the clock-frequency of the CPU node
        cpu0 = re.search(r"\bcpu@0\s*\{", dts)
        hz = re.search(r"clock-frequency\s*=\s*<\s*([^>]+?)\s*>", _block(dts, cpu0.end())) \
            if cpu0 else None
    return Board(name, cpu, flash, ram, machine.group(1) if machine else None, None,
                 _eval(hz.group(1)) if hz else None, chosen.get("zephyr,console"), (name,),
                 str(d))


_SOC_KCONFIG: dict[Path, str] = {}


def soc_selects(base: Path, symbols: list[str]) -> set[str]:
    """Every symbol the SoC Kconfig symbols select, transitively."""
    if base not in _SOC_KCONFIG:
        _SOC_KCONFIG[base] = "\n".join(_text(p) for p in sorted((base / "soc").glob(
            "**/Kconfig*")))
    text, seen, todo = _SOC_KCONFIG[base], set(), list(symbols)
    while todo:
        sym = todo.pop()
        for block in re.finditer(rf"^config {sym}\n(.*?)(?=^\S|\Z)", text, re.M | re.S):
            for sel in re.findall(r"^\s+select (\w+)", block.group(1), re.M):
                if sel not in seen:
                    seen.add(sel)
                    todo.append(sel)
    return seen


def _text(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def _field(yaml: str, key: str) -> str | None:
    m = re.search(rf"^{key}:\s*(\S+)", yaml, re.M)
    return m.group(1) if m else None


def dts_include_dirs(base: Path) -> list[Path]:
    """Zephyr's DTS roots: the tree and the modules beside it (include, dts/common, dts/arm,
    dts)."""
    roots = [base, *sorted(p.parent.parent for p in base.parent.glob("modules/*/*/zephyr/"
                                                                       "module.yml"))]
    return [r / s for r in roots for s in ("include", "include/zephyr", "dts/common",
                                           "dts/arm", "dts") if (r / s).is_dir()]


def devicetree_text(dts: Path, base: Path) -> str:
    """The board's devicetree with its includes inlined (missing ones, e.g. of an absent HAL
    module, are left out) and macros expanded by the C preprocessor, as Zephyr does."""
    if not dts.exists():
        return ""
    dirs = [dts.parent, *dts_include_dirs(base)]
    text = _inline(dts, dirs, set())
    cpp = shutil.which("arm-none-eabi-cpp") or shutil.which("cpp")
    if cpp is None:
        return text
    p = subprocess.run([cpp, "-x", "assembler-with-cpp", "-nostdinc", "-undef", "-P",
                        "-D__DTS__", "-"], input=text, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else text


def _inline(path: Path, dirs: list[Path], seen: set) -> str:
    if path in seen:
        return ""
    seen.add(path)
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r'\s*[#/]include\s*[<"]([^>"]+)[>"]', line)
        if not m:
            out.append(line)
            continue
        for d in (path.parent, *dirs):
            if (d / m.group(1)).is_file():
                out.append(_inline(d / m.group(1), dirs, seen))
                break
    return "\n".join(out)


def _cpu(dts: str) -> tuple[Cpu | None, bool]:
    m = re.search(r'compatible\s*=\s*"arm,cortex-(m\d+)(\+|plus)?(f)?"', dts)
    if not m:
        return None, False
    name = f"cortex-{m.group(1)}" + ("plus" if m.group(2) else "")
    return CPUS.get(name), bool(m.group(3))


def _chosen(dts: str) -> dict[str, str]:
    out = {}
    for block in re.finditer(r"\bchosen\s*\{([^}]*)\}", dts):
        for k, v in re.findall(r"([\w,-]+)\s*=\s*&(\w+)\s*;", block.group(1)):
            out[k] = v
    return out


def _node_size(dts: str, label: str | None) -> int | None:
    """Size cell of the (last) `reg` of the node labelled `label` (1 address + 1 size cell,
    as on every Cortex-M)."""
    if not label:
        return None
    size = None
    for m in re.finditer(rf"(?:\b{label}\s*:\s*[\w@,.-]+|&{label})\s*\{{", dts):
        body = _block(dts, m.end())
        reg = re.search(r"\breg\s*=\s*<([^>]*)>", body)
        if reg:
            cells = _cells(reg.group(1))
            if len(cells) >= 2:
                size = _eval(cells[1])
    return size


def _block(text: str, start: int) -> str:
    """The body of the block opened just before `start`, without its child nodes."""
    depth, out, i = 1, [], start
    while i < len(text) and depth:
        c = text[i]
        depth += (c == "{") - (c == "}")
        if depth == 1 and c != "}":
            out.append(c)
        i += 1
    return "".join(out)


def _cells(s: str) -> list[str]:
    cells, depth, cur = [], 0, ""
    for c in s.strip():
        depth += (c == "(") - (c == ")")
        if c.isspace() and depth == 0:
            if cur:
                cells.append(cur)
            cur = ""
        else:
            cur += c
    return cells + ([cur] if cur else [])


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Div: operator.floordiv,
        ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_}


def _eval(expr: str) -> int | None:
    """An integer cell expression of a preprocessed devicetree ((256 * 1024), 0x400000)."""
    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        raise ValueError(expr)
    try:
        return ev(ast.parse(re.sub(r"(?<=\d)[uUlL]+\b", "", expr), mode="eval").body)
    except (ValueError, SyntaxError):
        return None
