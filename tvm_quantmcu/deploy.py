"""Deploy a model (zoo name, FILE.pt2 or FILE.py:factory): policy → generated C → project
(host / QEMU / Zephyr) → run test images over the RPC link → compare every output with the
integer reference (the golden model)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_BOARD = "qemu-m4"
DEFAULT_POLICY = "quantmcu"
DEFAULT_IMAGES = 200


@dataclass(frozen=True)
class BoardSpec:
    template: str
    qemu_board: str | None
    target: str            # kernel/flash target (topi.registry.TARGETS)


def _qemu_spec(machine: str) -> BoardSpec:
    from micro_project.board_table import QEMU_BOARDS
    return BoardSpec("qemu", machine, QEMU_BOARDS[machine].cpu.name)


BOARDS = {
    "host": BoardSpec("host", None, "host"),
    "qemu-m4": _qemu_spec("mps2-an386"),
    "qemu-m7": _qemu_spec("mps2-an500"),
    "qemu-m55": _qemu_spec("mps3-an547"),
}
# Flash and RAM a firmware needs besides the model: Zephyr's kernel, drivers and minimal libc
# with the RPC server (measured: 14-19 KB of flash, 5-7 KB of RAM without the main stack on
# mps2_an385 / mps3_an547, Zephyr 3.4); the bare-metal board layer needs less.
FIRMWARE_RESERVE = {"zephyr": (20 * 1024, 8 * 1024), "qemu": (8 * 1024, 4 * 1024)}


QEMU_INSTRUCTIONS_PER_SECOND = 20e6      # a slow, loaded host's emulation speed
MIN_HANG_SECONDS = 5.0


def hang_timeout(instructions: float, slack: float = 4.0) -> float:
    """Seconds without an answer after which a board running a request of `instructions` is
    declared hung: `slack` times a slow host's emulation time, at least MIN_HANG_SECONDS."""
    return max(MIN_HANG_SECONDS, slack * instructions / QEMU_INSTRUCTIONS_PER_SECOND)


def expected_instructions(meta: dict) -> int:
    """A generous estimate of one inference's instructions from the generated program: two per
    MAC of every kernel call (the kernels run at about one, requantization included)."""
    return 2 * sum(c["macs_per_call"] for c in meta.get("calls", []))


def link_options(hang_seconds: float) -> dict:
    """Client options under which an unanswering board is declared hung after `hang_seconds`
    (each request is tried twice; a quick one for 2 s, or a tenth of a long hang timeout,
    which a benchmark on a loaded host asks for)."""
    return {"run_timeout": hang_seconds / 2,
            "timeout": min(max(2.0, hang_seconds / 10), hang_seconds / 2),
            "timeout_retries": 1}


def emulator_time_limit(images: int, hang_seconds: float) -> int:
    """Seconds after which an emulator is killed whatever happens (the last resort should the
    CLI itself be killed): room for every image to take two hang timeouts, as on a noisy link."""
    return int(600 + 2 * images * hang_seconds)


class DeployError(ValueError):
    """A deploy request that cannot be carried out as given (names what to change)."""


def policy_budget_kb(pol) -> float | None:
    """The SRAM budget (KB) a policy was searched for, as recorded in it (None: not recorded)."""
    kb = (pol.params or {}).get("sram_kb")
    return None if kb is None else float(kb)


def resolve_policy(model, policy: str, policy_file: str | None = None, bar=None,
                   sram_kb: float | None = None, data_source=None):
    """A policy file, else the shipped policy of that name, else a fresh search.

    A policy file carries its SRAM budget and patch plan: it is used as it is, and a
    conflicting `sram_kb` is an error (never a silent re-search). Without a file, a shipped
    policy is used when it was made for `sram_kb` (or no budget is asked for), otherwise the
    policy is searched for `sram_kb` (calibrated on `data_source`)."""
    from . import pipeline, search
    from .models.policies import SHIPPED_PHI, available, load_policy
    from .quant.policy import POLICIES, Policy
    imp = pipeline.load(model)
    if policy_file:
        pol = Policy.load(policy_file, model=imp.name, model_hash=imp.model_hash,
                          graph=imp.graph)
        kb = policy_budget_kb(pol)
        if sram_kb is not None and kb != float(sram_kb):
            recorded = f"{kb:g} KB" if kb is not None else "no recorded budget"
            raise DeployError(
                f"policy {policy_file} was searched for an SRAM budget of {recorded} (plan: "
                f"split {pol.split_index}, grid {pol.grid}), not --sram-kb {sram_kb:g}; drop "
                f"--sram-kb to deploy it as it is, or search again with `quantmcu search "
                f"--sram-kb {sram_kb:g} --out FILE`")
        return pol
    if policy not in POLICIES:
        raise DeployError(f"unknown policy {policy!r}; one of {', '.join(POLICIES)}")
    if imp.ref.kind == "zoo" and imp.ref.checkpoint is None and policy in available(imp.name):
        pol = load_policy(imp.name, policy)
        if sram_kb is None or policy_budget_kb(pol) == float(sram_kb):
            return pol
    params = search.SearchParams(phi=SHIPPED_PHI if policy == "quantmcu" else "bitops")
    if sram_kb is not None:
        params.sram_kb = sram_kb
    ctx = search.prepare(imp, params, data_source=data_source)
    pol, _ = search.make_policy(ctx, policy, "auto" if policy == "quantmcu" else None, bar=bar)
    return pol


