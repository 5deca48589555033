/* DSP implementations of the micro-kernels of qmcu_ukernels.h (ARMv7E-M: SMLAD, SXTB16,
 * SMLAxy, SMMUL, USAT, UQSUB8), included by it after the portable definitions they fall back
 * on. Each kernel runs in two phases: the inner products into the int32 accumulators
 * (conv_dsp, dw_dsp), then requantization and packing of all output channels (requant_out);
 * with the tuning knob requant_at = "pair", in one (see QMCU_REQUANT_AT_PAIR).
 */
#ifndef QMCU_UKERNELS_DSP_H
#define QMCU_UKERNELS_DSP_H
#ifdef QMCU_DSP
/* Hide a value from the optimiser: addresses derived from it are computed as register +
 * immediate offset where used instead of being hoisted into stack slots (a reload per use). */
#define QMCU_OPAQUE(p) __asm__("" : "+r"(p))

QMCU_INLINE int32_t sxtb16_ror8(uint32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

QMCU_INLINE int32_t uxtb16_ror8(uint32_t v) {
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* (v >> sh) & mask in one instruction (AND with a shifted register); gcc would emit a shift
 * and an AND with the immediate mask. sh must be a literal. */
#define QMCU_AND_LSR(mask, v, sh)                                                         \
    ({                                                                                    \
        uint32_t r_;                                                                      \
        __asm__("and %0, %1, %2, lsr %3" : "=r"(r_) : "r"(mask), "r"(v), "i"(sh));        \
        r_;                                                                               \
    })

/* Lane pair m (0 ≤ m < 16/bits) of a word of packed activations: (value m, value m + 16/bits)
 * as 16-bit lanes; mask holds 0x000F000F (4 bits) or 0x00030003 (2 bits). */
QMCU_INLINE int32_t xlane(uint32_t v, int32_t m, int32_t bits, uint32_t mask) {
    if (bits == 8) return (int32_t)(m ? (uint32_t)uxtb16_ror8(v) : __uxtb16(v));
    switch (m * bits) {
    case 0: return (int32_t)(v & mask);
    case 2: return (int32_t)QMCU_AND_LSR(mask, v, 2);
    case 4: return (int32_t)QMCU_AND_LSR(mask, v, 4);
    case 6: return (int32_t)QMCU_AND_LSR(mask, v, 6);
    case 8: return (int32_t)QMCU_AND_LSR(mask, v, 8);
    case 10: return (int32_t)QMCU_AND_LSR(mask, v, 10);
    case 12: return (int32_t)QMCU_AND_LSR(mask, v, 12);
    default: return (int32_t)QMCU_AND_LSR(mask, v, 14);
    }
}

QMCU_INLINE uint32_t usat_bits(int32_t v, int32_t bits) {
    return bits == 8 ? (uint32_t)__usat(v, 8) : bits == 4 ? (uint32_t)__usat(v, 4)
                                                          : (uint32_t)__usat(v, 2);
}

/* Output value of accumulator a (bias included) saturated to the output range, for n > 32,
 * t = n - 33 and z1 = 2*zp_out + 1. With h = floor(a*M / 2^32) (SMMUL) and q = h >> t (ASR):
 * floor((a*M + 2^(n-1)) / 2^n) = floor((h + 2^t) / 2^(t+1)) (the dropped low word of a*M is
 * less than one unit of h and cannot cross a multiple of 2^(t+1)) = (q + 1) >> 1, so the
 * output is (q + z1) >> 1, and USAT applies that last shift as its operand shift. Per channel
 * only t is needed. */
QMCU_INLINE uint32_t rq_fast(int32_t a, int32_t M, int32_t t, int32_t z1, int32_t bits) {
    int32_t q, u;
    __asm__("smmul %0, %1, %2" : "=r"(q) : "r"(a), "r"(M));
    q = (q >> t) + z1;
    if (bits == 8)
        __asm__("usat %0, #8, %1, asr #1" : "=r"(u) : "r"(q));
    else if (bits == 4)
        __asm__("usat %0, #4, %1, asr #1" : "=r"(u) : "r"(q));
    else
        __asm__("usat %0, #2, %1, asr #1" : "=r"(u) : "r"(q));
    return (uint32_t)u;
}

/* n = 32: SMMULR(a, M) = floor((a*M + 2^31) / 2^32). */
QMCU_INLINE uint32_t rq_n32(int32_t a, int32_t M, int32_t zp, int32_t bits) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(M));
    return usat_bits(r + zp, bits);
}

QMCU_INLINE uint32_t rq_slow(int32_t a, int32_t M, int32_t n, int32_t zp, int32_t bits) {
    return (uint32_t)requant_ref(a, M, n, zp, 0, (1 << bits) - 1);
}

/* Functions every kernel file defines and the firmware holds once: weak, so the linker keeps
 * one copy (the flash report counts them once, codegen/report.py), and not specialised to
 * one kernel's shapes (an interposable function is never cloned or inlined). */
#define QMCU_SHARED __attribute__((weak, noinline))

/* rq_channel for n < 33 (rare: params.prepare scales the weights of such channels up when
 * int8 leaves room). Out of line, so that its 64-bit arithmetic does not take registers from
 * the common path around it. */
QMCU_SHARED __attribute__((cold)) uint32_t qmcu_rq_channel_n32(int32_t a0, int32_t a1,
                                                                int32_t npx, int32_t M,
                                                                int32_t t, int32_t zp,
                                                                int32_t bits) {
    uint32_t u;
    if (t == -1) {
        u = rq_n32(a0, M, zp, bits);
        if (npx == 2) u |= rq_n32(a1, M, zp, bits) << 16;
    } else {
        u = rq_slow(a0, M, t + 33, zp, bits);
        if (npx == 2) u |= rq_slow(a1, M, t + 33, zp, bits) << 16;
    }
    return u;
}

/* One channel of up to two pixels (accumulators a0, a1 without bias, bias c) as bytes 0 and 2
 * of a word; t = n - 33. */
QMCU_INLINE uint32_t rq_channel(int32_t a0, int32_t a1, int32_t npx, int32_t c, int32_t M,
                                int32_t t, const qmcu_q *q, int32_t bits) {
    if (__builtin_expect(t < 0, 0))
        return qmcu_rq_channel_n32(a0 + c, a1 + c, npx, M, t, q->zp, bits);
    uint32_t u = rq_fast(a0 + c, M, t, q->z1, bits);
    if (npx == 2) u |= rq_fast(a1 + c, M, t, q->z1, bits) << 16;
    return u;
}

/* Requantize, clamp and pack output channels ch, ch + 1 (ch even) of npx pixels from their
 * accumulators: a0, a1 of the first pixel, b0, b1 of the second; c, M, n point at the pair's
 * bias (unused where the accumulators hold it: biased, a literal), multipliers and shifts. The four values are clamped together with byte-wise
 * saturating arithmetic. Sub-byte outputs: pairs of one byte are written in increasing
 * channel order (the first overwrites it). */
QMCU_INLINE void rq_pair_b(uint8_t *y, int32_t y_pix, int32_t ch, int32_t a0, int32_t a1,
                           int32_t b0, int32_t b1, int32_t npx, const int32_t *c,
                           const int32_t *M, const int32_t *n, const qmcu_q *q, int32_t bits,
                           int32_t biased) {
    uint32_t u = rq_channel(a0, b0, npx, biased ? 0 : c[0], M[0], n[0] - 33, q, bits);
    u |= rq_channel(a1, b1, npx, biased ? 0 : c[1], M[1], n[1] - 33, q, bits) << 8;
    u = __uqsub8(u, __uqsub8(u, q->hi4));          /* min(u, hi) */
    u = __uqadd8(__uqsub8(u, q->lo4), q->lo4);     /* max(u, lo) */
    if (bits == 8) {
        uint16_t h = (uint16_t)u;
        memcpy(y + ch, &h, 2);
        if (npx == 2) {
            h = (uint16_t)(u >> 16);
            memcpy(y + y_pix + ch, &h, 2);
        }
    } else if (bits == 4) {
        u |= u >> 4;
        y[ch / 2] = (uint8_t)u;
        if (npx == 2) y[y_pix + ch / 2] = (uint8_t)(u >> 16);
    } else {
        u = (u | u >> 6) & 0x000F000Fu;
        uint8_t *p = y + ch / 4;
        const int32_t hi = ch & 2;
        *p = (uint8_t)(hi ? (*p | u << 4) : u);
        if (npx == 2) {
            p += y_pix;
            *p = (uint8_t)(hi ? (*p | (u >> 16) << 4) : (u >> 16));
        }
    }
}

/* Second phase of the DSP kernels (knob requant_at = "end"): requantize and pack the
 * accumulators of npx pixels, two channels at a time. With the products done, the registers
 * hold only this loop's state. biased (a literal): the accumulators already hold the bias
 * (the int8 product loops start from it), so that neither the bias nor its additions take
 * registers or instructions here. */
QMCU_INLINE void rq_pair(uint8_t *y, int32_t y_pix, int32_t ch, int32_t a0, int32_t a1,
                         int32_t b0, int32_t b1, int32_t npx, const int32_t *c,
                         const int32_t *M, const int32_t *n, const qmcu_q *q, int32_t bits) {
    rq_pair_b(y, y_pix, ch, a0, a1, b0, b1, npx, c, M, n, q, bits, 0);
}

/* npx (1 or 2, a literal) pixels at y, acc: channel pairs, then an odd last channel. */
QMCU_INLINE void requant_pixels(uint8_t *y, int32_t y_pix, const int32_t *acc,
                                int32_t acc_pix, int32_t npx, int32_t oc, const int32_t *bias,
                                const int32_t *mult, const int32_t *shift, const qmcu_q *q,
                                int32_t bits) {
    const int32_t biased = !bias;
    const int32_t *a = acc, *b = acc + acc_pix;
    const qmcu_q qv = *q;     /* a local copy: its fields stay in registers, not reloaded */
    int32_t ch = 0;
    for (; ch + 1 < oc; ch += 2)
        rq_pair_b(y, y_pix, ch, a[ch], a[ch + 1], npx == 2 ? b[ch] : 0,
                  npx == 2 ? b[ch + 1] : 0, npx, biased ? 0 : bias + ch, mult + ch,
                  shift + ch, &qv, bits, biased);
    for (; ch < oc; ch++)
        for (int32_t p = 0; p < npx; p++)
            store_one(y + p * y_pix, ch,
                      requant_ref(acc[p * acc_pix + ch] + (biased ? 0 : bias[ch]), mult[ch],
                                  shift[ch], q->zp, q->lo, q->hi), bits);
}

