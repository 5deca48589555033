/* QEMU TCG plugin: executed instructions and modelled Cortex-M4 cycles.
 *
 * Every guest instruction adds 1 to the instruction counter and its cost to the cycle counter
 * (inline adds, exact also when QEMU aborts a block at an I/O access). The cost is chosen once,
 * when the instruction is translated, from its disassembly (qemu_plugin_insn_disas), by the
 * table of the Cortex-M4 Technical Reference Manual ("Cortex-M4 instructions", "Load/store
 * timings"); the model and its limits are documented in micro_project/qemu_plugin/README.md.
 * A conditional branch costs 1 and, when taken, P more (the pipeline refill): whether it was
 * taken is known at the start of the next block (its address is not the fall-through one).
 *
 * Arguments (-plugin libqmcu_cycles.so,out=FILE,mark=0xADDR,refill=P,dump=1):
 *   out    file that receives the counters (default: QEMU's log, i.e. stderr);
 *   mark   address of an instruction (e.g. the first one of the firmware's timer read): every
 *          time it executes, "mark <instructions> <cycles>" is written and flushed, so a host
 *          that waits for the firmware's answer finds the counters of the region in the file;
 *   refill pipeline refill cycles P of a taken branch (TRM: 1 to 3; default 2);
 *   dump   1: write "insn <address> <cycles> <disassembly>" for each translated instruction;
 *   cpu    m4 (default) or m55: Helium instructions at the Cortex-M55's cost (mve_insn).
 * At exit "total <instructions> <cycles>" is written. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t n_insns, n_cycles;
static uint64_t mark_addr = UINT64_MAX;
static uint64_t pending_fallthrough; /* set by an executing conditional branch, 0 if none */
static unsigned refill = 2;
static int m55;          /* cpu=m55: the Cortex-M55 table for Helium (MVE) instructions */
static int dump;
static FILE *out;

/* ------------------------------------------------------------------------------------------ */
/* Disassembly → cost                                                                          */

typedef struct {
    unsigned cycles;
    int cond_branch;     /* conditional branch: +refill when taken (resolved at run time) */
    int load_single;     /* LDR/LDRB/LDRH/LDRSB/LDRSH: may pipeline the next load/store */
    int load_dest;       /* its destination register (0..15), -1 if none */
} cost_t;

static const char *const CONDS[] = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs",
                                    "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", NULL};

static int is_cond(const char *s) {
    for (int i = 0; CONDS[i]; i++)
        if (!strcmp(s, CONDS[i])) return 1;
    return 0;
}

/* mnemonic == base, optionally followed by "s" and/or a condition code. */
static int mnem(const char *m, const char *base, int *cond) {
    size_t n = strlen(base);
    if (strncmp(m, base, n)) return 0;
    const char *rest = m + n;
    if (*rest == 's' && (rest[1] == 0 || is_cond(rest + 1))) rest++;
    *cond = *rest != 0;
    return *rest == 0 || is_cond(rest);
}

static int any_mnem(const char *m, const char *const *bases, int *cond) {
    for (int i = 0; bases[i]; i++)
        if (mnem(m, bases[i], cond)) return 1;
    return 0;
}

static int reg_number(const char *s) {
    if (s[0] == 'r' && isdigit((unsigned char)s[1])) return atoi(s + 1);
    if (!strncmp(s, "sb", 2)) return 9;
    if (!strncmp(s, "sl", 2)) return 10;
    if (!strncmp(s, "fp", 2)) return 11;
    if (!strncmp(s, "ip", 2)) return 12;
    if (!strncmp(s, "sp", 2)) return 13;
    if (!strncmp(s, "lr", 2)) return 14;
    if (!strncmp(s, "pc", 2)) return 15;
    return -1;
}

/* Registers named inside "[...]" of the operands (the address of a load/store). */
static unsigned address_regs(const char *ops) {
    unsigned mask = 0;
    const char *p = strchr(ops, '[');
    const char *e = p ? strchr(p, ']') : NULL;
    if (!p || !e) return 0;
    for (const char *q = p + 1; q < e; q++) {
        if ((q == p + 1 || q[-1] == ' ' || q[-1] == ',') && reg_number(q) >= 0)
            mask |= 1u << reg_number(q);
    }
    return mask;
}

/* Number of registers in a "{...}" list (ranges "r4-r7" and "d8-d9" counted in full). */
static unsigned reg_list_len(const char *ops, int *has_pc, unsigned words_per_reg) {
    const char *p = strchr(ops, '{');
    unsigned n = 0;
    *has_pc = 0;
    if (!p) return 1;
    for (p++; *p && *p != '}'; p++) {
        if (!isalpha((unsigned char)*p) || (p[-1] != '{' && p[-1] != ' ' && p[-1] != ','))
            continue;
        int a = (p[0] == 'r' || p[0] == 'd' || p[0] == 's') && isdigit((unsigned char)p[1])
                    ? atoi(p + 1) : -1;
        if (reg_number(p) == 15) *has_pc = 1;
        const char *dash = p;
        while (*dash && *dash != ',' && *dash != '}' && *dash != '-') dash++;
        if (*dash == '-' && a >= 0) {
            int b = atoi(dash + 2);
            n += (unsigned)(b - a + 1);
        } else {
            n += 1;
        }
    }
    return n * words_per_reg;
}