def default_out(model: str, policy: str, board: str) -> Path:
    return Path("quantmcu-out") / f"{model}.{policy}.{board.replace(':', '-')}"


def lowered_module(imp, pol, target: str = "cortex-m4"):
    """The model's Relax module through the QuantMCU passes for the kernels' `target`: what
    the firmware is made from."""
    from .relax_build import build
    return build(imp, None, pol, target=target)


def reference(graph, pol, x_q: np.ndarray):
    """Outputs and routing decisions of the integer simulator (the golden model)."""
    from .search.simulate import Simulator
    return Simulator(graph, pol).run(x_q)


def board_spec(board: str, zephyr_base: str | Path | None = None):
    """The template, target and facts (micro_project.board_table.Board; None for the host)
    of a board name: one of BOARDS or zephyr:BOARD (read from the Zephyr tree when there is
    one)."""
    from micro_project import ProjectError
    from micro_project.board_table import QEMU_BOARDS
    if board.startswith("zephyr:"):
        from micro_project.templates.zephyr import find_board
        try:
            facts = find_board(board.split(":", 1)[1], zephyr_base)
        except ProjectError as e:      # an unknown board, a non-Arm board
            raise DeployError(str(e).removeprefix("zephyr template: ")) from None
        return BoardSpec("zephyr", facts.qemu_machine, facts.cpu.name), facts
    if board not in BOARDS:
        raise DeployError(f"unknown board {board!r}; one of {', '.join(BOARDS)} or "
                          "zephyr:BOARD")
    spec = BOARDS[board]        # BOARDS is built from QEMU_BOARDS: every machine is there
    return spec, QEMU_BOARDS[spec.qemu_board] if spec.qemu_board else None


def check_fits(board: str, facts, template: str, gen, flash: dict) -> None:
    """One clear error when the model cannot fit the board: flash (the model's weights,
    tables and code plus the firmware around it) and RAM (arena, static buffers, the main
    stack with the largest kernel scratch, the firmware's own)."""
    if facts is None or "flash_total" not in flash:
        return
    fw_flash, fw_ram = FIRMWARE_RESERVE.get(template, (0, 0))
    need = flash["flash_total"] + fw_flash
    if need > facts.flash_bytes:
        raise DeployError(
            f"{board}: the model needs {need:,} B of flash ({flash['weights']:,} B weights, "
            f"{flash['code']:,} B code, {flash['tables'] + flash['other_rodata']:,} B "
            f"tables/constants, about {fw_flash:,} B firmware) but the board has "
            f"{facts.flash_bytes:,} B; choose a board with more flash or a policy with "
            "fewer weight bits")
    scratch = max((c["scratch_bytes"] for c in gen.meta["calls"]), default=0)
    ram = gen.arena_bytes + flash.get("ram_static", 0) + scratch + fw_ram
    if ram > facts.ram_bytes:
        raise DeployError(
            f"{board}: the model needs {ram:,} B of RAM (arena {gen.arena_bytes:,} B, kernel "
            f"scratch {scratch:,} B, static {flash.get('ram_static', 0):,} B, about "
            f"{fw_ram:,} B firmware) but the board has {facts.ram_bytes:,} B; choose a board "
            "with more RAM or search a policy for a smaller SRAM budget (--sram-kb)")


def _generate_checked(imp, pol, out: Path, model: str, board: str, spec: BoardSpec, facts,
                      kernel_lookup):
    """Generate the model library from the module the QuantMCU passes lowered, measure it and
    check it against the board before anything is written to `out`; then move it to
    out/model."""
    import shutil
    import tempfile
    from dataclasses import replace

    from .codegen import generate_module
    from .codegen.generate import MARKER
    from .codegen.report import memory_report
    dest = out / "model"
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise FileExistsError(f"{dest} exists and is not a generated model; choose an empty "
                              "or new directory")
    target = spec.target if spec.target != "host" else "cortex-m4"
    with tempfile.TemporaryDirectory(prefix="quantmcu-deploy-") as tmp:
        gen = generate_module(lowered_module(imp, pol, target), Path(tmp) / "model",
                              name=model, kernel_lookup=kernel_lookup)
        rep = memory_report(gen, target)
        check_fits(board, facts, spec.template, gen, rep["flash"])
        out.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(gen.directory), str(dest))
    return replace(gen, directory=dest), rep