/* A run of npx pixels: two at a time, then a last one. */
QMCU_INLINE void requant_body(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                              int32_t npx, int32_t oc, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, const qmcu_q *q, int32_t bits) {
    int32_t p = 0;
    for (; p + 1 < npx; p += 2)
        requant_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, oc, bias, mult,
                       shift, q, bits);
    if (p < npx)
        requant_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 1, oc, bias, mult,
                       shift, q, bits);
}

/* Requantization and packing of the outputs of a run of npx pixels, one function per output
 * width shared by all kernels (QMCU_SHARED); bias 0: the accumulators hold it. 8 bits: the
 * assembly loop of qmcu_requant8 for pixel pairs whose accumulators and outputs are equally
 * many channels apart, qmcu_requant8_px for the rest. */
QMCU_SHARED void qmcu_requant8_px(uint8_t *y, int32_t y_pix, const int32_t *acc,
                                  int32_t acc_pix, int32_t npx, int32_t oc,
                                  const int32_t *bias, const int32_t *mult,
                                  const int32_t *shift, const qmcu_q *q) {
    if (npx == 2)
        requant_pixels(y, y_pix, acc, acc_pix, 2, oc, bias, mult, shift, q, 8);
    else
        requant_pixels(y, y_pix, acc, acc_pix, 1, oc, bias, mult, shift, q, 8);
}

/* The general call of qmcu_requant8: a run of npx pixels, two at a time, then a last one. */
QMCU_SHARED __attribute__((used)) void qmcu_requant8_gen(uint8_t *y, int32_t y_pix,
                                                        const int32_t *acc, int32_t acc_pix,
                                                        int32_t npx, int32_t oc,
                                                        const int32_t *bias,
                                                        const int32_t *mult,
                                                        const int32_t *shift, const qmcu_q *q);

/* The common call of qmcu_requant8 (two pixels whose accumulators and outputs are equally
 * many channels apart, acc_pix == y_pix = r) written out from the entry on: compiled, the
 * function spent ~45 instructions per call around its loop (a frame, spilled pointers, the
 * loop end reloaded per pair), paid per pixel pair by the kernels of few channels. Here: two
 * tests, nine registers saved, the constants from q, and the loop with its pointers and its
 * end in registers (y r0, r r1, a r2, M r3, n r4, c r5, end r6, z r7; k4, h4 on the stack).
 * Per channel pair: both shifts with one LDRD and two tests; per channel its multiplier, the
 * accumulators of both pixels (the second r on) and, unless they hold it, the bias
 * (QMCU_RQ8A_BIAS0/1); per value SMMUL, ASR, ADD, USAT (rq_fast: z = 2*(zp - lo) + 1 moves
 * the lower clamp bound to USAT's 0); one STRH per pixel. Where [lo, hi] is not the whole
 * byte, the clamp (QMCU_RQ8A_CLAMP) takes four bytes at once: UQADD8 of k4 = 255 - (hi - lo)
 * takes those above hi - lo to 255 and USUB8 of h4 = 255 - hi takes the offset out again.
 * Stops at the end or at a pair with a shift below 33; from there on, and for an odd last
 * channel, qmcu_requant8_px; every other call goes on to qmcu_requant8_gen unchanged. */
/* Both loops: from the first channel pair to the end of the shifts, stopping before a pair
 * with a shift below 33 (n back at it); then on to label 8. */
#define QMCU_RQ8A_HEAD                                                                    \
    "cmp r4, r6\n\t"                                                                        \
    "bhs 3f\n"                                                                              \
    "1:\n\t"                                                                                \
    "ldrd r8, r9, [r4], #8\n\t"                                                             \
    "subs r8, r8, #33\n\t"                                                                  \
    "bmi 2f\n\t"                                                                            \
    "subs r9, r9, #33\n\t"                                                                  \
    "bmi 2f\n\t"
#define QMCU_RQ8A_TAIL                                                                    \
    "cmp r4, r6\n\t"                                                                        \
    "blo 1b\n\t"                                                                            \
    "b 3f\n"                                                                                \
    "2:\n\t"                                                                                \
    "sub r4, r4, #8\n"                                                                      \
    "3:\n\t"                                                                                \
    "b 8f\n"

#define QMCU_RQ8A_BIAS0 "ldr r11, [r5], #8\n\tadd r10, r10, r11\n\tadd r12, r12, r11\n\t"
#define QMCU_RQ8A_BIAS1 "ldr lr, [r5, #-4]\n\tadd r8, r8, lr\n\tadd r11, r11, lr\n\t"
#define QMCU_RQ8A_CLAMP                                                                   \
    "orr r10, r10, r12, lsl #16\n\t"                                                        \
    "ldr lr, [sp]\n\t"                                                                      \
    "uqadd8 r10, r10, lr\n\t"                                                               \
    "ldr lr, [sp, #4]\n\t"                                                                  \
    "usub8 r10, r10, lr\n\t"                                                                \
    "lsr r12, r10, #16\n\t"
#define QMCU_RQ8A_LOOP(BIAS0, BIAS1, CLAMP)                                               \
    QMCU_RQ8A_HEAD                                                                        \
    "ldr r12, [r2, r1, lsl #2]\n\t"                                                         \
    "ldr r10, [r2], #4\n\t"                                                                 \
    BIAS0                                                                                 \
    "ldr lr, [r3], #8\n\t"                                                                  \
    "smmul r10, r10, lr\n\t"                                                                \
    "smmul r12, r12, lr\n\t"                                                                \
    "asr r10, r10, r8\n\t"                                                                  \
    "asr r12, r12, r8\n\t"                                                                  \
    "ldr r11, [r2, r1, lsl #2]\n\t"                                                         \
    "ldr r8, [r2], #4\n\t"                                                                  \
    BIAS1                                                                                 \
    "ldr lr, [r3, #-4]\n\t"                                                                 \
    "smmul r8, r8, lr\n\t"                                                                  \
    "smmul r11, r11, lr\n\t"                                                                \
    "asr r8, r8, r9\n\t"                                                                    \
    "asr r11, r11, r9\n\t"                                                                  \
    "add r10, r10, r7\n\t"                                                                  \
    "add r12, r12, r7\n\t"                                                                  \
    "add r8, r8, r7\n\t"                                                                    \
    "add r11, r11, r7\n\t"                                                                  \
    "usat r10, #8, r10, asr #1\n\t"                                                         \
    "usat r12, #8, r12, asr #1\n\t"                                                         \
    "usat r8, #8, r8, asr #1\n\t"                                                           \
    "usat r11, #8, r11, asr #1\n\t"                                                         \
    "orr r10, r10, r8, lsl #8\n\t"                                                          \
    "orr r12, r12, r11, lsl #8\n\t"                                                         \
    CLAMP                                                                                 \
    "strh r12, [r0, r1]\n\t"                                                                \
    "strh r10, [r0], #2\n\t"                                                                \
    QMCU_RQ8A_TAIL

_Static_assert(offsetof(qmcu_q, lo) == 4 && offsetof(qmcu_q, lo4) == 12 &&
                   offsetof(qmcu_q, hi4) == 16 && offsetof(qmcu_q, z1) == 20,
               "qmcu_requant8 reads qmcu_q at these offsets");

/* One pixel: per channel pair its shifts, accumulators, bias and multipliers with one LDRD
 * each, one STRH. */
#define QMCU_RQ8A_BIAS_1PX "ldrd r12, lr, [r5], #8\n\tadd r10, r10, r12\n\tadd r11, r11, lr\n\t"
#define QMCU_RQ8A_CLAMP_1PX                                                               \
    "ldr lr, [sp]\n\t"                                                                      \
    "uqadd8 r10, r10, lr\n\t"                                                               \
    "ldr lr, [sp, #4]\n\t"                                                                  \
    "usub8 r10, r10, lr\n\t"
#define QMCU_RQ8A_LOOP_1PX(BIAS, CLAMP)                                                   \
    QMCU_RQ8A_HEAD                                                                        \
    "ldrd r10, r11, [r2], #8\n\t"                                                           \
    BIAS                                                                                  \
    "ldrd r12, lr, [r3], #8\n\t"                                                            \
    "smmul r10, r10, r12\n\t"                                                               \
    "smmul r11, r11, lr\n\t"                                                                \
    "asr r10, r10, r8\n\t"                                                                  \
    "asr r11, r11, r9\n\t"                                                                  \
    "add r10, r10, r7\n\t"                                                                  \
    "add r11, r11, r7\n\t"                                                                  \
    "usat r10, #8, r10, asr #1\n\t"                                                         \
    "usat r11, #8, r11, asr #1\n\t"                                                         \
    "orr r10, r10, r11, lsl #8\n\t"                                                         \
    CLAMP                                                                                 \
    "strh r10, [r0], #2\n\t"                                                                \
    QMCU_RQ8A_TAIL

/* Arguments: y r0, y_pix r1, acc r2, acc_pix r3, then on the stack npx, oc, bias, mult,
 * shift, q (at sp + 44 .. 64 once r4-r11, lr and the 8 bytes of k4, h4 are pushed). */
