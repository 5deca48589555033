"""Deploy a zoo model: policy → generated C → project (host / QEMU / Zephyr) → run test images
over the RPC link → compare every output with the integer reference (the golden model)."""
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


BOARDS = {
    "host": BoardSpec("host", None, "host"),
    "qemu-m4": BoardSpec("qemu", "mps2-an386", "cortex-m4"),
    "qemu-m7": BoardSpec("qemu", "mps2-an500", "cortex-m7"),
    "qemu-m55": BoardSpec("qemu", "mps3-an547", "cortex-m55"),
}


class DeployError(ValueError):
    """A deploy request that cannot be carried out as given (names what to change)."""


def policy_budget_kb(pol) -> float | None:
    """The SRAM budget (KB) a policy was searched for, as recorded in it (None: not recorded)."""
    kb = (pol.params or {}).get("sram_kb")
    return None if kb is None else float(kb)


def resolve_policy(model: str, policy: str, policy_file: str | None = None, bar=None,
                   sram_kb: float | None = None):
    """A policy file, else the shipped policy of that name, else a fresh search.

    A policy file carries its SRAM budget and patch plan: it is used as it is, and a
    conflicting `sram_kb` is an error (never a silent re-search). Without a file, a shipped
    policy is used when it was made for `sram_kb` (or no budget is asked for), otherwise the
    policy is searched for `sram_kb`."""
    from . import pipeline, search
    from .models.policies import available, load_policy
    from .quant.policy import POLICIES, Policy
    if policy_file:
        pol = Policy.load(policy_file, model=model, model_hash=pipeline.load(model).model_hash)
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
    if policy in available(model):
        pol = load_policy(model, policy)
        if sram_kb is None or policy_budget_kb(pol) == float(sram_kb):
            return pol
    params = search.SearchParams() if sram_kb is None else search.SearchParams(sram_kb=sram_kb)
    ctx = search.prepare(model, params)
    pol, _ = search.make_policy(ctx, policy, "auto" if policy == "quantmcu" else None, bar=bar)
    return pol


def default_out(model: str, policy: str, board: str) -> Path:
    return Path("quantmcu-out") / f"{model}.{policy}.{board.replace(':', '-')}"


def reference(graph, pol, x_q: np.ndarray):
    """Outputs and routing decisions of the integer simulator (the golden model)."""
    from .search.simulate import Simulator
    return Simulator(graph, pol).run(x_q)


def deploy(model: str, board: str = DEFAULT_BOARD, policy: str = DEFAULT_POLICY,
           images: int = DEFAULT_IMAGES, out: str | Path | None = None,
           policy_file: str | None = None, bar_factory=None, kernel_lookup=None,
           sram_kb: float | None = None) -> dict:
    """Generate, build, boot, run `images` test images over RPC; returns the measurements."""
    import micro_project

    from . import data, pipeline
    from .codegen import generate
    from .codegen.report import format_report, linked_symbol_size, memory_report
    from .quant import quantize_input

    if board not in BOARDS:
        raise DeployError(f"unknown board {board!r}; one of {', '.join(BOARDS)} or "
                          "zephyr:BOARD")
    if images < 1:
        raise DeployError("--images must be at least 1")
    spec = BOARDS[board]
    t0 = time.time()
    imp = pipeline.load(model)
    pol = resolve_policy(model, policy, policy_file, sram_kb=sram_kb)
    out = Path(out) if out else default_out(model, pol.name, board)
    gen = generate(imp.graph, pol, out / "model", name=model,
                   target=spec.target if spec.target != "host" else "cortex-m4",
                   kernel_lookup=kernel_lookup)
    opts = {"board": spec.qemu_board} if spec.qemu_board else {}
    project = micro_project.get_template(spec.template).generate_project(
        out / "model", out / "project", opts)
    binary = project.build()
    test = data.load("test")
    n = min(images, len(test))
    size = imp.input_size
    x_q = quantize_input(test.images(size, 0, n, imp.input_channels)).astype(np.uint8)
    labels = test.labels[:n]
    ref, flags = reference(imp.graph, pol, x_q)
    bar = bar_factory(n, f"deploy {board}") if bar_factory else None
    outs, ticks, cycles = [], [], []
    t_session = time.time()
    with project.session(expected_hash=gen.hash) as client:
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
                "summary": st.summary(), "session_seconds": round(time.time() - t_session, 1)}
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
    if spec.template == "qemu":
        instr = np.array([project.instructions(t) for t in ticks], np.float64)
        res["instructions_per_inference"] = int(round(instr.mean()))
        res["instructions_min_max"] = [int(instr.min()), int(instr.max())]
        if len(cycles) == n:       # Cortex-M4 boards with the cycles plugin built
            res["cycles_per_inference"] = int(round(float(np.mean(cycles))))
            res["cycle_model"] = "cortex-m4 (micro_project/qemu_plugin)"
    else:
        res["host_ns_per_inference"] = float(np.mean(ticks))
    res["arena_bytes_linked"] = linked_symbol_size(
        binary, "qmcu_arena", "arm-none-eabi-nm" if spec.template == "qemu" else "nm")
    rep = memory_report(gen, spec.target if spec.target != "host" else "cortex-m4")
    if "flash_total" in rep["flash"]:
        res["flash_bytes"] = rep["flash"]["flash_total"]
        res["flash_sections"] = rep["flash"]
    (out / "memory.md").write_text(format_report(rep))
    res["seconds"] = round(time.time() - t0, 1)
    return res


def zephyr_app(model: str, board_name: str, policy: str = DEFAULT_POLICY,
               out: str | Path | None = None, policy_file: str | None = None,
               sram_kb: float | None = None) -> dict:
    """Generate the model and a Zephyr application for `board_name`; returns the paths and
    the west commands to build and flash it."""
    import micro_project
    from micro_project.templates.zephyr import find_board

    from . import pipeline
    from .codegen import generate
    zb = find_board(board_name)
    imp = pipeline.load(model)
    pol = resolve_policy(model, policy, policy_file, sram_kb=sram_kb)
    out = Path(out) if out else default_out(model, pol.name, f"zephyr-{zb.legacy}")
    target = zb.cpu if zb.cpu in ("cortex-m4", "cortex-m7", "cortex-m55", "cortex-m3") \
        else "cortex-m4"
    gen = generate(imp.graph, pol, out / "model", name=model, target=target)
    app = out / "app"
    micro_project.get_template("zephyr").generate_project(out / "model", app,
                                                          {"board": zb.legacy})
    cmds = [f"west build -b {name} -d {app}/build {app}" for name in zb.names] + \
        [f"west flash -d {app}/build"]
    return {"model": model, "board": f"zephyr:{board_name}", "policy": pol.name,
            "app": str(app), "model_dir": str(gen.directory), "model_hash": gen.hash,
            "arena_bytes": gen.arena_bytes, "west_build_commands": cmds[:-1],
            "west_flash_command": cmds[-1],
            "zephyr_versions": {"3.4-3.6": zb.legacy, "3.7-4.0": zb.qualified,
                                "4.1+": zb.latest}}