def deploy(model, board: str = DEFAULT_BOARD, policy: str = DEFAULT_POLICY,
           images: int = DEFAULT_IMAGES, out: str | Path | None = None,
           policy_file: str | None = None, bar_factory=None, kernel_lookup=None,
           sram_kb: float | None = None, zephyr_base: str | Path | None = None,
           port: str | None = None, timeout: float | None = None, data_source=None) -> dict:
    """Generate, build, boot, run `images` test images over RPC; returns the measurements.
    `timeout`: seconds without an answer after which the board is declared hung (default:
    hang_timeout of the model's expected instructions). `model`: zoo name, FILE.pt2,
    FILE.py:factory or a ModelRef; `data_source`: the test (and calibration) images, default
    Fashion-MNIST.

    zephyr:BOARD: a Zephyr application, built with west when a Zephyr tree is given
    (`zephyr_base` or $ZEPHYR_BASE; else generated only), run under QEMU for boards Zephyr
    runs there, else flashed with `west flash` and reached on the serial `port`."""
    import micro_project

    from . import data, pipeline
    from .codegen.report import format_report, linked_symbol_size, linked_weights_bytes
    from .quant import quantize_input

    spec, facts = board_spec(board, zephyr_base)
    if images < 1:
        raise DeployError("--images must be at least 1")
    src = data.source(data_source)
    test = src.split("test")
    if images > len(test):
        raise DeployError(f"--images {images}: the test set has {len(test):,} images; give at "
                          f"most {len(test)}")
    t0 = time.time()
    imp = pipeline.load(model)
    model = imp.name
    src.check(imp.input_shape)
    pol = resolve_policy(imp, policy, policy_file, sram_kb=sram_kb, data_source=src)
    out = Path(out) if out else default_out(model, pol.name, board)
    gen, rep = _generate_checked(imp, pol, out, model, board, spec, facts, kernel_lookup)
    (out / "memory.md").write_text(format_report(rep))
    if spec.template == "zephyr":
        project, early = _zephyr_project(out, board, facts, gen, rep, zephyr_base, port)
        if early is not None:
            early["seconds"] = round(time.time() - t0, 1)
            return early
        binary = project.elf
    else:
        opts = {"board": spec.qemu_board} if spec.qemu_board else {}
        project = micro_project.get_template(spec.template).generate_project(
            out / "model", out / "project", opts)
        binary = project.build()
    n = images
    x_q = quantize_input(test.images(imp.input_shape, 0, n)).astype(np.uint8)
    labels = test.labels[:n]
    ref, flags = reference(imp.graph, pol, x_q)
    bar = bar_factory(n, f"deploy {board}") if bar_factory else None
    outs, ticks, cycles = [], [], []
    t_session = time.time()
    hardware_link = {"serial_port": port} if spec.template == "zephyr" and port else None
    hang = timeout or hang_timeout(expected_instructions(gen.meta))
    emulated = spec.template != "host"      # (a hardware board ignores the limit)
    with project.session(expected_hash=gen.hash, transport_options=hardware_link,
                         flash_options={"time_limit": emulator_time_limit(n, hang)}
                         if emulated else None, **link_options(hang)) as client:
        counter = client.info().counter_name
        for i in range(n):
            o, timing = client.infer(x_q[i].tobytes())
            outs.append(np.frombuffer(o, np.uint8).astype(np.int32))
            ticks.append(timing.ticks_per_run)
            if spec.template == "qemu":
                runs = project.modelled_cycles()    # one per run (a resent RUN adds one)
                if runs:
                    cycles.append(float(np.mean(runs)))
            if bar is not None:
                bar.update(1)
        st = client.stats
        link = {"exchanges": st.exchanges, "resends": st.resends, "naks": st.naks,
                "truncated": st.truncated, "damaged_answers": st.bad_frames,
                "timeouts": st.timeouts, "reboots": st.reboots,
                "payload_sizes": {str(k): v for k, v in sorted(st.payload_sizes.items())},
                "summary": st.summary(), "session_seconds": round(time.time() - t_session, 1),
                "hang_timeout_seconds": round(hang, 1)}
    if bar is not None:
        bar.close()
    dev = np.stack(outs)
    match = (dev == ref).all(axis=1)
    res = {
        "model": model, "board": board, "policy": pol.name, "images": n,
        "sram_kb": policy_budget_kb(pol), "plan": {"split_index": pol.split_index,
                                                   "grid": list(pol.grid) if pol.grid else None},
        "device_top1": float((dev.argmax(1) == labels).mean()),
        "reference_top1": float((ref.argmax(1) == labels).mean()),
        "match_rate": float(match.mean()),
        "mismatched_images": np.flatnonzero(~match)[:20].tolist(),
        "outlier_patch_rate": float(flags.mean()) if flags.size else 0.0,
        "counter": counter,
        "instructions_per_inference": None,
        "cycles_per_inference": None,
        "arena_bytes": gen.arena_bytes,
        "predicted_peak_sram_bytes": gen.meta["predicted_peak_sram_bytes"],
        "flash_bytes": None,
        "model_hash": gen.hash, "out": str(out),
        "link": link,
    }
    if getattr(project, "runs_in_qemu", spec.template == "qemu"):
        instr = np.array([project.instructions(t) for t in ticks], np.float64)
        res["instructions_per_inference"] = int(round(instr.mean()))
        res["instructions_min_max"] = [int(instr.min()), int(instr.max())]
        if len(cycles) == n:       # Cortex-M4 boards with the cycles plugin built
            res["cycles_per_inference"] = int(round(float(np.mean(cycles))))
            res["cycle_model"] = "cortex-m4 (micro_project/qemu_plugin)"
            if pol.split_index is not None and pol.name != "int8":
                # the kernel cost model is the Cortex-M4's: other boards get no such figure
                from .search.api import speedup_vs_int8
                res["modelled_vs_int8_patches"] = speedup_vs_int8(
                    imp.graph, pol, res["outlier_patch_rate"])
    else:
        res["host_ns_per_inference"] = float(np.mean(ticks))
    nm = "nm" if spec.template == "host" else "arm-none-eabi-nm"
    res["arena_bytes_linked"] = linked_symbol_size(binary, "qmcu_arena", nm)
    res["weights_bytes_linked"] = linked_weights_bytes(binary, gen.meta["weight_symbols"], nm)
    if "flash_total" in rep["flash"]:
        res["flash_bytes"] = rep["flash"]["flash_total"]
        res["flash_sections"] = rep["flash"]
    if spec.template == "zephyr":
        res.update(_zephyr_facts(project, facts))
    res["seconds"] = round(time.time() - t0, 1)
    return res