#define QMCU_ASM_ARG __attribute__((unused))     /* read by the assembly */
QMCU_SHARED __attribute__((naked)) void qmcu_requant8(
    QMCU_ASM_ARG uint8_t *y, QMCU_ASM_ARG int32_t y_pix, QMCU_ASM_ARG const int32_t *acc,
    QMCU_ASM_ARG int32_t acc_pix, QMCU_ASM_ARG int32_t npx, QMCU_ASM_ARG int32_t oc,
    QMCU_ASM_ARG const int32_t *bias, QMCU_ASM_ARG const int32_t *mult,
    QMCU_ASM_ARG const int32_t *shift, QMCU_ASM_ARG const qmcu_q *q) {
    __asm__ volatile(
        "ldr r12, [sp]\n\t"
        "cmp r12, #2\n\t"
        "it eq\n\t"
        "cmpeq r1, r3\n\t"
        "it ne\n\t"
        "cmpne r12, #1\n\t"
        "bne qmcu_requant8_gen\n\t"
        "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
        "sub sp, sp, #8\n\t"
        "ldr r12, [sp, #64]\n\t"              /* q */
        "ldrd r8, r9, [r12, #12]\n\t"         /* lo4, hi4 */
        "ldr r7, [r12, #20]\n\t"              /* z1 */
        "ldr r10, [r12, #4]\n\t"              /* lo */
        "mvn r9, r9\n\t"                      /* h4 = ~hi4 */
        "orr r11, r8, r9\n\t"                 /* clamp needed unless lo = 0, hi = 255 */
        "add r8, r8, r9\n\t"                  /* k4 = h4 + lo4 */
        "strd r8, r9, [sp]\n\t"
        "sub r7, r7, r10, lsl #1\n\t"         /* z = z1 - 2 lo */
        "ldrd r6, r5, [sp, #48]\n\t"          /* oc, bias */
        "ldrd r3, r4, [sp, #56]\n\t"          /* mult, shift */
        "bic r6, r6, #1\n\t"
        "add r6, r4, r6, lsl #2\n\t"          /* end of the channel pairs' shifts */
        "ldr r12, [sp, #44]\n\t"            /* npx */
        "cmp r12, #1\n\t"
        "beq 7f\n\t"
        "cmp r5, #0\n\t"
        "beq 5f\n\t"
        "cmp r11, #0\n\t"
        "beq 4f\n\t"
        QMCU_RQ8A_LOOP(QMCU_RQ8A_BIAS0, QMCU_RQ8A_BIAS1, QMCU_RQ8A_CLAMP)
        "4:\n\t"
        QMCU_RQ8A_LOOP(QMCU_RQ8A_BIAS0, QMCU_RQ8A_BIAS1, "")
        "5:\n\t"
        "cmp r11, #0\n\t"
        "beq 6f\n\t"
        QMCU_RQ8A_LOOP("", "", QMCU_RQ8A_CLAMP)
        "6:\n\t"
        QMCU_RQ8A_LOOP("", "", "")
        "7:\n\t"
        "cmp r5, #0\n\t"
        "beq 5f\n\t"
        "cmp r11, #0\n\t"
        "beq 4f\n\t"
        QMCU_RQ8A_LOOP_1PX(QMCU_RQ8A_BIAS_1PX, QMCU_RQ8A_CLAMP_1PX)
        "4:\n\t"
        QMCU_RQ8A_LOOP_1PX(QMCU_RQ8A_BIAS_1PX, "")
        "5:\n\t"
        "cmp r11, #0\n\t"
        "beq 6f\n\t"
        QMCU_RQ8A_LOOP_1PX("", QMCU_RQ8A_CLAMP_1PX)
        "6:\n\t"
        QMCU_RQ8A_LOOP_1PX("", "")
        "8:\n\t"
        /* from a pair with a shift below 33 on, and an odd last channel */
        "ldr r8, [sp, #48]\n\t"
        "ldr r9, [sp, #60]\n\t"
        "add r9, r9, r8, lsl #2\n\t"          /* shift + oc */
        "subs r8, r9, r4\n\t"
        "bls 9f\n\t"
        "ldr r12, [sp, #64]\n\t"
        "sub sp, sp, #28\n\t"            /* 8-byte aligned at the call */
        "asr r8, r8, #2\n\t"
        "ldr r9, [sp, #72]\n\t"             /* npx */
        "strd r9, r8, [sp]\n\t"               /* npx, channels left */
        "strd r5, r3, [sp, #8]\n\t"           /* c, M */
        "strd r4, r12, [sp, #16]\n\t"         /* n, q */
        "mov r3, r1\n\t"
        "bl qmcu_requant8_px\n\t"
        "add sp, sp, #28\n"
        "9:\n\t"
        "add sp, sp, #8\n\t"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t");
}

QMCU_SHARED __attribute__((used)) void qmcu_requant8_gen(uint8_t *y, int32_t y_pix,
                                                        const int32_t *acc, int32_t acc_pix,
                                                        int32_t npx, int32_t oc,
                                                        const int32_t *bias,
                                                        const int32_t *mult,
                                                        const int32_t *shift, const qmcu_q *q) {
    int32_t p = 0;
    for (; p + 1 < npx; p += 2)
        if (acc_pix == y_pix)
            qmcu_requant8(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, oc, bias, mult,
                          shift, q);
        else
            qmcu_requant8_px(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, oc, bias,
                             mult, shift, q);
    if (p < npx)
        qmcu_requant8_px(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 1, oc, bias, mult,
                         shift, q);
}

QMCU_SHARED void qmcu_requant4(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                               int32_t npx, int32_t oc, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, const qmcu_q *q) {
    requant_body(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, 4);
}

QMCU_SHARED void qmcu_requant2(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                               int32_t npx, int32_t oc, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, const qmcu_q *q) {
    requant_body(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, 2);
}

/* Second phase of the DSP kernels: requantize and pack the accumulators of npx pixels
 * (bias 0: they hold it), in the shared function of the output width. */
QMCU_INLINE void requant_out(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                             int32_t npx, int32_t oc, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, const qmcu_q *q, int32_t bits) {
    if (bits == 8)
        qmcu_requant8(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q);
    else if (bits == 4)
        qmcu_requant4(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q);
    else
        qmcu_requant2(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q);
}

/* requant_out of accumulators that hold the bias. */
QMCU_INLINE void requant_biased(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                                int32_t npx, int32_t oc, const int32_t *mult,
                                const int32_t *shift, const qmcu_q *q, int32_t bits) {
    requant_out(y, y_pix, acc, acc_pix, npx, oc, 0, mult, shift, q, bits);
}

/* The accumulators of channels c0 .. c - 1 of npx pixels set to their bias (before products
 * added by the portable tails, for requant_biased). */
QMCU_INLINE void acc_from_bias(int32_t *acc, int32_t acc_pix, int32_t npx, int32_t c0, int32_t c,
                               const int32_t *bias) {
    for (int32_t p = 0; p < npx; p++)
        for (int32_t ch = c0; ch < c; ch++) acc[p * acc_pix + ch] = bias[ch];
}

/* requant_at = "pair" (the kernel file defines QMCU_REQUANT_AT_PAIR): each channel pair is
 * requantized as soon as its products are done, from registers, instead of storing the
 * accumulators for requant_out. It saves their store and reload and requant_out's loop, but
 * keeps the output pointers live through the product loops (more register pressure): which
 * wins depends on the layer, so it is a tuning knob. */
#ifdef QMCU_REQUANT_AT_PAIR
#define QMCU_RQ_AT_PAIR 1
#else
#define QMCU_RQ_AT_PAIR 0
#endif

/* ---- conv2d / pointwise / dense, DSP ------------------------------------------------------ */
/* widen = 0 (the kernel file defines QMCU_NO_WIDEN): 4/2-bit windows are unpacked per
 * output channel pair instead (conv_dsp_body). */
#ifdef QMCU_NO_WIDEN
#define QMCU_WIDEN 0
#else
#define QMCU_WIDEN 1
#endif
#ifndef QMCU_MAX_K
#define QMCU_MAX_K 2304   /* largest gathered window (kh*kw*c) of the DSP path */
#endif
/* Gathered windows of two pixels, int16 (read back as words with ld32: the buffer is only
 * ever accessed as int16). Weak: every kernel file defines it and the linker keeps one copy
 * (kernels run one at a time). */
int16_t qmcu_gather[2 * (QMCU_MAX_K + 4)] __attribute__((weak, aligned(8)));

/* One pixel's window as int16 in weight order; within every group of four the order is v0,
 * v2, v1, v3, so that a word holds the lane pair matching SXTB16 (ROR 8) of a weight word. */
QMCU_INLINE void gather(int16_t *dst, const uint8_t *x, int32_t x_row, int32_t x_pix,
                        int32_t kh, int32_t kw, int32_t c, int32_t ib) {
    const int32_t K4 = (kh * kw * c) & ~3;
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++)
            for (int32_t ch = 0; ch < c; ch++) {
                const int32_t k = (i * kw + j) * c + ch;
                const int32_t at = k < K4 ? (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1) : k;
                dst[at] = (int16_t)xval(x + i * x_row + j * x_pix, ch, ib);
            }
}

/* The 4/2-bit windows of npx pixels read a word at a time (whole words per tap, then the
 * partial last word of tb bytes, zero-filled) as their 16-bit lane pairs in the weights' lane
 * order, xlane(v, m) one AND each, interleaved by pixel: per two lane pairs, the first
 * pixel's two words, then the second's. Done once per call, it takes the unpacking out of the
 * loop over output channel pairs (QMCU_WIDE_PAIR), which then reads the pairs with LDRD off
 * one pointer and has the registers of the mask and the packed words free. */
QMCU_INLINE void widen(uint32_t *d, const uint8_t *x, int32_t x_row, int32_t x_pix,
                       int32_t dx, int32_t npx, int32_t kh, int32_t kw, int32_t c, int32_t ib,
                       uint32_t lm) {
    const int32_t G = 32 / ib, tb = (c % G * ib + 7) / 8;
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++) {
            const uint8_t *xp = x + i * x_row + j * x_pix;
#pragma GCC unroll 2
            for (int32_t g = 0; g < (c + G - 1) / G; g++, xp += 4) {
                const uint32_t v0 = g < c / G ? ld32(xp) : ldpart(xp, tb);
                const uint32_t v1 = npx == 1 ? 0 : g < c / G ? ld32(xp + dx)
                                                             : ldpart(xp + dx, tb);
#pragma GCC unroll 8
                for (int32_t m = 0; m < 16 / ib; m += 2, d += 2 * npx) {
                    d[0] = (uint32_t)xlane(v0, m, ib, lm);
                    d[1] = (uint32_t)xlane(v0, m + 1, ib, lm);
                    if (npx == 2) {
                        d[2] = (uint32_t)xlane(v1, m, ib, lm);
                        d[3] = (uint32_t)xlane(v1, m + 1, ib, lm);
                    }
                }
            }
        }
}

/* QMCU_WIDE_PAIR for two pixels as an assembly loop, four steps per pass where K is a
 * multiple of 16, three where of 24, else two (K is a multiple of 8 here). A step: the weight words of channels o (at p) and o + 1 (at p + K), the four
 * widened lane words at g (both pixels), 16 MACs. Its loads come in one run (a load behind a
 * load pipelines on the Cortex-M4: one cycle instead of two) and each weight word is unpacked
 * in place, so that the loop needs 13 registers (compiled, gcc interleaves the loads with the
 * multiplies, spills an accumulator and reloads its end pointer). */
