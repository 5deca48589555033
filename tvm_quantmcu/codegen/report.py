"""Memory report of a generated model: the arena (the real peak SRAM) against the planner's
prediction, and flash by section (weights, tables, code) measured on the compiled objects."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..topi.registry import TARGETS
from .emit import TABLES_SECTION, WEIGHTS_SECTION
from .generate import GeneratedModel


class ToolMissing(RuntimeError):
    pass


def _sections(obj: Path, size_tool: str) -> dict[str, int]:
    out = subprocess.run([size_tool, "-A", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = sec.get(parts[0], 0) + int(parts[1])
    return sec


def _weak_code(obj: Path) -> tuple[dict[str, int], dict[str, set[str]]]:
    """The weak functions of an object (the micro-kernels' QMCU_SHARED ones: every kernel
    file defines them, the linked firmware holds one copy of those called) as symbol →
    bytes, and the symbols each text section refers to."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    weak = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] == "W":
            weak[parts[3]] = int(parts[1], 16)
    out = subprocess.run(["arm-none-eabi-readelf", "-rW", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    refs: dict[str, set[str]] = {}
    section = None
    for line in out.splitlines():
        m = re.match(r"Relocation section '\.rel(\.text[^']*)'", line)
        if m:
            section = m.group(1)
        elif line.startswith("Relocation section"):
            section = None
        elif section and line[:1].isdigit() and len(line.split()) >= 5:
            refs.setdefault(section, set()).add(line.split()[4])
    return weak, refs


def _weak_symbol(section: str, weak) -> str | None:
    """The weak function a text section holds (.text.f, or .text.unlikely.f for a cold one)."""
    sym = section.rsplit(".", 1)[-1]
    return sym if section.startswith(".text.") and sym in weak else None


def _called_weak(weak, refs: dict[str, set[str]]) -> set[str]:
    """The weak functions reachable from the other code (what --gc-sections keeps)."""
    body = {_weak_symbol(sec, weak): syms for sec, syms in refs.items()}
    seen: set[str] = set()
    todo = [s for sec, syms in refs.items() if _weak_symbol(sec, weak) is None for s in syms]
    while todo:
        sym = todo.pop()
        if sym in weak and sym not in seen:
            seen.add(sym)
            todo.extend(body.get(sym, ()))
    return seen


def flash_by_section(gen: GeneratedModel, target: str = "cortex-m4") -> dict[str, int]:
    """Bytes of weights, tables (patch windows), code and other constants, from objects
    compiled for `target` with the Arm toolchain (-O2, one section per function/object).
    A weak function counts once, with its largest copy, if some code calls it: the linker
    keeps one copy of those and drops the rest."""
    flags = TARGETS[target]
    if not flags or shutil.which("arm-none-eabi-gcc") is None:
        raise ToolMissing("flash sizes need arm-none-eabi-gcc (apt-get install "
                          "gcc-arm-none-eabi) and a Cortex-M target")
    total = {"weights": 0, "tables": 0, "code": 0, "other_rodata": 0}
    ram: dict[str, int] = {}     # by section: weak buffers shared by kernels count once
    shared: dict[str, int] = {}  # the same for weak functions: symbol → bytes
    weak_all: dict[str, int] = {}
    refs: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as d:
        for src in gen.sources:
            obj = Path(d) / (src.stem + ".o")
            subprocess.run(["arm-none-eabi-gcc", *flags, "-O2", "-std=c11", "-ffunction-sections",
                            "-fdata-sections", f"-I{gen.directory}", "-c", str(src), "-o",
                            str(obj)], check=True, capture_output=True)
            weak, obj_refs = _weak_code(obj)
            weak_all.update(weak)
            for sec, syms in obj_refs.items():
                refs.setdefault(sec, set()).update(syms)
            for name, n in _sections(obj, "arm-none-eabi-size").items():
                sym = _weak_symbol(name, weak)
                if sym is not None:
                    shared[sym] = max(shared.get(sym, 0), n)
                elif name == WEIGHTS_SECTION:
                    total["weights"] += n
                elif name == TABLES_SECTION:
                    total["tables"] += n
                elif name.startswith(".text"):
                    total["code"] += n
                elif name.startswith(".rodata"):
                    total["other_rodata"] += n
                elif name.startswith((".bss", ".data")):
                    ram[name] = max(ram.get(name, 0), n)
    total["code"] += sum(shared[sym] for sym in _called_weak(weak_all, refs))
    total["ram_static"] = sum(ram.values())
    total["flash_total"] = total["weights"] + total["tables"] + total["code"] + \
        total["other_rodata"]
    return total


def linked_symbol_size(binary, symbol: str, nm: str = "nm") -> int | None:
    """Size of a symbol in a linked program (e.g. the arena in the firmware ELF): the memory
    the device really reserves, read back from the binary."""
    if shutil.which(nm) is None:
        return None
    out = subprocess.run([nm, "-S", str(binary)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == symbol:
            return int(parts[1], 16)
    return None


def linked_weights_bytes(binary, symbols, nm: str = "nm") -> int | None:
    """Bytes the weights section takes in a linked program: from the start of the first of
    its constants (`symbols`, the generated model's ``weight_symbols``) to the end of the
    last, alignment padding between them included, read back from the binary's symbol table.
    None without `nm` or when a constant is missing from the binary."""
    if shutil.which(nm) is None:
        return None
    out = subprocess.run([nm, "-S", str(binary)], capture_output=True, text=True).stdout
    want, spans = set(symbols), {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in want:
            start = int(parts[0], 16)
            spans[parts[3]] = (start, start + int(parts[1], 16))
    if not want or set(spans) != want:
        return None
    return max(e for _, e in spans.values()) - min(s for s, _ in spans.values())


def memory_report(gen: GeneratedModel, target: str = "cortex-m4") -> dict:
    """Arena vs prediction, flash by section (when the Arm toolchain is present) and per
    layer: weight bytes, kernels and MACs per call."""
    m = gen.meta
    rep = {"arena_bytes": m["arena_bytes"],
           "predicted_peak_sram_bytes": m["predicted_peak_sram_bytes"],
           "arena_vs_predicted": m["arena_vs_predicted"],
           "kernel_scratch_bytes_max": max(c["scratch_bytes"] for c in m["calls"]),
           "layers": {}}
    try:
        rep["flash"] = flash_by_section(gen, target)
    except ToolMissing as e:
        rep["flash"] = {"error": str(e)}
    for c in m["calls"]:
        row = rep["layers"].setdefault(c["layer"], {"op": c["op"], "weight_bytes": 0,
                                                    "kernels": []})
        row["weight_bytes"] = max(row["weight_bytes"], c["weight_bytes"])
        row["kernels"].append(f"{c['kernel']} ({c['branch'] or 'only'})")
    return rep


def format_report(rep: dict) -> str:
    """The report as markdown."""
    lines = ["| | bytes |", "|---|---:|",
             f"| arena (peak SRAM, activations) | {rep['arena_bytes']:,} |",
             f"| planner's predicted peak | {rep['predicted_peak_sram_bytes']:,} |",
             f"| largest kernel scratch (stack) | {rep['kernel_scratch_bytes_max']:,} |"]
    fl = rep.get("flash", {})
    for k in ("weights", "tables", "code", "other_rodata", "flash_total", "ram_static"):
        if k in fl:
            lines.append(f"| flash: {k.replace('_', ' ')} | {fl[k]:,} |"
                         if k != "ram_static" else f"| static RAM (.bss/.data) | {fl[k]:,} |")
    lines += ["", "| layer | op | weight bytes | kernels |", "|---|---|---:|---|"]
    for name, row in rep["layers"].items():
        lines.append(f"| {name} | {row['op']} | {row['weight_bytes']:,} | "
                     f"{', '.join(row['kernels'])} |")
    return "\n".join(lines) + "\n"