def _zephyr_project(out: Path, board: str, facts, gen, rep, zephyr_base, port):
    """Generate the Zephyr application; build it when there is a tree. Returns the project
    and, when deploy stops here (no tree; a hardware board without a port), its result."""
    import micro_project
    from micro_project import ToolMissingError
    from micro_project.templates.zephyr import INSTALL_HINT, zephyr_tree
    base = zephyr_tree(zephyr_base)
    app = out / "app"
    project = micro_project.get_template("zephyr").generate_project(
        out / "model", app, {"board": facts.name,
                             **({"zephyr_base": str(base)} if base else {})})
    names = project.board_info["names"]
    result = {"model": gen.meta["model"], "board": board, "policy": gen.meta["policy"],
              "app": str(app), "model_dir": str(gen.directory), "model_hash": gen.hash,
              "arena_bytes": gen.arena_bytes, "board_facts": facts.describe(),
              "flash_bytes": rep["flash"].get("flash_total"),
              "west_build_commands": [f"west build -b {n} -d {app}/build {app}" for n in names],
              "west_flash_command": f"west flash -d {app}/build", "out": str(out)}
    if base is None or not (base / "VERSION").exists():
        result["missing"] = (f"no Zephyr tree ({base or 'ZEPHYR_BASE is not set'}): generated "
                             f"only. To build and run: {INSTALL_HINT}")
        return project, result
    try:
        project.build()
    except ToolMissingError as e:
        result["missing"] = str(e)
        return project, result
    result.update(_zephyr_facts(project, facts))
    if not facts.qemu_machine:
        if port is None:
            result["next"] = (f"{facts.name} is a hardware board: connect it and run again "
                              "with --port (e.g. /dev/ttyACM0) to flash it with west flash "
                              "and run the images over its serial port")
            return project, result
    return project, None


def _zephyr_facts(project, facts) -> dict:
    """What the built image takes of the board, and the timing conversion under QEMU."""
    from micro_project.qemu import elf_sizes
    sz = elf_sizes(project.elf)
    res = {"board_facts": facts.describe(), "image_flash_bytes": sz["text"] + sz["data"],
           "image_ram_bytes": sz["data"] + sz["bss"], "board_flash_bytes": facts.flash_bytes,
           "board_ram_bytes": facts.ram_bytes}
    if project.runs_in_qemu:
        cal = project.counter_calibration()
        res["counter_hz_configured"] = cal["configured_counter_hz"]
        res["counter_hz_calibrated"] = cal["counter_hz"]
    return res
