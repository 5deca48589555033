"""The board table: the bare-metal boards and the kernels' CPU flags read from it; a Zephyr
board read from its own files (a small stand-in tree here, the real one when ZEPHYR_BASE is
set); the SysTick rate measured on QEMU's machines."""
import os
import subprocess
from pathlib import Path

import pytest

from micro_project import board_table as bt
from micro_project import qemu as board_layer
from micro_project.templates.zephyr import calibrate_systick

from mp_support import requires_arm_gcc, requires_qemu


def test_bare_metal_boards_and_kernel_targets_read_the_table():
    from tvm_quantmcu.topi.registry import TARGETS
    for machine, b in board_layer.BOARDS.items():
        t = bt.QEMU_BOARDS[machine]
        assert (b.cpu, b.cflags, b.timer_hz, b.has_dsp) == \
            (t.cpu.name, t.cpu.gcc_flags, t.counter_hz, t.cpu.dsp)
    for name, cpu in bt.CPUS.items():
        assert set(cpu.gcc_flags) <= set(TARGETS[name])


def test_optional_v8m_extensions_left_out():
    m33 = bt.CPUS["cortex-m33"].without(dsp=True, fpu=True)
    assert (m33.dsp, m33.fpu, m33.gcc_flags) == \
        (False, None, ("-mcpu=cortex-m33+nodsp+nofp", "-mfloat-abi=soft"))
    assert bt.CPUS["cortex-m55"].without(mve=True).gcc_flags[0] == "-mcpu=cortex-m55+nomve"
    assert bt.CPUS["cortex-m3"].without(dsp=True) is bt.CPUS["cortex-m3"]


def _tree(root: Path, board: str, arch: str = "arm") -> Path:
    """A stand-in Zephyr tree with one board in the 3.x layout."""
    base = root / "zephyr"
    (base / "dts" / "arm" / "acme").mkdir(parents=True)
    (base / "include" / "zephyr" / "dt-bindings").mkdir(parents=True)
    (base / "VERSION").write_text("VERSION_MAJOR = 3\nVERSION_MINOR = 4\n")
    (base / "include" / "zephyr" / "dt-bindings" / "size.h").write_text(
        "#define SIZE_K(x) ((x) * 1024)\n")
    (base / "dts" / "arm" / "acme" / "acme_soc.dtsi").write_text(
        '#include <zephyr/dt-bindings/size.h>\n/ { cpus { cpu@0 { compatible = '
        '"arm,cortex-m33f"; clock-frequency = <64000000>; }; };\n'
        '  sram0: memory@20000000 { reg = <0x20000000 SIZE_K(192)>; };\n'
        '  soc { flash0: flash@8000000 { reg = <0x08000000 SIZE_K(256)>; }; }; };\n'
        '&flash0 { reg = <0x08000000 SIZE_K(512)>; };\n')
    d = base / "boards" / arch / board
    d.mkdir(parents=True)
    (d / f"{board}.yaml").write_text(f"identifier: {board}\narch: {arch}\nram: 1\nflash: 1\n")
    (d / f"{board}.dts").write_text(
        '/dts-v1/;\n#include <acme/acme_soc.dtsi>\n#include <acme/absent-pinctrl.dtsi>\n'
        '/ { chosen { zephyr,console = &usart2; zephyr,sram = &sram0; '
        'zephyr,flash = &flash0; }; };\n')
    (d / "board.cmake").write_text("set(QEMU_FLAGS_${ARCH} -cpu cortex-m33 -machine acme-q)\n")
    (d / f"{board}_defconfig").write_text("CONFIG_SOC_ACME_Q1=y\n")
    (base / "soc" / "arm" / "acme").mkdir(parents=True)
    (base / "soc" / "arm" / "acme" / "Kconfig.soc").write_text(
        "config SOC_ACME_Q1\n\tbool\n\tselect SOC_ACME_FAMILY\n\nconfig SOC_ACME_FAMILY\n"
        "\tbool\n\tselect CPU_CORTEX_M33\n\tselect ARMV8_M_DSP\n")
    return base


def test_a_new_zephyr_board_is_read_from_its_own_files(tmp_path):
    base = _tree(tmp_path, "acme_q1")
    b = bt.zephyr_board("acme_q1", base)
    assert b.cpu.name == "cortex-m33" and b.cpu.dsp and b.cpu.fpu is None   # no CPU_HAS_FPU
    assert b.cpu.gcc_flags[0] == "-mcpu=cortex-m33+nofp"
    assert (b.flash_bytes, b.ram_bytes) == (512 * 1024, 192 * 1024)   # the later &flash0 wins
    assert (b.qemu_machine, b.uart, b.configured_counter_hz) == ("acme-q", "usart2", 64_000_000)
    assert b.counter_hz is None                # calibrated on QEMU, never taken from a config
    with pytest.raises(bt.BoardError, match="unknown board 'acme_q2'.*no boards/"):
        bt.zephyr_board("acme_q2", base)


def test_a_non_arm_board_is_refused(tmp_path):
    base = _tree(tmp_path, "riscy", arch="riscv")
    with pytest.raises(bt.BoardError, match="riscv board.*only Arm Cortex-M"):
        bt.zephyr_board("riscy", base)


def test_without_a_tree_only_the_built_in_boards():
    assert bt.zephyr_board("mps3/corstone300/an547").name == "mps3_an547"
    with pytest.raises(bt.BoardError, match="unknown board 'acme_q1'.*ZEPHYR_BASE"):
        bt.zephyr_board("acme_q1")


@pytest.mark.skipif(not os.environ.get("ZEPHYR_BASE"), reason="needs a Zephyr tree "
                    "(ZEPHYR_BASE)")
@pytest.mark.parametrize("board", sorted(bt.ZEPHYR_BOARDS))
def test_built_in_zephyr_boards_agree_with_the_tree(board):
    known, read = bt.ZEPHYR_BOARDS[board], bt.read_zephyr_board(board,
                                                                Path(os.environ["ZEPHYR_BASE"]))
    assert (read.cpu, read.flash_bytes, read.ram_bytes, read.qemu_machine, read.uart) == \
        (known.cpu, known.flash_bytes, known.ram_bytes, known.qemu_machine, known.uart)


def _fake_zephyr_elf(tmp_path: Path, vectors: int, ram: int) -> Path:
    """An ELF carrying the two symbols the calibration reads from a Zephyr image."""
    src = tmp_path / "empty.c"
    src.write_text("void reset(void) {}\n")
    elf = tmp_path / "zephyr.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m3", "-nostdlib",
                    "-Wl,-e,reset", f"-Wl,--defsym=_vector_table={vectors:#x}",
                    f"-Wl,--defsym=_image_ram_start={ram:#x}", str(src), "-o", str(elf)],
                   check=True, capture_output=True)
    return elf


@requires_qemu
@requires_arm_gcc
@pytest.mark.parametrize("machine", ["mps2-an386", "mps3-an547"])
def test_systick_calibration_agrees_with_the_bare_metal_timers(tmp_path, machine):
    """The SysTick processor clock runs at the machine's system clock: the rate of the
    bare-metal boards' timers, measured independently (25 MHz on mps2, 32 MHz on mps3 —
    where Zephyr is configured with 25 MHz)."""
    elf = _fake_zephyr_elf(tmp_path, 0x0, 0x20000000)
    cal = calibrate_systick(machine, elf)
    assert cal["ticks_per_instruction"] == pytest.approx(
        board_layer.BOARDS[machine].ticks_per_instruction, rel=1e-4)
    assert cal["counter_hz"] == pytest.approx(bt.QEMU_BOARDS[machine].counter_hz, rel=1e-4)
