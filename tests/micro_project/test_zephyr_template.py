"""The zephyr template: the generated application tree, its sources compiled with
arm-none-eabi-gcc against the portable core (Zephyr's API stubbed), the same sources serving
the RPC on the host, and the west command lines."""
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

import micro_project
from micro_project.client import Client
from micro_project.project_api import ToolMissingError
from micro_project.board_table import ZEPHYR_BOARDS as BOARDS
from micro_project.board_table import zephyr_names
from micro_project.templates.zephyr import find_board, overlay_stem
from micro_project.transport import ProcessTransport

from mp_support import requires_arm_gcc, requires_gcc

STUB = Path(__file__).resolve().parent / "zephyr_stub"


@pytest.fixture(autouse=True)
def no_zephyr_tree(monkeypatch):
    """These tests use the built-in board table; the end-to-end ones (test_zephyr_e2e.py)
    use the tree of ZEPHYR_BASE."""
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)


@pytest.fixture(scope="module")
def zephyr_project(model_dirs, tmp_path_factory):
    return micro_project.get_template("zephyr").generate_project(
        model_dirs["tiny"].directory, tmp_path_factory.mktemp("zephyr") / "app",
        {"board": "nucleo_f746zg"})


def rpc_uart_label(project, board_name: str) -> str:
    text = (project.project_dir / "boards" / f"{overlay_stem(board_name)}.overlay").read_text()
    m = re.search(r"qmcu,rpc-uart\s*=\s*&(\w+)\s*;", text)
    assert m, f"overlay of {board_name} chooses no qmcu,rpc-uart"
    return m.group(1)


def stub_devicetree(out_dir: Path, label: str) -> None:
    """What Zephyr's devicetree generator would emit for the overlay's chosen UART."""
    out_dir.mkdir(parents=True, exist_ok=True)
    node = f"DT_N_{label}"
    (out_dir / "stub_devicetree_generated.h").write_text(
        f"#define DT_CHOSEN_qmcu_rpc_uart {node}\n#define DT_CHOSEN_qmcu_rpc_uart_EXISTS 1\n"
        f"#define DT_CHOSEN_zephyr_console {node}\n#define DT_CHOSEN_zephyr_console_EXISTS 1\n"
        f"#define STUB_RPC_DEVICE __device_{node}\n#define STUB_RPC_DEVICE_NAME \"{label}\"\n"
        f"extern const struct device __device_{node};\n")


def cmake_sources(project) -> list[Path]:
    """The C files the CMakeLists.txt names (with the model glob expanded)."""
    text = (project.project_dir / "CMakeLists.txt").read_text()
    block = re.search(r"target_sources\(app PRIVATE(.*?)\)", text, re.S).group(1)
    files = []
    for item in block.split():
        if item == "${QMCU_MODEL_SOURCES}":
            files += sorted((project.project_dir / "model").glob("*.c"))
        else:
            files.append(project.project_dir / item)
    return files