#define QMCU_WIDE_STEP                                                                    \
    "ldr %[w], [%[p], %[k]]\n\t"                                                       \
    "ldr %[xc0], [%[g], #4]\n\t"                                                       \
    "ldr %[xa1], [%[g], #8]\n\t"                                                       \
    "ldr %[xc1], [%[g], #12]\n\t"                                                      \
    "ldr %[xa0], [%[g]], #16\n\t"                                                      \
    "sxtb16 %[s], %[w]\n\t"                                                            \
    "sxtb16 %[w], %[w], ror #8\n\t"                                                    \
    "smlad %[a1], %[xa0], %[s], %[a1]\n\t"                                             \
    "smlad %[b1], %[xa1], %[s], %[b1]\n\t"                                             \
    "ldr %[s], [%[p]], #4\n\t"                                                         \
    "smlad %[a1], %[xc0], %[w], %[a1]\n\t"                                             \
    "smlad %[b1], %[xc1], %[w], %[b1]\n\t"                                             \
    "sxtb16 %[w], %[s], ror #8\n\t"                                                    \
    "sxtb16 %[s], %[s]\n\t"                                                            \
    "smlad %[a0], %[xa0], %[s], %[a0]\n\t"                                             \
    "smlad %[b0], %[xa1], %[s], %[b0]\n\t"                                             \
    "smlad %[a0], %[xc0], %[w], %[a0]\n\t"                                             \
    "smlad %[b0], %[xc1], %[w], %[b0]\n\t"

#define QMCU_WIDE_LOOP_ASM(K, STEPS)                                                      \
    __asm__ volatile("1:\n\t" STEPS                                                       \
                     "cmp %[p], %[pe]\n\t"                                               \
                     "bne 1b"                                                             \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1),        \
                       [p] "+r"(p), [g] "+r"(gw), [w] "=&r"(w_), [s] "=&r"(s_),           \
                       [xa0] "=&r"(xa0_), [xc0] "=&r"(xc0_), [xa1] "=&r"(xa1_),           \
                       [xc1] "=&r"(xc1_)                                                  \
                     : [k] "i"(K), [pe] "r"(pe)                                           \
                     : "cc", "memory")

/* QMCU_WIDE_PAIR for two pixels and short windows (K = 8 .. 32: pointwise layers of up to
 * 32 channels), straight-line: per step the two weight words load back to back (the second
 * pipelines) and the four widened lane words in one LDM (r8-r11: its register list must
 * ascend), 15 instructions for 16 MACs against the int8 loop's 20 (which unpacks the
 * activation words per channel pair). With no loop the end pointer's register is free for
 * the second weight word. */
#define QMCU_WIDE_LDM_STEP                                                                \
    "ldr %[w], [%[p], %[k]]\n\t"                                                       \
    "ldr %[s], [%[p]], #4\n\t"                                                         \
    "ldmia %[g]!, {r8, r9, r10, r11}\n\t"                                               \
    "sxtb16 %[t], %[w]\n\t"                                                            \
    "sxtb16 %[w], %[w], ror #8\n\t"                                                    \
    "smlad %[a1], r8, %[t], %[a1]\n\t"                                                 \
    "smlad %[b1], r10, %[t], %[b1]\n\t"                                                \
    "smlad %[a1], r9, %[w], %[a1]\n\t"                                                 \
    "smlad %[b1], r11, %[w], %[b1]\n\t"                                                \
    "sxtb16 %[t], %[s]\n\t"                                                            \
    "sxtb16 %[s], %[s], ror #8\n\t"                                                    \
    "smlad %[a0], r8, %[t], %[a0]\n\t"                                                 \
    "smlad %[b0], r10, %[t], %[b0]\n\t"                                                \
    "smlad %[a0], r9, %[s], %[a0]\n\t"                                                 \
    "smlad %[b0], r11, %[s], %[b0]\n\t"

#define QMCU_WIDE_LDM_ASM(K, STEPS)                                                       \
    __asm__ volatile(STEPS                                                                \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1),        \
                       [p] "+r"(p), [g] "+r"(gw), [w] "=&r"(w_), [s] "=&r"(s_),           \
                       [t] "=&r"(t_)                                                      \
                     : [k] "i"(K)                                                         \
                     : "r8", "r9", "r10", "r11", "memory")

/* The loop over output channel pairs around those steps, in assembly: 14 registers (the
 * accumulator pointer, the weight and lane word pointers, the accumulators, three weight
 * registers and r8-r11); the end of the accumulators is compared from the stack. Per pair
 * the sums load and store with LDRD/STRD; the weight pointer skips the second channel's row
 * and the lane word pointer returns to the window's start. */
#define QMCU_WIDE_PAIRS_ASM(K, BO, STEPS)                                                 \
    __asm__ volatile("1:\n\t"                                                            \
                     "ldrd %[a0], %[a1], [%[ap]]\n\t"                                    \
                     "ldrd %[b0], %[b1], [%[ap], %[bo]]\n\t"                             \
                     STEPS                                                                \
                     "strd %[b0], %[b1], [%[ap], %[bo]]\n\t"                             \
                     "strd %[a0], %[a1], [%[ap]], #8\n\t"                                \
                     "add %[p], %[p], %[k]\n\t"                                          \
                     "sub %[g], %[g], %[k4]\n\t"                                         \
                     "ldr %[t], %[end]\n\t"                                              \
                     "cmp %[ap], %[t]\n\t"                                               \
                     "bne 1b"                                                             \
                     : [a0] "=&r"(a0_), [a1] "=&r"(a1_), [b0] "=&r"(b0_), [b1] "=&r"(b1_),\
                       [ap] "+r"(ap_), [p] "+r"(p_), [g] "+r"(g_), [w] "=&r"(w_),         \
                       [s] "=&r"(s_), [t] "=&r"(t_)                                       \
                     : [k] "i"(K), [k4] "i"(4 * (K)), [bo] "i"(BO), [end] "m"(end_)       \
                     : "r8", "r9", "r10", "r11", "cc", "memory")

#define QMCU_WIDE_LDM2 QMCU_WIDE_LDM_STEP QMCU_WIDE_LDM_STEP
#define QMCU_WIDE_LDM4 QMCU_WIDE_LDM2 QMCU_WIDE_LDM2

/* ASM(args, steps) with the K / 4 steps of a window of K = 8, 16, 24 or 32 values. */
#define QMCU_WIDE_LDM_BY_K(ASM, ...)                                                      \
    do {                                                                                  \
        if (K == 8)                                                                       \
            ASM(__VA_ARGS__, QMCU_WIDE_LDM2);                                             \
        else if (K == 16)                                                                 \
            ASM(__VA_ARGS__, QMCU_WIDE_LDM4);                                             \
        else if (K == 24)                                                                 \
            ASM(__VA_ARGS__, QMCU_WIDE_LDM4 QMCU_WIDE_LDM2);                              \
        else                                                                              \
            ASM(__VA_ARGS__, QMCU_WIDE_LDM4 QMCU_WIDE_LDM4);                              \
    } while (0)

/* The weight rows' offset K fits an LDR immediate. */
#define QMCU_WIDE_ASM(npx, K)                                                             \
    ((npx) == 2 && __builtin_constant_p(K) && (K) > 0 && (K) % 8 == 0 && (K) < 4096)