static int writes_pc(const char *ops) {
    return reg_number(ops) == 15;  /* first operand is the destination */
}

static cost_t insn_cost(const char *disas, const cost_t *prev) {
    char m[32] = {0};
    const char *ops = disas;
    size_t i = 0;
    while (*ops && !isspace((unsigned char)*ops) && i + 1 < sizeof m) m[i++] = (char)*ops++;
    while (isspace((unsigned char)*ops)) ops++;
    char *dot = strchr(m, '.');            /* ".w"/".n" width, ".f32"/".32" data type */
    char dtype[16] = {0};
    if (dot) {
        strncpy(dtype, dot + 1, sizeof dtype - 1);
        *dot = 0;
    }
    const unsigned P = refill;
    cost_t c = {1, 0, 0, -1};
    int cond = 0, has_pc = 0;
    static const char *const loads[] = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex",
                                        "ldrexb", "ldrexh", "ldrt", "ldrbt", "ldrht", NULL};
    static const char *const stores[] = {"str", "strb", "strh", "strex", "strexb", "strexh",
                                         "strt", "strbt", "strht", NULL};
    static const char *const multi[] = {"ldm", "ldmia", "ldmfd", "ldmdb", "stm", "stmia",
                                        "stmea", "stmdb", "stmfd", "push", "pop", NULL};
    static const char *const divs[] = {"sdiv", "udiv", NULL};
    static const char *const vfp_mac[] = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms",
                                          "vfnma", "vfnms", NULL};
    static const char *const vfp_slow[] = {"vdiv", "vsqrt", NULL};
    static const char *const vfp_multi[] = {"vldm", "vldmia", "vldmdb", "vstm", "vstmia",
                                            "vstmdb", "vpush", "vpop", NULL};

    if (!strcmp(m, "tbb") || !strcmp(m, "tbh")) {
        c.cycles = 2 + P;
    } else if (!strcmp(m, "cbz") || !strcmp(m, "cbnz")) {
        c.cond_branch = 1;
    } else if (mnem(m, "b", &cond) || mnem(m, "bl", &cond) || mnem(m, "blx", &cond) ||
               mnem(m, "bx", &cond)) {
        if (cond) c.cond_branch = 1;          /* b<cc>, or a branch inside an IT block */
        else c.cycles = 1 + P;
    } else if (any_mnem(m, multi, &cond)) {
        unsigned n = reg_list_len(ops, &has_pc, 1);
        c.cycles = 1 + n + (has_pc ? P : 0);
    } else if (any_mnem(m, vfp_multi, &cond)) {
        const char *list = strchr(ops, '{');
        unsigned n = reg_list_len(ops, &has_pc, list && list[1] == 'd' ? 2 : 1);
        c.cycles = 1 + n;
    } else if (mnem(m, "ldrd", &cond) || mnem(m, "strd", &cond)) {
        c.cycles = 3;
    } else if (any_mnem(m, loads, &cond)) {
        int dest = reg_number(ops);
        unsigned addr = address_regs(ops);
        c.load_single = 1;
        c.load_dest = dest;
        if (dest == 15) {
            c.cycles = 2 + P;
            c.load_single = 0;
        } else if (prev && prev->load_single && prev->load_dest >= 0 &&
                   !(addr & (1u << prev->load_dest))) {
            c.cycles = 1;                     /* pipelined behind the previous load */
        } else {
            c.cycles = 2;
        }
    } else if (any_mnem(m, stores, &cond)) {
        unsigned addr = address_regs(ops);
        int reg_offset = __builtin_popcount(addr) > 1;
        if (!reg_offset) c.cycles = 1;        /* STR Rx,[Ry,#imm]: address and data overlap */
        else if (prev && prev->load_single && prev->load_dest >= 0 &&
                 !(addr & (1u << prev->load_dest)))
            c.cycles = 1;
        else c.cycles = 2;
    } else if (any_mnem(m, divs, &cond)) {
        c.cycles = 12;                        /* 2..12 by operand values: worst case */
    } else if (!strcmp(m, "vldr") || !strcmp(m, "vstr")) {
        c.cycles = dtype[0] == '6' || strstr(ops, "d") == ops ? 3 : 2;
    } else if (any_mnem(m, vfp_mac, &cond)) {
        c.cycles = 3;
    } else if (any_mnem(m, vfp_slow, &cond)) {
        c.cycles = 14;
    } else if (!strncmp(m, "dmb", 3) || !strncmp(m, "dsb", 3) || !strncmp(m, "isb", 3)) {
        c.cycles = 4;
    } else if (writes_pc(ops)) {              /* mov pc / add pc ... */
        c.cycles = 1 + P;
    }
    /* everything else: data processing, shifts, multiplies (MUL, MLA, MLS, SMULL, UMULL,
     * SMLAL, UMLAL, SMLAD, SMLAxy, SMMUL...), saturation, packing, extend, IT, FP add/mul */
    return c;
}