def compile_app(project, board_name, cc, flags, out: Path, extra=()):
    b = find_board(board_name)
    stub_devicetree(out / "gen", b.uart)
    d = project.project_dir
    cmd = [cc, *flags, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
           f"-DCONFIG_BOARD=\"{b.name}\"", "-DQMCU_MAX_PAYLOAD=512u",
           f"-I{STUB}", f"-I{out / 'gen'}", f"-I{d / 'core' / 'include'}", f"-I{d / 'model'}",
           *map(str, cmake_sources(project)), str(STUB / "stub_kernel.c"), *extra,
           "-o", str(out / "app.elf")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out / "app.elf"


def test_generated_tree_for_nucleo_f746zg(zephyr_project, model_dirs):
    d = zephyr_project.project_dir
    cml = (d / "CMakeLists.txt").read_text()
    assert "find_package(Zephyr REQUIRED HINTS $ENV{ZEPHYR_BASE})" in cml
    assert re.search(r"cmake_minimum_required\(VERSION 3\.20", cml)
    for f in cmake_sources(zephyr_project):
        assert f.exists(), f
    conf = dict(line.split("=", 1) for line in (d / "prj.conf").read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["CONFIG_MINIMAL_LIBC"] == "y" and conf["CONFIG_CPP"] == "n"
    assert conf["CONFIG_UART_CONSOLE"] == "n" and conf["CONFIG_PRINTK"] == "n"
    assert not any("NEWLIB" in k for k in conf)
    assert rpc_uart_label(zephyr_project, "nucleo_f746zg") == "usart3"
    src = (d / "src" / "qmcu_hal_zephyr.c").read_text()
    for api in ("uart_poll_in", "uart_poll_out", "k_cycle_get_32",
                "sys_clock_hw_cycles_per_sec"):
        assert api in src
    assert "printk" not in src and "#include <stdio.h>" not in src
    meta = json.loads((d / "project.json").read_text())
    assert meta["options"]["board"] == "nucleo_f746zg"
    assert meta["model"]["hash"] == model_dirs["tiny"].hash


def test_main_stack_holds_the_largest_kernel_scratch(model_dirs, tmp_path):
    """Kernels keep their scratch on the stack: the generated prj.conf sizes the main stack
    from model.json (the tiny model's calls, with a large scratch written into one)."""
    model = tmp_path / "model"
    shutil.copytree(model_dirs["tiny"].directory, model)
    meta_file = model / "model.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    meta["calls"] = [{"scratch_bytes": 512}, {"scratch_bytes": 9984}]
    meta_file.write_text(json.dumps(meta))
    p = micro_project.get_template("zephyr").generate_project(model, tmp_path / "app",
                                                              {"board": "nucleo_f746zg"})
    conf = (p.project_dir / "prj.conf").read_text()
    assert "CONFIG_MAIN_STACK_SIZE=14336" in conf            # 9,984 + 4,096, whole KiB
    meta["calls"] = [{"scratch_bytes": 100}]
    meta_file.write_text(json.dumps(meta))
    p = micro_project.get_template("zephyr").generate_project(model, tmp_path / "app2",
                                                              {"board": "nucleo_f746zg"})
    assert "CONFIG_MAIN_STACK_SIZE=5120" in (p.project_dir / "prj.conf").read_text()


@requires_arm_gcc
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_app_sources_compile_and_link_for_the_board_cpu(zephyr_project, tmp_path, board):
    flags = ["-mthumb", *BOARDS[board].cpu.gcc_flags, "-ffunction-sections",
             "-fdata-sections"]
    elf = compile_app(zephyr_project, board, "arm-none-eabi-gcc", flags, tmp_path,
                      extra=["-nostartfiles", "--specs=nosys.specs", "-Wl,--entry=main",
                             "-Wl,--gc-sections"])
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout
    for sym in ("main", "qmcu_serve_forever", "qmcu_run", "qmcu_hal_getc"):
        assert re.search(rf" T {sym}$", syms, re.M), sym
    hdr = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True,
                         text=True).stdout
    arch = BOARDS[board].cpu.arch
    assert re.search(rf"Tag_CPU_arch: {re.escape(arch)}$", hdr, re.M), hdr


@requires_gcc
def test_app_sources_serve_the_rpc_through_the_zephyr_api(zephyr_project, model_dirs, tmp_path):
    model = model_dirs["tiny"]
    exe = compile_app(zephyr_project, "nucleo_f746zg", "gcc", ["-DSTUB_HOST_PIPES"], tmp_path)
    t = ProcessTransport([str(exe)], "zephyr app (host stubs)")
    try:
        client = Client(t)
        info = client.connect()
        assert (info.board, info.counter_name, info.counter_hz) == \
            ("nucleo_f746zg", "zephyr-k_cycle_get_32", 1_000_000)
        client.check_model(model.hash)
        rng = np.random.default_rng(9)
        for _ in range(3):
            x = rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes()
            assert client.infer(x)[0] == model.reference(x)
    finally:
        t.close()


def test_board_names_in_both_forms(zephyr_project):
    assert find_board("mps2/an385") == find_board("mps2_an385")
    assert find_board("mps3/corstone300/an547") == find_board("mps3_an547")
    assert find_board("mps2_an385").name_for((3, 4)) == "mps2_an385"
    assert find_board("mps2_an385").name_for((4, 2)) == "mps2/an385"
    assert find_board("mps3_an547").name_for((3, 7)) == "mps3/an547"
    assert find_board("mps3_an547").name_for((4, 1)) == "mps3/corstone300/an547"
    required = {"qemu_cortex_m3", "mps2_an385", "mps2_an521", "mps3_an547", "nucleo_f746zg",
                "nucleo_l4r5zi", "disco_l475_iot1"}
    assert required <= set(BOARDS)
    with pytest.raises(micro_project.ProjectError, match="unknown board 'esp32'.*ZEPHYR_BASE"):
        find_board("esp32")


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_an_overlay_for_every_spelling_of_the_board(model_dirs, tmp_path, board):
    b = BOARDS[board]
    p = micro_project.get_template("zephyr").generate_project(
        model_dirs["tiny"].directory, tmp_path / "app", {"board": zephyr_names(b)[-1]})
    for name in zephyr_names(b):             # an overlay for every spelling Zephyr looks up
        assert rpc_uart_label(p, name) == b.uart
    facts = json.loads((p.project_dir / "board.json").read_text())
    assert (facts["name"], facts["cpu"], facts["flash_bytes"], facts["qemu_machine"]) == \
        (b.name, b.cpu.name, b.flash_bytes, b.qemu_machine)


def test_build_without_zephyr_says_what_to_install(zephyr_project, monkeypatch):
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    with pytest.raises(ToolMissingError, match="ZEPHYR_BASE is not set.*west init.*gnuarmemb"):
        zephyr_project.build()


@pytest.mark.parametrize("board,version,expected", [
    ("mps2/an385", (3, 4), "mps2_an385"), ("nucleo_f746zg", (3, 4), "nucleo_f746zg"),
    ("mps2_an521", (4, 2), "mps2/an521/cpu0"), ("mps3_an547", (3, 7), "mps3/an547")])
def test_build_and_flash_call_west(model_dirs, tmp_path, monkeypatch, board, version,
                                   expected):
    """west gets absolute paths, the board name of the tree's release; flash of a hardware
    board is `west flash` (QEMU boards boot under QEMU instead)."""
    zbase = tmp_path / "zephyr"
    zbase.mkdir()
    (zbase / "VERSION").write_text(f"VERSION_MAJOR = {version[0]}\nVERSION_MINOR = "
                                   f"{version[1]}\nPATCHLEVEL = 0\n")
    log = tmp_path / "west.log"
    west = tmp_path / "west"
    west.write_text(f"#!/bin/sh\necho \"$ZEPHYR_BASE $ZEPHYR_TOOLCHAIN_VARIANT $*\" >> {log}\n"
                    "[ \"$1\" = build ] && mkdir -p \"$7/zephyr\" && touch "
                    "\"$7/zephyr/zephyr.elf\"\nexit 0\n")
    west.chmod(west.stat().st_mode | stat.S_IEXEC)
    monkeypatch.chdir(tmp_path)           # a relative project path: west runs in the tree
    project = micro_project.get_template("zephyr").generate_project(
        model_dirs["tiny"].directory, "app", {"board": board})
    project.build({"zephyr_base": str(zbase), "west": str(west), "toolchain": "gnuarmemb"})
    if not project.runs_in_qemu:
        project.flash({"zephyr_base": str(zbase), "west": str(west)})
    lines = log.read_text().splitlines()
    d = (tmp_path / "app").resolve()
    assert lines[0] == f"{zbase} gnuarmemb build -p auto -b {expected} -d {d / 'build'} {d}"
    assert len(lines) == (1 if project.runs_in_qemu else 2)
    if not project.runs_in_qemu:
        assert lines[1].endswith(f"flash -d {d / 'build'}")
        with pytest.raises(micro_project.ProjectError, match="hardware board.*--port"):
            project.open_transport()


def test_frame_size_option_reaches_the_cmake_project(model_dirs, tmp_path):
    project = micro_project.get_template("zephyr").generate_project(
        model_dirs["tiny"].directory, tmp_path / "app", {"board": "disco_l475_iot1",
                                                         "max_payload": 256})
    cml = (project.project_dir / "CMakeLists.txt").read_text()
    assert "set(QMCU_MAX_PAYLOAD 256)" in cml and "QMCU_MAX_PAYLOAD=${QMCU_MAX_PAYLOAD}u" in cml
