/* Measures the rate QEMU gives the SysTick processor clock on a machine, in ticks per guest
 * instruction under -icount: Zephyr's k_cycle_get_32 counts that clock on Cortex-M boards.
 * Linked at the address the Zephyr image boots from (its vector table); ARMv6-M code, so it
 * runs on every M-profile machine. Prints "ticks A B loops N M" over semihosting and exits. */
#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

extern uint32_t qmcu_stack_top;           /* --defsym: a word in the image's RAM */
void reset(void);

__attribute__((section(".vectors"), used))
static const uintptr_t vectors[2] = {(uintptr_t)&qmcu_stack_top, (uintptr_t)reset};

static int semihost(int op, const void *arg)
{
	register int r0 __asm__("r0") = op;
	register const void *r1 __asm__("r1") = arg;
	__asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
	return r0;
}

/* Exactly 2 instructions per iteration (SUBS, BNE). */
static uint32_t ticks_for(uint32_t loops)
{
	uint32_t a = SYST_CVR;
	__asm__ volatile(".syntax unified\n1:\tsubs %0, %0, #1\n\tbne 1b" : "+l"(loops) : : "cc");
	uint32_t b = SYST_CVR;
	return (a - b) & 0xFFFFFFu;           /* 24-bit down-counter */
}

static char *put_u32(char *p, uint32_t v)
{
	char tmp[10];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10u);
		v /= 10u;
	} while (v);
	while (n) {
		*p++ = tmp[--n];
	}
	return p;
}

void reset(void)
{
	static const uint32_t loops[2] = {100000u, 1100000u};
	uint32_t t[2];
	char msg[64], *p = msg;

	SYST_RVR = 0xFFFFFFu;
	SYST_CVR = 0u;
	SYST_CSR = 5u;                        /* enable, processor clock, no interrupt */
	for (int i = 0; i < 2; i++) {
		t[i] = ticks_for(loops[i]);
	}
	for (const char *s = "ticks "; *s; s++) *p++ = *s;
	p = put_u32(p, t[0]); *p++ = ' ';
	p = put_u32(p, t[1]);
	for (const char *s = " loops "; *s; s++) *p++ = *s;
	p = put_u32(p, loops[0]); *p++ = ' ';
	p = put_u32(p, loops[1]);
	*p++ = '\n';
	*p = 0;
	semihost(0x04, msg);                  /* SYS_WRITE0 */
	semihost(0x18, (const void *)0x20026); /* SYS_EXIT, ADP_Stopped_ApplicationExit */
	for (;;) {
	}
}
