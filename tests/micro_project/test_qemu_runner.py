"""The bare-metal QEMU layer: UART output, semihosting exit status, deterministic timing."""
import pytest

from micro_project import qemu

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not qemu.have_toolchain(),
                                 reason="needs arm-none-eabi-gcc and qemu-system-arm")]

HELLO = r"""
#include <stdio.h>
#include "hal.h"
int main(void) {
    hal_puts("hello from the board\n");
    printf("printf %d\n", 42);
    return 7;
}
"""

# A loop of exactly 2 instructions per iteration (SUBS + BNE), timed twice with different
# trip counts: the difference is 2·(N2 - N1) instructions, free of the timing overhead.
LOOP = r"""
#include "hal.h"
static uint32_t loop_ticks(uint32_t n) {
    uint32_t t0 = hal_timer_read();
    __asm__ volatile("1: subs %0, %0, #1\n\t bne 1b" : "+r"(n) : : "cc");
    return hal_timer_read() - t0;
}
int main(void) {
    uint32_t a = loop_ticks(100000), b = loop_ticks(600000);
    hal_put_u32(a); hal_puts(" "); hal_put_u32(b); hal_puts("\n");
    return 0;
}
"""

ECHO = r"""
#include "hal.h"
int main(void) {
    hal_puts("ready\n");
    int n = hal_uart_getc();
    for (int i = 0; i < n; i++) hal_uart_putc((char)(hal_uart_getc() + 1));
    return n;
}
"""

HANG = "int main(void) { for (;;) {} }\n"


def _src(tmp_path, text, name="main.c"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("board", list(qemu.BOARDS))
def test_hello_prints_and_exits_with_code(tmp_path, board):
    r = qemu.build_and_run([_src(tmp_path, HELLO)], board, tmp_path, timeout=30)
    assert not r.timed_out
    assert r.exit_code == 7
    assert "hello from the board\nprintf 42\n" in r.text


@pytest.mark.parametrize("board", list(qemu.BOARDS))
def test_timer_counts_instructions_deterministically(tmp_path, board):
    b = qemu.get_board(board)
    elf = qemu.build_elf([_src(tmp_path, LOOP)], board, tmp_path)
    runs = [qemu.run_elf(elf, board, timeout=30) for _ in range(2)]
    assert runs[0].exit_code == 0 and runs[0].stdout == runs[1].stdout
    a, c = (int(v) for v in runs[0].text.split())
    assert b.instructions(c - a) == 2 * 500000
    # The overhead of reading the timer itself is a handful of instructions.
    assert 0 <= b.instructions(a) - 2 * 100000 < 20


def test_stdin_reaches_the_uart(tmp_path):
    elf = qemu.build_elf([_src(tmp_path, ECHO)], "mps2-an386", tmp_path)
    for _ in range(5):    # input written before the UART is enabled would be lost: not here
        r = qemu.run_elf(elf, "mps2-an386", timeout=30, stdin=bytes([3]) + b"abc",
                         stdin_after=b"ready\n")
        assert r.exit_code == 3 and r.stdout == b"ready\nbcd"


def test_timeout_kills_qemu(tmp_path):
    r = qemu.build_and_run([_src(tmp_path, HANG)], "mps2-an386", tmp_path, timeout=2)
    assert r.timed_out and r.exit_code is None


def test_build_error_names_the_compiler_message(tmp_path):
    with pytest.raises(qemu.BuildError, match="undeclared|error"):
        qemu.build_elf([_src(tmp_path, "int main(void) { return nope; }\n")], "mps2-an386",
                       tmp_path)


def test_unknown_board():
    with pytest.raises(ValueError, match="mps2-an386"):
        qemu.get_board("stm32f4")