/* QMCU_GATHERED_PAIR over the widened windows (widen) of K values per pixel. */
#define QMCU_WIDE_PAIR()                                                                  \
    do {                                                                                  \
        const uint32_t *gw = (const uint32_t *)(void *)qmcu_gather;                       \
        const int8_t *pe = p + K;                                                         \
        if (QMCU_WIDE_ASM(npx, K) && K <= 32) {                                           \
            uint32_t w_, s_, t_;                                                          \
            QMCU_WIDE_LDM_BY_K(QMCU_WIDE_LDM_ASM, QMCU_WIDE_ASM(npx, K) ? K : 8);          \
            break;                                                                        \
        }                                                                                 \
        if (QMCU_WIDE_ASM(npx, K)) {                                                      \
            uint32_t w_, s_, xa0_, xc0_, xa1_, xc1_;                                      \
            if (K % 16 == 0)                                                              \
                QMCU_WIDE_LOOP_ASM(QMCU_WIDE_ASM(npx, K) ? K : 8,                         \
                                   QMCU_WIDE_STEP QMCU_WIDE_STEP QMCU_WIDE_STEP           \
                                   QMCU_WIDE_STEP);                                       \
            else if (K % 24 == 0)                                                         \
                QMCU_WIDE_LOOP_ASM(QMCU_WIDE_ASM(npx, K) ? K : 8,                         \
                                   QMCU_WIDE_STEP QMCU_WIDE_STEP QMCU_WIDE_STEP);         \
            else                                                                          \
                QMCU_WIDE_LOOP_ASM(QMCU_WIDE_ASM(npx, K) ? K : 8,                         \
                                   QMCU_WIDE_STEP QMCU_WIDE_STEP);                        \
            break;                                                                        \
        }                                                                                 \
        for (; p < pe; p += 4, gw += 2 * npx) {                                           \
            const uint32_t v0 = ld32(p), v1 = ld32(p + K);                                \
            const int32_t s0 = __sxtb16(v0), t0 = sxtb16_ror8(v0);                        \
            const int32_t s1 = __sxtb16(v1), t1 = sxtb16_ror8(v1);                        \
            int32_t xa = (int32_t)gw[0], xc = (int32_t)gw[1];                             \
            QMCU_PAIR_MACS(xa, xc, a0, a1);                                               \
            if (npx == 2) {                                                               \
                xa = (int32_t)gw[2];                                                      \
                xc = (int32_t)gw[3];                                                      \
                QMCU_PAIR_MACS(xa, xc, b0, b1);                                           \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* c0 (c1) += the lane pairs xa, xc against output channel o (o + 1): its weight lane pairs
 * s0, t0 (s1, t1). Two SMLAD per channel, four MACs each. */
#define QMCU_PAIR_MACS(xa, xc, c0, c1)                                                    \
    do {                                                                                  \
        c0 = __smlad(xa, s0, c0);                                                         \
        c0 = __smlad(xc, t0, c0);                                                         \
        c1 = __smlad(xa, s1, c1);                                                         \
        c1 = __smlad(xc, t1, c1);                                                         \
    } while (0)

/* a0, a1 (b0, b1): channels o, o+1 of the first (second) pixel += the gathered windows g0
 * (g1) of K values against the weight rows at p and p + K. */
#define QMCU_GATHERED_PAIR()                                                              \
    do {                                                                                  \
        int32_t k = 0;                                                                    \
        for (; k + 3 < K; k += 4, p += 4) {                                               \
            const uint32_t v0 = ld32(p), v1 = ld32(p + K);                                \
            const int32_t s0 = __sxtb16(v0), t0 = sxtb16_ror8(v0);                        \
            const int32_t s1 = __sxtb16(v1), t1 = sxtb16_ror8(v1);                        \
            int32_t xa = (int32_t)ld32(g0 + k), xc = (int32_t)ld32(g0 + k + 2);           \
            QMCU_PAIR_MACS(xa, xc, a0, a1);                                               \
            if (npx == 2) {                                                               \
                xa = (int32_t)ld32(g1 + k);                                               \
                xc = (int32_t)ld32(g1 + k + 2);                                           \
                QMCU_PAIR_MACS(xa, xc, b0, b1);                                           \
            }                                                                             \
        }                                                                                 \
        for (; k < K; k++, p++) {                                                         \
            a0 += g0[k] * p[0];                                                           \
            a1 += g0[k] * p[K];                                                           \
            if (npx == 2) {                                                               \
                b0 += g1[k] * p[0];                                                       \
                b1 += g1[k] * p[K];                                                       \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* Lane pairs m < mend of activation words v0 (v1) against the next weight words of rows pw,
 * pw + K (advanced). */
#define QMCU_DIRECT_WORD(v0, v1, mend)                                                    \
    do {                                                                                  \
        _Pragma("GCC unroll 8")                                                           \
        for (int32_t m = 0; m < (mend); m += 2, pw += 4) {                                \
            const uint32_t wa = ld32(pw), wb = ld32(pw + K);                              \
            const int32_t s0 = __sxtb16(wa), t0 = sxtb16_ror8(wa);                        \
            const int32_t s1 = __sxtb16(wb), t1 = sxtb16_ror8(wb);                        \
            int32_t xa = xlane(v0, m, ib, lm), xc = xlane(v0, m + 1, ib, lm);             \
            QMCU_PAIR_MACS(xa, xc, a0, a1);                                               \
            if (npx == 2) {                                                               \
                xa = xlane(v1, m, ib, lm);                                                \
                xc = xlane(v1, m + 1, ib, lm);                                            \
                QMCU_PAIR_MACS(xa, xc, b0, b1);                                           \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* The same over the packed window read in place: per tap, whole words of activations, then
 * at 4/2 bits a partial last word (tb bytes; its missing lanes and weights are zero, lane
 * pairs beyond the last channel skipped), at 8 bits the remaining channels one by one. */
#define QMCU_DIRECT_PAIR()                                                                \
    do {                                                                                  \
        for (int32_t i = 0; i < kh; i++)                                                  \
            for (int32_t j = 0; j < kw; j++) {                                            \
                const uint8_t *xp = x + i * x_row + j * x_pix;                            \
                const int8_t *pw = p + (i * kw + j) * cw;                                 \
                for (int32_t g = 0; g < c / G; g++, xp += 4) {                            \
                    const uint32_t v0 = ld32(xp), v1 = npx == 2 ? ld32(xp + dx) : 0;      \
                    QMCU_DIRECT_WORD(v0, v1, 16 / ib);                                    \
                }                                                                         \
                if (ib < 8 && c % G) {                                                    \
                    const uint32_t v0 = ldpart(xp, tb);                                   \
                    const uint32_t v1 = npx == 2 ? ldpart(xp + dx, tb) : 0;               \
                    QMCU_DIRECT_WORD(v0, v1, tail_lanes);                                 \
                }                                                                         \
                for (int32_t ch = c / 4 * 4; ch < c && ib == 8; ch++) {                   \
                    const int32_t e0 = xp[ch % 4], u = pw[ch % 4], v = pw[K + ch % 4];    \
                    a0 += e0 * u;                                                         \
                    a1 += e0 * v;                                                         \
                    if (npx == 2) {                                                       \
                        b0 += xp[dx + ch % 4] * u;                                        \
                        b1 += xp[dx + ch % 4] * v;                                        \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
    } while (0)

QMCU_INLINE void conv_dsp_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                               const uint8_t *x0, int32_t x_row, int32_t x_pix,
                               const int8_t *w, const int32_t *bias, const int32_t *mult,
                               const int32_t *shift, const qmcu_q *q, int32_t npx, int32_t kh,
                               int32_t kw, int32_t c, int32_t oc, int32_t sw, int32_t ib,
                               int32_t ob, int32_t fuse) {
    const int32_t G = 32 / ib, gathered = conv_gathers(c, ib);
    const int32_t cw = wchannels(c, ib, ib < 8 && !gathered), K = kh * kw * cw;
    /* a partial last word: its bytes, and the lane pairs that hold channels (even count) */
    const int32_t tb = (c % G * ib + 7) / 8;
    const int32_t tail_lanes = ((c % G < G / 2 ? c % G : G / 2) + 1) & ~1;
    const int32_t dx = sw * x_pix;
    uint32_t lm = lane_mask(ib);
    QMCU_OPAQUE(lm);
    const int32_t at_pair = QMCU_RQ_AT_PAIR && fuse && oc % 2 == 0;
    /* the sums start from acc (zero when fused) and requant_out adds the bias: starting from
     * the bias (as dw_dsp_body) costs the channel loop a register here */
    const int32_t biased = 0;
    int16_t *g0 = qmcu_gather, *g1 = qmcu_gather + QMCU_MAX_K + 4;
    /* 4/2-bit windows read in place are widened once per call into lane pairs */
    const int32_t widened = QMCU_WIDEN && ib < 8 && !gathered && K <= QMCU_MAX_K;
    if (widened) {
        widen((uint32_t *)(void *)qmcu_gather, x0, x_row, x_pix, dx, npx, kh, kw, c, ib, lm);
    }
    if (gathered) {
        if (K > QMCU_MAX_K) {
            conv_ref(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, npx,
                     kh, kw, c, oc, sw, ib, ob, fuse, 0);
            return;
        }
        gather(g0, x0, x_row, x_pix, kh, kw, c, ib);
        if (npx == 2) gather(g1, x0 + dx, x_row, x_pix, kh, kw, c, ib);
    }
    int32_t o = 0;
    /* the whole loop over channel pairs in assembly: short widened windows of two pixels */
    if (widened && !at_pair && !biased && oc >= 2 && QMCU_WIDE_ASM(npx, K) && K <= 32 &&
        __builtin_constant_p(acc_pix) && acc_pix > 0 && acc_pix <= 255) {
        int32_t *ap_ = acc, *end_ = acc + (oc & ~1);
        const int8_t *p_ = w;
        const uint32_t *g_ = (const uint32_t *)(void *)qmcu_gather;
        int32_t a0_, a1_, b0_, b1_;
        uint32_t w_, s_, t_;
        const int32_t bo = __builtin_constant_p(acc_pix) && acc_pix <= 255 ? acc_pix * 4 : 0;
        QMCU_WIDE_LDM_BY_K(QMCU_WIDE_PAIRS_ASM, QMCU_WIDE_ASM(npx, K) ? K : 8, bo);
        o = oc & ~1;
    }
    for (; o + 1 < oc; o += 2) {
        int32_t *ap = acc + o, *bp = acc + acc_pix + o;
        const uint8_t *x = x0;
        const int8_t *p = w + o * K;
        QMCU_OPAQUE(x);
        int32_t a0, a1, b0 = 0, b1 = 0;
        if (biased) {
            a0 = bias[o];
            a1 = bias[o + 1];
            if (npx == 2) {
                b0 = a0;
                b1 = a1;
            }
        } else {
            a0 = ap[0];
            a1 = ap[1];
            if (npx == 2) {
                b0 = bp[0];
                b1 = bp[1];
            }
        }
        if (widened)
            QMCU_WIDE_PAIR();
        else if (gathered)
            QMCU_GATHERED_PAIR();
        else
            QMCU_DIRECT_PAIR();
        if (at_pair) {
            rq_pair(y, y_pix, o, a0, a1, b0, b1, npx, bias + o, mult + o, shift + o, q, ob);
            continue;
        }
        ap[0] = a0;
        ap[1] = a1;
        if (npx == 2) {
            bp[0] = b0;
            bp[1] = b1;
        }
    }
    if (o < oc) {
        if (biased) acc_from_bias(acc, acc_pix, npx, o, oc, bias);
        conv_ref(0, 0, acc, acc_pix, x0, x_row, x_pix, w, 0, 0, 0, 0, npx, kh, kw, c, oc, sw,
                 ib, 8, 0, o);
    }
    if (fuse && !at_pair) requant_out(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, ob);
}

/* conv_dsp: npx = 1 or 2 pixels per call. conv_dsp_tail: the last pixel of an odd row of a
 * row-wide call (knob pixels = "row"), its own function so that both keep a literal npx
 * (gcc propagates an argument only when every call passes the same value). */
QMCU_LOOP void conv_dsp(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                        const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                        int32_t oc, int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    conv_dsp_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, npx, kh,
                  kw, c, oc, sw, ib, ob, fuse);
}

QMCU_LOOP void conv_dsp_tail(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                             const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift,
                             const qmcu_q *q, int32_t kh, int32_t kw, int32_t c, int32_t oc,
                             int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    conv_dsp_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, 1, kh, kw,
                  c, oc, sw, ib, ob, fuse);
}

/* ---- depthwise, DSP ----------------------------------------------------------------------- */

/* dw_set's products at 8 bits for a 3×3 window and two pixels, four channels: the eight
 * accumulators, two weight and two activation lane registers and the two base pointers take
 * all fourteen registers, with every address an immediate offset (compiled, the pointers
 * spill and each tap recomputes its addresses: 3.1 instructions per MAC, here 2.3). The
 * registers are named and the pointers passed in memory (args = {x, w, acc, init}, its
 * address in r12; init: the bias of the four channels, whose values start both pixels' sums,
 * or 0: they start from acc), so that the block takes no register gcc must find whatever else is live (r7, r9-r11
 * are saved and restored inside: one of them may be the frame pointer). Per tap: one weight word
 * (SXTB16 ×2), per pixel one activation word (UXTB16 ×2) and four SMLAxy. */
/* One tap of two pixels, four channels: EXT unpacks the activation word in lr into the lane
 * pairs lr (channels c0, c0+H) and r7 (c0+1, c0+H+1); FL / FH accumulate (QMCU_DW_ACC) or,
 * on the first tap of sums that start from zero, multiply (QMCU_DW_MUL) the lanes of lr / r7. */
#define QMCU_DW_ACC(xy, d, n, m) "smla" xy " " d ", " n ", " m ", " d "\n\t"
#define QMCU_DW_MUL(xy, d, n, m) "smul" xy " " d ", " n ", " m "\n\t"
#define QMCU_DW_TAP(i, j, EXT, FL, FH)                                                    \
    "ldr r9, [r10, #((" #i "*3+" #j ")*%c[cw])]\n\t"                                       \
    "sxtb16 r12, r9, ror #8\n\t"                                                          \
    "sxtb16 r9, r9\n\t"                                                                   \
    "ldr lr, [r11, #(" #i "*%c[xr]+" #j "*%c[xs])]\n\t"                                    \
    EXT                                                                                   \
    FL("bb", "r0", "lr", "r9") FH("bb", "r1", "r7", "r12")                                \
    FL("tt", "r2", "lr", "r9") FH("tt", "r3", "r7", "r12")                                \
    "ldr lr, [r11, #(" #i "*%c[xr]+" #j "*%c[xs]+%c[dx])]\n\t"                             \
    EXT                                                                                   \
    FL("bb", "r4", "lr", "r9") FH("bb", "r5", "r7", "r12")                                \
    FL("tt", "r6", "lr", "r9") FH("tt", "r8", "r7", "r12")
#define QMCU_DW_EXT8 "uxtb16 r7, lr, ror #8\n\t" "uxtb16 lr, lr\n\t"
#define QMCU_DW8_TAP(i, j) QMCU_DW_TAP(i, j, QMCU_DW_EXT8, QMCU_DW_ACC, QMCU_DW_ACC)
#define QMCU_DW8_ROW(i) QMCU_DW8_TAP(i, 0) QMCU_DW8_TAP(i, 1) QMCU_DW8_TAP(i, 2)
/* Stride 1 (dx = x_pix): the second pixel's tap j reads the first one's column j + 1, so a
 * row loads four activation words instead of six. Column k multiplies the weights of tap
 * k - 1 (still in r9/r12) into the second pixel, then those of tap k into the first:
 * 45 instructions per row of 24 MACs instead of 51. FL0 / FH0: each sum's first product. */
#define QMCU_DW_W(i, j)                                                                   \
    "ldr r9, [r10, #((" #i "*3+" #j ")*%c[cw])]\n\t"                                       \
    "sxtb16 r12, r9, ror #8\n\t"                                                          \
    "sxtb16 r9, r9\n\t"
#define QMCU_DW_X(i, k, EXT) "ldr lr, [r11, #(" #i "*%c[xr]+" #k "*%c[xs])]\n\t" EXT
#define QMCU_DW_P1(FL, FH)                                                                \
    FL("bb", "r0", "lr", "r9") FH("bb", "r1", "r7", "r12")                                \
    FL("tt", "r2", "lr", "r9") FH("tt", "r3", "r7", "r12")
#define QMCU_DW_P2(FL, FH)                                                                \
    FL("bb", "r4", "lr", "r9") FH("bb", "r5", "r7", "r12")                                \
    FL("tt", "r6", "lr", "r9") FH("tt", "r8", "r7", "r12")
#define QMCU_DW_ROW_S1(i, EXT, FL0, FH0, FL, FH)                                          \
    QMCU_DW_W(i, 0) QMCU_DW_X(i, 0, EXT) QMCU_DW_P1(FL0, FH0)                             \
    QMCU_DW_X(i, 1, EXT) QMCU_DW_P2(FL0, FH0) QMCU_DW_W(i, 1) QMCU_DW_P1(FL, FH)           \
    QMCU_DW_X(i, 2, EXT) QMCU_DW_P2(FL, FH) QMCU_DW_W(i, 2) QMCU_DW_P1(FL, FH)             \
    QMCU_DW_X(i, 3, EXT) QMCU_DW_P2(FL, FH)
/* Stride 2 (dx = 2 x_pix): column 2 is the first pixel's tap 2 and the second one's tap 0,
 * so a row loads five words instead of six (weights of taps 0, 2, 1 in that order). */
#define QMCU_DW_ROW_S2(i, EXT, FL0, FH0, FL, FH)                                          \
    QMCU_DW_W(i, 0) QMCU_DW_X(i, 0, EXT) QMCU_DW_P1(FL0, FH0)                             \
    QMCU_DW_X(i, 2, EXT) QMCU_DW_P2(FL0, FH0) QMCU_DW_W(i, 2) QMCU_DW_P1(FL, FH)           \
    QMCU_DW_X(i, 4, EXT) QMCU_DW_P2(FL, FH) QMCU_DW_W(i, 1)                               \
    QMCU_DW_X(i, 1, EXT) QMCU_DW_P1(FL, FH) QMCU_DW_X(i, 3, EXT) QMCU_DW_P2(FL, FH)
#define QMCU_DW_ROW_ANY(i, EXT, FL0, FH0, FL, FH)                                         \
    QMCU_DW_TAP(i, 0, EXT, FL0, FH0) QMCU_DW_TAP(i, 1, EXT, FL, FH) QMCU_DW_TAP(i, 2, EXT, FL, FH)
/* The three rows (ROW = QMCU_DW_ROW_ANY / _S1 / _S2), every address an immediate offset;
 * _ADV, for rows too long for that: each row at offset 0, both base pointers advanced by one
 * row after the first two (two ADDW per row). */
#define QMCU_DW_ROWS3(ROW, EXT, FL0, FH0)                                                 \
    ROW(0, EXT, FL0, FH0, QMCU_DW_ACC, QMCU_DW_ACC)                                       \
    ROW(1, EXT, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC)                       \
    ROW(2, EXT, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC)
#define QMCU_DW_NEXT_ROW "addw r11, r11, #%c[xr]\n\t" "addw r10, r10, #(3*%c[cw])\n\t"
#define QMCU_DW_ROWS3_ADV(ROW, EXT, FL0, FH0)                                             \
    ROW(0, EXT, FL0, FH0, QMCU_DW_ACC, QMCU_DW_ACC) QMCU_DW_NEXT_ROW                      \
    ROW(0, EXT, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC) QMCU_DW_NEXT_ROW      \
    ROW(0, EXT, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC, QMCU_DW_ACC)
#define QMCU_DW_ROWS_ANY(EXT, FL0, FH0) QMCU_DW_ROWS3(QMCU_DW_ROW_ANY, EXT, FL0, FH0)
#define QMCU_DW_ROWS_S1(EXT, FL0, FH0) QMCU_DW_ROWS3(QMCU_DW_ROW_S1, EXT, FL0, FH0)
#define QMCU_DW_ROWS_S2(EXT, FL0, FH0) QMCU_DW_ROWS3(QMCU_DW_ROW_S2, EXT, FL0, FH0)
#define QMCU_DW_ROWS_ANY_ADV(EXT, FL0, FH0) QMCU_DW_ROWS3_ADV(QMCU_DW_ROW_ANY, EXT, FL0, FH0)
#define QMCU_DW_ROWS_S1_ADV(EXT, FL0, FH0) QMCU_DW_ROWS3_ADV(QMCU_DW_ROW_S1, EXT, FL0, FH0)
#define QMCU_DW_ROWS_S2_ADV(EXT, FL0, FH0) QMCU_DW_ROWS3_ADV(QMCU_DW_ROW_S2, EXT, FL0, FH0)
/* EMIT(FROM, rows) for the rows that fit the strides (constants: one is compiled) */
#define QMCU_DW_PICK_ROWS(EMIT, FROM)                                                     \
    do {                                                                                  \
        const int32_t adv_ = !QMCU_DW_OFFSETS_FIT(x_row, x_pix, dx, cw);                  \
        if (!adv_ && dx == x_pix) { EMIT(FROM, ROWS_S1); }                                \
        else if (!adv_ && dx == 2 * x_pix) { EMIT(FROM, ROWS_S2); }                       \
        else if (!adv_) { EMIT(FROM, ROWS_ANY); }                                         \
        else if (dx == x_pix) { EMIT(FROM, ROWS_S1_ADV); }                                \
        else if (dx == 2 * x_pix) { EMIT(FROM, ROWS_S2_ADV); }                            \
        else { EMIT(FROM, ROWS_ANY_ADV); }                                                \
    } while (0)
/* every tap's offset within LDR's immediate from the block's base pointers */
#define QMCU_DW_OFFSETS_FIT(x_row, x_pix, dx, cw)                                         \
    (2 * (x_row) + 2 * (x_pix) + (dx) < 4096 && 8 * (cw) < 4096)

#define QMCU_DW8_FROM_ACC                                                                 \
    "ldr r7, [r12, #8]\n\t"                                                                \
    "push {r7}\n\t"                                                                        \
    "ldm r7, {r0-r3}\n\t"                                                                  \
    "ldrd r4, r5, [r7, #%c[ap]]\n\t"                                                       \
    "ldrd r6, r8, [r7, #(%c[ap]+8)]\n\t"
#define QMCU_DW8_FROM_BIAS                                                                \
    "ldrd r7, r9, [r12, #8]\n\t"                                                           \
    "push {r7}\n\t"                                                                        \
    "ldm r9, {r0-r3}\n\t"                                                                  \
    "mov r4, r0\n\t"                                                                       \
    "mov r5, r1\n\t"                                                                       \
    "mov r6, r2\n\t"                                                                       \
    "mov r8, r3\n\t"
#define QMCU_DW8_ASM_BODY(INIT, RW)                                                       \
        "push {r7, r9, r10, r11}\n\t"                                                      \
        "ldrd r11, r10, [r12]\n\t"                                                         \
        INIT                                                                              \
        QMCU_DW_##RW(QMCU_DW_EXT8, QMCU_DW_ACC, QMCU_DW_ACC)                               \
        "pop {r7}\n\t"                                                                     \
        "stm r7, {r0-r3}\n\t"                                                              \
        "strd r4, r5, [r7, #%c[ap]]\n\t"                                                   \
        "strd r6, r8, [r7, #(%c[ap]+8)]\n\t"                                               \
        "pop {r7, r9, r10, r11}\n\t"

#define QMCU_DW8_STMT(BODY)                                                               \
    __asm__ volatile(BODY                                                                 \
        : "+r"(r12_)                                                                      \
        : [xr] "i"(x_row), [xs] "i"(x_pix), [dx] "i"(dx), [cw] "i"(cw),                   \
          [ap] "i"(4 * acc_pix), "m"(args)                                                \
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r8", "lr", "cc", "memory")

#define QMCU_DW8_EMIT(INIT, RW) QMCU_DW8_STMT(QMCU_DW8_ASM_BODY(INIT, RW))

QMCU_INLINE void dw8_3x3_x2(const uint8_t *xg, const int8_t *wg, int32_t *ap,
                            const int32_t *init, int32_t x_row, int32_t x_pix, int32_t dx,
                            int32_t cw, int32_t acc_pix) {
    const void *args[4] = {xg, wg, ap, init};
    register const void **r12_ __asm__("r12") = args;
    if (init)
        QMCU_DW_PICK_ROWS(QMCU_DW8_EMIT, QMCU_DW8_FROM_BIAS);
    else
        QMCU_DW_PICK_ROWS(QMCU_DW8_EMIT, QMCU_DW8_FROM_ACC);
}

/* The same products at 4 and 2 bits (lane pair m of each activation word, m even): the lane
 * masks are AND immediates (no mask register is left), so the lanes stay where they lie in
 * the word, shifted left by SL (channels c0, c0+H) and SH (c0+1, c0+H+1) bits; UXTB16 ROR #8
 * first brings the upper byte of each halfword down. Every product of a shifted sum carries
 * the factor 2^S (< 2^7, so a lane stays below 2^15), which an ASR removes exactly; those
 * sums start from zero (SMUL on the first tap) and their start value is added after. Per tap
 * as at 8 bits, one more instruction per pixel where the upper bytes are needed. */
#define QMCU_DWL_EXT(MH, ML) "and r7, lr, #" #MH "\n\t" "and lr, lr, #" #ML "\n\t"
#define QMCU_DWL_EXT_HI(MH, ML) "uxtb16 lr, lr, ror #8\n\t" QMCU_DWL_EXT(MH, ML)
/* FROM = BIAS: both pixels start from the bias (at r9); FROM = ACC: pixel 1 from acc at r9,
 * pixel 2 at r12. r7 = ap; r9 (and r12) kept on the stack across the taps. */
#define QMCU_DWL_ENTER(FROM)                                                              \
    "push {r7, r9, r10, r11}\n\t"                                                          \
    "ldrd r11, r10, [r12]\n\t"                                                             \
    "ldrd r7, r9, [r12, #8]\n\t"                                                           \
    QMCU_DWL_ENTER_##FROM
#define QMCU_DWL_ENTER_BIAS "push {r7, r9}\n\t"
#define QMCU_DWL_ENTER_ACC "ldr r12, [r12, #16]\n\t" "push {r7, r9, r12}\n\t"
#define QMCU_DWL_POP_BIAS "pop {r7, r9}\n\t"
#define QMCU_DWL_POP_ACC "pop {r7, r9, r12}\n\t"
#define QMCU_DWL_START_BIAS                                                               \
    "ldr r0, [r9]\n\t" "ldr r2, [r9, #%c[hb]]\n\t" "mov r4, r0\n\t" "mov r6, r2\n\t"
#define QMCU_DWL_START_ACC                                                                \
    "ldr r0, [r9]\n\t" "ldr r2, [r9, #%c[hb]]\n\t" "ldr r4, [r12]\n\t"                     \
    "ldr r6, [r12, #%c[hb]]\n\t"
/* ra (pixel 1) and rb (pixel 2): their start value (at off) plus their sum shifted back */
#define QMCU_DWL_ADD(r, base, off, S)                                                     \
    "ldr lr, [" base ", #(" off ")]\n\t" "add " r ", lr, " r ", asr #" #S "\n\t"
#define QMCU_DWL_ADDS_ACC(ra, rb, off, S)                                                 \
    QMCU_DWL_ADD(ra, "r9", off, S) QMCU_DWL_ADD(rb, "r12", off, S)
#define QMCU_DWL_ADDS_BIAS(ra, rb, off, S)                                                \
    QMCU_DWL_ADD(ra, "r9", off, S) "add " rb ", lr, " rb ", asr #" #S "\n\t"
#define QMCU_DWL_LEAVE                                                                    \
    "strd r0, r1, [r7]\n\t"                                                                \
    "strd r2, r3, [r7, #%c[hb]]\n\t"                                                       \
    "strd r4, r5, [r7, #%c[ap]]\n\t"                                                       \
    "strd r6, r8, [r7, #(%c[ap]+%c[hb])]\n\t"                                              \
    "pop {r7, r9, r10, r11}\n\t"
/* channels c0, c0+H start from their values, c0+1, c0+H+1 (shifted by SH) from zero */
#define QMCU_DWL_BODY_A(EXT, SH, FROM, RW)                                                \
    QMCU_DWL_ENTER(FROM) QMCU_DWL_START_##FROM                                            \
    QMCU_DW_##RW(EXT, QMCU_DW_ACC, QMCU_DW_MUL)                                           \
    QMCU_DWL_POP_##FROM                                                                   \
    QMCU_DWL_ADDS_##FROM("r1", "r5", "4", SH)                                             \
    QMCU_DWL_ADDS_##FROM("r3", "r8", "%c[hb]+4", SH) QMCU_DWL_LEAVE
/* all four channels shifted (by SL, SH) */
#define QMCU_DWL_BODY_B(EXT, SL, SH, FROM, RW)                                            \
    QMCU_DWL_ENTER(FROM)                                                                  \
    QMCU_DW_##RW(EXT, QMCU_DW_MUL, QMCU_DW_MUL)                                           \
    QMCU_DWL_POP_##FROM                                                                   \
    QMCU_DWL_ADDS_##FROM("r0", "r4", "0", SL) QMCU_DWL_ADDS_##FROM("r2", "r6", "%c[hb]", SL) \
    QMCU_DWL_ADDS_##FROM("r1", "r5", "4", SH)                                             \
    QMCU_DWL_ADDS_##FROM("r3", "r8", "%c[hb]+4", SH) QMCU_DWL_LEAVE
#define QMCU_DWL_ASM(BODY)                                                                \
    __asm__ volatile(BODY                                                                 \
        : "+r"(r12_)                                                                      \
        : [xr] "i"(x_row), [xs] "i"(x_pix), [dx] "i"(dx), [cw] "i"(cw),                   \
          [ap] "i"(4 * acc_pix), [hb] "i"(4 * H), "m"(args)                               \
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r8", "lr", "cc", "memory")
/* the unpacking of lane pair m at 4 / 2 bits */
#define QMCU_DWL_LANE_PAIRS(FROM, RW)                                                       \
    if (ib == 4 && m == 0)                                                                \
        QMCU_DWL_ASM(QMCU_DWL_BODY_A(QMCU_DWL_EXT(0x00F000F0, 0x000F000F), 4, FROM, RW));     \
    else if (ib == 4)                                                                     \
        QMCU_DWL_ASM(QMCU_DWL_BODY_A(QMCU_DWL_EXT_HI(0x00F000F0, 0x000F000F), 4, FROM, RW));  \
    else if (m == 0)                                                                      \
        QMCU_DWL_ASM(QMCU_DWL_BODY_A(QMCU_DWL_EXT(0x000C000C, 0x00030003), 2, FROM, RW));     \
    else if (m == 4)                                                                      \
        QMCU_DWL_ASM(QMCU_DWL_BODY_A(QMCU_DWL_EXT_HI(0x000C000C, 0x00030003), 2, FROM, RW));  \
    else if (m == 2)                                                                      \
        QMCU_DWL_ASM(QMCU_DWL_BODY_B(QMCU_DWL_EXT(0x00C000C0, 0x00300030), 4, 6, FROM, RW));  \
    else                                                                                  \
        QMCU_DWL_ASM(QMCU_DWL_BODY_B(QMCU_DWL_EXT_HI(0x00C000C0, 0x00300030), 4, 6, FROM, RW))

/* init: the bias of the channels (both pixels start from it) or 0 (they start from acc) */
QMCU_INLINE void dwl_3x3_x2(const uint8_t *xg, const int8_t *wg, int32_t *ap,
                            const int32_t *init, int32_t x_row, int32_t x_pix, int32_t dx,
                            int32_t cw, int32_t acc_pix, int32_t ib, int32_t m) {
    const int32_t H = 16 / ib;
    const void *args[5] = {xg, wg, ap, init ? init : ap, ap + acc_pix};
    register const void **r12_ __asm__("r12") = args;
    if (init)
        QMCU_DW_PICK_ROWS(QMCU_DWL_LANE_PAIRS, BIAS);
    else
        QMCU_DW_PICK_ROWS(QMCU_DWL_LANE_PAIRS, ACC);
}

/* Whether dw_set's products can take dw8_3x3_x2: 3×3, 8 bits, two pixels, four channels;
 * strides known at compile time and every offset within one row within the immediates of LDR
 * and ADDW (12 bits) and LDRD/STRD (8 bits × 4). */
#define QMCU_DW8_ASM(kh, kw, ib, npx, whole, x_row, x_pix, dx, cw, acc_pix)               \
    ((kh) == 3 && (kw) == 3 && (ib) == 8 && (npx) == 2 && (whole) &&                     \
     QMCU_DW_ASM_OFFSETS(x_row, x_pix, dx, cw, acc_pix, 2))
/* As QMCU_DW8_ASM for dwl_3x3_x2 (4 and 2 bits; STRD at acc_pix + H channels). */
#define QMCU_DWL_ASM_OK(kh, kw, ib, npx, whole, x_row, x_pix, dx, cw, acc_pix)            \
    ((kh) == 3 && (kw) == 3 && ((ib) == 4 || (ib) == 2) && (npx) == 2 && (whole) &&       \
     QMCU_DW_ASM_OFFSETS(x_row, x_pix, dx, cw, acc_pix, 16 / (ib)))
#define QMCU_DW_ASM_OFFSETS(x_row, x_pix, dx, cw, acc_pix, H)                             \
    (__builtin_constant_p(x_row) && __builtin_constant_p(x_pix) &&                        \
     __builtin_constant_p(dx) && __builtin_constant_p(cw) &&                              \
     __builtin_constant_p(acc_pix) && (x_row) >= 0 && (x_pix) >= 0 && (dx) >= 0 &&         \
     2 * (x_pix) + (dx) < 4096 && (x_row) < 4096 && 3 * (cw) < 4096 && (acc_pix) >= 0 &&  \
     4 * (acc_pix) + 4 * (H) <= 1020)

/* Depthwise channels c0, c0+1, c0+H, c0+H+1 (H = 16/ib) of npx pixels, those below c: SXTB16
 * of one weight word gives (w_c0, w_c0+H), (w_c0+1, w_c0+1+H), one activation word (n bytes)
 * the matching lane pairs; SMLAxy accumulates each lane. */
QMCU_INLINE void dw_set(int32_t *acc, int32_t acc_pix, const uint8_t *xg, int32_t x_row,
                        int32_t x_pix, int32_t dx, const int8_t *wg, int32_t cw, int32_t c0,
                        int32_t m, int32_t c, int32_t n, int32_t npx, int32_t kh, int32_t kw,
                        int32_t ib, uint32_t lm, int32_t whole, uint8_t *y, int32_t y_pix,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        const qmcu_q *q, int32_t ob, int32_t at_pair, int32_t biased) {
    /* whole: all four channels exist (a literal, so the tests below fold away); biased: the
     * sums start from the bias (fused, acc zero), else from acc */
    const int32_t H = 16 / ib, lo1 = whole || c0 + 1 < c, hi = whole || c0 + H < c;
    const int32_t hi1 = whole || c0 + H + 1 < c;
    int32_t *ap = acc + c0, *bp = acc + acc_pix + c0;
    if (QMCU_DW8_ASM(kh, kw, ib, npx, whole, x_row, x_pix, dx, cw, acc_pix)) {
        dw8_3x3_x2(xg, wg, ap, biased ? bias + c0 : 0, x_row, x_pix, dx, cw, acc_pix);
        if (at_pair) {
            const int32_t *c = bias + c0;
            rq_pair(y, y_pix, c0, ap[0], ap[1], bp[0], bp[1], npx, c, mult + c0, shift + c0, q,
                    ob);
            rq_pair(y, y_pix, c0 + H, ap[2], ap[3], bp[2], bp[3], npx, c + H, mult + c0 + H,
                    shift + c0 + H, q, ob);
        }
        return;
    }
    if (QMCU_DWL_ASM_OK(kh, kw, ib, npx, whole, x_row, x_pix, dx, cw, acc_pix)) {
        dwl_3x3_x2(xg, wg, ap, biased ? bias + c0 : 0, x_row, x_pix, dx, cw, acc_pix, ib, m);
        if (at_pair) {
            rq_pair(y, y_pix, c0, ap[0], ap[1], bp[0], bp[1], npx, bias + c0, mult + c0,
                    shift + c0, q, ob);
            rq_pair(y, y_pix, c0 + H, ap[H], ap[H + 1], bp[H], bp[H + 1], npx, bias + c0 + H,
                    mult + c0 + H, shift + c0 + H, q, ob);
        }
        return;
    }
    const int32_t *ip = biased ? bias + c0 : ap;
    int32_t a0 = ip[0], a1 = lo1 ? ip[1] : 0, a2 = hi ? ip[H] : 0, a3 = hi1 ? ip[H + 1] : 0;
    int32_t b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    if (npx == 2 && biased) {
        b0 = a0;
        b1 = a1;
        b2 = a2;
        b3 = a3;
    } else if (npx == 2) {
        b0 = bp[0];
        b1 = lo1 ? bp[1] : 0;
        b2 = hi ? bp[H] : 0;
        b3 = hi1 ? bp[H + 1] : 0;
    }
    for (int32_t i = 0; i < kh; i++)
#pragma GCC unroll 8
        for (int32_t j = 0; j < kw; j++) {
            const uint32_t wv = ld32(wg + (i * kw + j) * cw);
            const int32_t wl = __sxtb16(wv), wh = sxtb16_ror8(wv);
            const uint8_t *xp = xg + i * x_row + j * x_pix;
            uint32_t v = ldpart(xp, n);
            int32_t xl = xlane(v, m, ib, lm), xh = xlane(v, m + 1, ib, lm);
            a0 = __smlabb(xl, wl, a0);
            if (lo1) a1 = __smlabb(xh, wh, a1);
            if (hi) a2 = __smlatt(xl, wl, a2);
            if (hi1) a3 = __smlatt(xh, wh, a3);
            if (npx == 2) {
                v = ldpart(xp + dx, n);
                xl = xlane(v, m, ib, lm);
                xh = xlane(v, m + 1, ib, lm);
                b0 = __smlabb(xl, wl, b0);
                if (lo1) b1 = __smlabb(xh, wh, b1);
                if (hi) b2 = __smlatt(xl, wl, b2);
                if (hi1) b3 = __smlatt(xh, wh, b3);
            }
        }
    if (at_pair) {       /* all four channels exist: pairs (c0, c0+1), (c0+H, c0+H+1) */
        rq_pair(y, y_pix, c0, a0, a1, b0, b1, npx, bias + c0, mult + c0, shift + c0, q, ob);
        rq_pair(y, y_pix, c0 + H, a2, a3, b2, b3, npx, bias + c0 + H, mult + c0 + H,
                shift + c0 + H, q, ob);
        return;
    }
    ap[0] = a0;
    if (lo1) ap[1] = a1;
    if (hi) ap[H] = a2;
    if (hi1) ap[H + 1] = a3;
    if (npx == 2) {
        bp[0] = b0;
        if (lo1) bp[1] = b1;
        if (hi) bp[H] = b2;
        if (hi1) bp[H + 1] = b3;
    }
}

/* Whole groups of G = 32/ib channels four at a time; at 4/2 bits the partial last group the
 * same way (lanes beyond the last channel left out), at 8 bits the last channels one by one. */
QMCU_INLINE void dw_dsp_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                             const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift,
                             const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                             int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    const int32_t G = 32 / ib, H = G / 2, cw = wchannels(c, ib, ib < 8), full = c / G * G;
    const int32_t dx = sw * x_pix;
    const int32_t at_pair = QMCU_RQ_AT_PAIR && fuse && full == c;
    /* fused (the generated kernel zeroes acc right before the call), where dw8_3x3_x2 runs:
     * the sums start from the bias, and requant_biased needs none (the compiled loops keep
     * starting from acc: the bias pointer would cost them a register) */
    const int32_t asm8 = QMCU_DW8_ASM(kh, kw, ib, npx, 1, x_row, x_pix, dx, cw, acc_pix);
    const int32_t asml = QMCU_DWL_ASM_OK(kh, kw, ib, npx, 1, x_row, x_pix, dx, cw, acc_pix);
    const int32_t biased = fuse && !at_pair && (asm8 || asml);
    uint32_t lm = lane_mask(ib);
    QMCU_OPAQUE(lm);
    if (asm8) {
        /* gcc counts the assembly block as one instruction and would unroll this loop 8
         * times: 8 copies of ~150 instructions (~4.5 KB per kernel) to save a compare and
         * a branch per group */
#pragma GCC unroll 1
        for (int32_t g = 0; g < full; g += 4)       /* G = 4 at 8 bits */
            dw_set(acc, acc_pix, x + g, x_row, x_pix, dx, w + g, cw, g, 0, c, 4, npx,
                   kh, kw, ib, lm, 1, y, y_pix, bias, mult, shift, q, ob, at_pair, biased);
    } else if (asml) {
        /* one copy of the assembly per lane pair m, as above */
#pragma GCC unroll 1
        for (int32_t g = 0; g < full; g += G)
#pragma GCC unroll 8
            for (int32_t m = 0; m < H; m += 2)
                dw_set(acc, acc_pix, x + g / G * 4, x_row, x_pix, dx, w + g + 2 * m, cw, g + m,
                       m, c, 4, npx, kh, kw, ib, lm, 1, y, y_pix, bias, mult, shift, q, ob,
                       at_pair, biased);
    } else {
        for (int32_t g = 0; g < full; g += G)
#pragma GCC unroll 8
            for (int32_t m = 0; m < H; m += 2)
                dw_set(acc, acc_pix, x + g / G * 4, x_row, x_pix, dx, w + g + 2 * m, cw, g + m,
                       m, c, 4, npx, kh, kw, ib, lm, 1, y, y_pix, bias, mult, shift, q, ob,
                       at_pair, biased);
    }
    if (ib < 8 && full < c) {
        const int32_t tb = ((c - full) * ib + 7) / 8, mend = c - full < H ? c - full : H;
#pragma GCC unroll 8
        for (int32_t m = 0; m < mend; m += 2)
            dw_set(acc, acc_pix, x + full / G * 4, x_row, x_pix, dx, w + full + 2 * m, cw,
                   full + m, m, c, tb, npx, kh, kw, ib, lm, 0, 0, 0, bias, 0, 0, 0, 8, 0,
                   biased);
    } else if (full < c) {
        if (biased) acc_from_bias(acc, acc_pix, npx, full, c, bias);
        dw_ref(0, 0, acc, acc_pix, x, x_row, x_pix, w, 0, 0, 0, 0, npx, kh, kw, c, sw, ib, 8, 0,
               full);
    }
    if (fuse && !at_pair) {     /* fuse tested first: gcc then drops both calls from _acc */
        if (biased)
            requant_biased(y, y_pix, acc, acc_pix, npx, c, mult, shift, q, ob);
        else
            requant_out(y, y_pix, acc, acc_pix, npx, c, bias, mult, shift, q, ob);
    }
}

/* As conv_dsp / conv_dsp_tail. */
QMCU_LOOP void dw_dsp(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                      const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift,
                      const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                      int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    dw_dsp_body(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, npx, kh, kw,
                c, sw, ib, ob, fuse);
}

QMCU_LOOP void dw_dsp_tail(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                           const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                           const int32_t *bias, const int32_t *mult, const int32_t *shift,
                           const qmcu_q *q, int32_t kh, int32_t kw, int32_t c, int32_t sw,
                           int32_t ib, int32_t ob, int32_t fuse) {
    dw_dsp_body(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, 1, kh, kw, c,
                sw, ib, ob, fuse);
}
#endif
#endif