/* Cortex-M55 (cpu=m55): a Helium (MVE) instruction, told from its encoding (QEMU's disassembler
 * predates MVE and prints these as coprocessor instructions): the 32-bit encodings of the
 * Advanced SIMD space (first halfword 0xEFxx/0xFFxx: MVE data processing; v8.1-M has no Neon)
 * and of the coprocessor space (0xECxx-0xEFxx, 0xFCxx-0xFFxx: MVE loads/stores, VMLADAV,
 * VMULH, VPST...) except coprocessors 10/11 (the scalar FPU), plus VDUP (coprocessor 11).
 * The M55 executes MVE with two 32-bit beats per cycle, so a 128-bit (four-beat) vector
 * instruction occupies M55_VECTOR_CYCLES cycles; no overlap of consecutive vector
 * instructions, no gather/scatter penalty (see README.md: limits). */
#define M55_VECTOR_CYCLES 2

static int mve_insn(const unsigned char *b, size_t n) {
    if (n != 4) return 0;
    const unsigned hw1 = b[0] | (unsigned)b[1] << 8, hw2 = b[2] | (unsigned)b[3] << 8;
    const unsigned cp = (hw2 >> 8) & 0xF;
    if ((hw1 & 0xEF00) == 0xEF00) return 1;
    if ((hw1 & 0xFF80) == 0xEE80 && cp == 0xB && (hw2 & 0x5F) == 0x10) return 1;  /* VDUP */
    return (hw1 & 0xEC00) == 0xEC00 && (cp & 0xE) != 0xA;
}

/* ------------------------------------------------------------------------------------------ */
/* Run time                                                                                    */

static void on_cond_branch(unsigned int vcpu, void *fallthrough) {
    (void)vcpu;
    pending_fallthrough = (uint64_t)(uintptr_t)fallthrough;
}

static void on_block(unsigned int vcpu, void *start) {
    (void)vcpu;
    if (pending_fallthrough) {
        if ((uint64_t)(uintptr_t)start != pending_fallthrough) n_cycles += refill;
        pending_fallthrough = 0;
    }
}

static void on_mark(unsigned int vcpu, void *udata) {
    (void)vcpu;
    (void)udata;
    fprintf(out, "mark %llu %llu\n", (unsigned long long)n_insns,
            (unsigned long long)n_cycles);
    fflush(out);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)qemu_plugin_tb_vaddr(tb));
    cost_t prev = {0, 0, 0, -1};
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        char *text = qemu_plugin_insn_disas(insn);
        cost_t c = insn_cost(text ? text : "", i ? &prev : NULL);
        if (m55 && mve_insn(qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn))) {
            const cost_t v = {M55_VECTOR_CYCLES, 0, 0, -1};
            c = v;
        }
        if (dump) fprintf(out, "insn %#llx %u %s\n", (unsigned long long)pc, c.cycles,
                          text ? text : "?");
        free(text);
        if (pc == mark_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &n_insns, 1);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &n_cycles,
                                                   c.cycles);
        if (c.cond_branch)
            qemu_plugin_register_vcpu_insn_exec_cb(
                insn, on_cond_branch, QEMU_PLUGIN_CB_NO_REGS,
                (void *)(uintptr_t)(pc + qemu_plugin_insn_size(insn)));
        prev = c;
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *udata) {
    (void)id;
    (void)udata;
    fprintf(out, "total %llu %llu\n", (unsigned long long)n_insns,
            (unsigned long long)n_cycles);
    fflush(out);
    if (out != stderr) fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv) {
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "out=", 4)) path = a + 4;
        else if (!strncmp(a, "mark=", 5)) mark_addr = strtoull(a + 5, NULL, 0) & ~1ull;
        else if (!strncmp(a, "refill=", 7)) refill = (unsigned)strtoul(a + 7, NULL, 0);
        else if (!strncmp(a, "dump=", 5)) dump = atoi(a + 5);
        else if (!strcmp(a, "cpu=m55")) m55 = 1;
        else if (!strcmp(a, "cpu=m4")) m55 = 0;
        else {
            fprintf(stderr, "qmcu_cycles: unknown argument %s (out=, mark=, refill=, dump=, "
                    "cpu=m4|m55)\n", a);
            return -1;
        }
    }
    out = path ? fopen(path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "qmcu_cycles: cannot open %s\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
