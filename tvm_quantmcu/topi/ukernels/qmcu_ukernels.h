/* Micro-kernels called by the TVM-generated kernels: the inner products of one or two output
 * pixels over packed activations, fused with requantization and packing of the outputs. Each
 * has an ARMv7E-M DSP implementation (qmcu_ukernels_dsp.h: SMLAD, SXTB16, SMLAxy, SMMUL, USAT,
 * UQSUB8) selected by __ARM_FEATURE_DSP, a Helium one (qmcu_ukernels_mve.h: VMLADAVA, VMULH,
 * VRSHL) selected before it by __ARM_FEATURE_MVE, and a portable C implementation with the
 * same result.
 *
 * Header-only: every generated kernel file includes it, and the shape arguments TVM passes are
 * literals, so the compiler specialises each call. Pointer arguments are void* because that is
 * how TVM's C codegen declares extern calls.
 *
 * Arguments common to all kernels (npx output pixels, the second one sw input columns right):
 *   x, x_row, x_pix   packed input window of the first pixel (ib bits per value): rows x_row
 *                     bytes apart, pixels x_pix bytes apart
 *   w                 weights; along the channel axis in lane order (compute.lane_pos, cw = c
 *                     rounded up to 32/ib) for 4/2-bit inputs read a word at a time, else in
 *                     channel order (cw = c)
 *   acc, acc_pix      int32 accumulators to add to (pixel stride acc_pix)
 *   y, y_pix          packed output (ob bits) of the first pixel, next pixel y_pix bytes on
 *   bias, mult, shift per output channel; q = {zp_out, lo, hi} (qp + 1 of the kernel ABI)
 *
 * qmcu_conv (conv2d, pointwise, dense; OHWI weights (oc, kh, kw, cw)):
 *   y[p, o] = out(acc[p, o] + sum_{i,j,ch} x[i, p*sw + j, ch] * w[o, i, j, ch])
 * qmcu_dw (depthwise; HWC weights (kh, kw, cw)):
 *   y[p, ch] = out(acc[p, ch] + sum_{i,j} x[i, p*sw + j, ch] * w[i, j, ch])
 * with out(a) = clamp(floor(((a + bias)*M + 2^(n-1)) / 2^n) + zp_out, lo, hi), packed.
 * qmcu_conv_acc / qmcu_dw_acc: the same sums added into acc (no output stage).
 */
#ifndef QMCU_UKERNELS_H
#define QMCU_UKERNELS_H
#include <stdint.h>
#include <string.h>

#define QMCU_INLINE static inline __attribute__((always_inline))
/* The DSP loops are separate functions: each then has all registers to itself instead of
 * sharing them with the generated loop nest (inlined, they spill). Each kernel file calls
 * them from one place with literal shapes, so gcc propagates the constants (-fipa-cp). */
#define QMCU_LOOP static __attribute__((noinline))

#if defined(__ARM_FEATURE_DSP) && !defined(QMCU_PORTABLE)
#define QMCU_DSP 1
#include <arm_acle.h>
#endif

QMCU_INLINE uint32_t ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);   /* one LDR on Cortex-M (unaligned access allowed) */
    return v;
}

/* The first n (1..4) bytes at p as a little-endian word, the rest zero. */
QMCU_INLINE uint32_t ldpart(const uint8_t *p, int32_t n) {
    if (n == 4) return ld32(p);
    uint16_t h = 0;
    if (n >= 2) memcpy(&h, p, 2);
    return n == 1 ? p[0] : n == 2 ? h : (uint32_t)h | (uint32_t)p[2] << 16;
}

/* SMLAD: acc + x.lo16 * w.lo16 + x.hi16 * w.hi16 (signed halves, wrapping), portable too. */
QMCU_INLINE int32_t qmcu_smlad(uint32_t x, uint32_t w, int32_t acc) {
#ifdef QMCU_DSP
    return __smlad(x, w, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)x * (int16_t)w)
                     + (uint32_t)((int32_t)(int16_t)(x >> 16) * (int16_t)(w >> 16)));
#endif
}

/* ---- scalar semantics (portable path, tails) ------------------------------------------- */

/* Value of channel ch of a packed pixel. */
QMCU_INLINE int32_t xval(const uint8_t *px, int32_t ch, int32_t bits) {
    if (bits == 8) return px[ch];
    const int32_t per = 8 / bits;
    return (px[ch / per] >> ((ch % per) * bits)) & ((1 << bits) - 1);
}

/* Position of channel ch's weight along the channel axis (compute.weight_pos). */
QMCU_INLINE int32_t wpos(int32_t ch, int32_t bits, int32_t lane) {
    if (!lane) return ch;
    const int32_t g = 32 / bits, h = g / 2, m = ch % h;
    return ch / g * g + m / 2 * 4 + m % 2 + ch % g / h * 2;
}

/* Channel extent of the weights (compute.weight_channels). */
QMCU_INLINE int32_t wchannels(int32_t c, int32_t bits, int32_t lane) {
    const int32_t g = 32 / bits;
    return lane ? (c + g - 1) / g * g : c;
}

/* Mask of one value in each 16-bit lane of a lane pair of 4/2-bit activations. */
QMCU_INLINE uint32_t lane_mask(int32_t bits) {
    return bits == 4 ? 0x000F000Fu : 0x00030003u;
}

/* conv2d with fewer channels than one activation word: gathered window (compute.gathers). */
QMCU_INLINE int32_t conv_gathers(int32_t c, int32_t ib) {
    return c < 32 / ib;
}

/* floor((a*M + 2^(n-1)) / 2^n) + zp, clamped to [lo, hi] (64-bit: exact for every n). */
QMCU_INLINE int32_t requant_ref(int32_t a, int32_t M, int32_t n, int32_t zp, int32_t lo,
                                int32_t hi) {
    int64_t v = (((int64_t)a * M + ((int64_t)1 << (n - 1))) >> n) + zp;
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* Store value v of channel ch into a packed output pixel; sub-byte lanes are written in
 * increasing channel order (the first lane of a byte overwrites it). */
QMCU_INLINE void store_one(uint8_t *px, int32_t ch, int32_t v, int32_t bits) {
    if (bits == 8) {
        px[ch] = (uint8_t)v;
        return;
    }
    const int32_t per = 8 / bits, sh = (ch % per) * bits;
    px[ch / per] = (uint8_t)(sh ? (px[ch / per] | (v << sh)) : v);
}

typedef struct {
    int32_t zp, lo, hi;
    uint32_t lo4, hi4;   /* lo, hi in every byte */
    int32_t z1;          /* 2*zp + 1 (rq_fast) */
} qmcu_q;

QMCU_INLINE qmcu_q out_params(const int32_t *q) {
    qmcu_q r = {q[0], q[1], q[2], (uint32_t)q[1] * 0x01010101u, (uint32_t)q[2] * 0x01010101u,
                2 * q[0] + 1};
    return r;
}

QMCU_INLINE void out_one(uint8_t *px, int32_t ch, int32_t a, const int32_t *bias,
                         const int32_t *mult, const int32_t *shift, const qmcu_q *q,
                         int32_t bits) {
    store_one(px, ch, requant_ref(a + bias[ch], mult[ch], shift[ch], q->zp, q->lo, q->hi),
              bits);
}

/* Portable conv2d: output channels o0.. of npx pixels; writes y when fuse, else acc. */
QMCU_INLINE void conv_ref(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                          const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                          const int32_t *bias, const int32_t *mult, const int32_t *shift,
                          const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                          int32_t oc, int32_t sw, int32_t ib, int32_t ob, int32_t fuse,
                          int32_t o0) {
    const int32_t lane = ib < 8 && !conv_gathers(c, ib);
    const int32_t cw = wchannels(c, ib, lane), K = kh * kw * cw;
    for (int32_t p = 0; p < npx; p++)
        for (int32_t o = o0; o < oc; o++) {
            int32_t a = acc[p * acc_pix + o];
            for (int32_t i = 0; i < kh; i++)
                for (int32_t j = 0; j < kw; j++) {
                    const uint8_t *px = x + i * x_row + (p * sw + j) * x_pix;
                    const int8_t *wt = w + o * K + (i * kw + j) * cw;
                    for (int32_t ch = 0; ch < c; ch++)
                        a += xval(px, ch, ib) * wt[wpos(ch, ib, lane)];
                }
            if (fuse)
                out_one(y + p * y_pix, o, a, bias, mult, shift, q, ob);
            else
                acc[p * acc_pix + o] = a;
        }
}

/* Portable depthwise: channels c0.. of npx pixels. */
QMCU_INLINE void dw_ref(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                        const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                        int32_t sw, int32_t ib, int32_t ob, int32_t fuse, int32_t c0) {
    const int32_t lane = ib < 8, cw = wchannels(c, ib, lane);
    for (int32_t p = 0; p < npx; p++)
        for (int32_t ch = c0; ch < c; ch++) {
            int32_t a = acc[p * acc_pix + ch];
            for (int32_t i = 0; i < kh; i++)
                for (int32_t j = 0; j < kw; j++)
                    a += xval(x + i * x_row + (p * sw + j) * x_pix, ch, ib) *
                         w[(i * kw + j) * cw + wpos(ch, ib, lane)];
            if (fuse)
                out_one(y + p * y_pix, ch, a, bias, mult, shift, q, ob);
            else
                acc[p * acc_pix + ch] = a;
        }
}

/* ---- DSP implementations (ARMv7E-M) -------------------------------------------------- */
#include "qmcu_ukernels_dsp.h"
/* ---- Helium (MVE) implementations (Armv8.1-M) ---------------------------------------- */
#include "qmcu_ukernels_mve.h"

/* The output stage of kernels that leave all their sums in acc (the packed and narrow
 * low-bit-weight kernels): requant_out on ARMv7E-M, else channel by channel. */
QMCU_INLINE void out_pixels(uint8_t *y, int32_t y_pix, const int32_t *acc, int32_t acc_pix,
                            int32_t npx, int32_t oc, const int32_t *bias, const int32_t *mult,
                            const int32_t *shift, const qmcu_q *q, int32_t ob) {
#ifdef QMCU_DSP
    requant_out(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, ob);
#else
    for (int32_t p = 0; p < npx; p++)
        for (int32_t o = 0; o < oc; o++)
            out_one(y + p * y_pix, o, acc[p * acc_pix + o], bias, mult, shift, q, ob);
#endif
}

/* ---- entry points (called by the generated kernels) --------------------------------------- */

#ifdef QMCU_DSP
/* npx pixels as pairs (conv_dsp with npx = 2), then a single last one: 1 or 2 pixels in one
 * call, or a whole output row (knob pixels = "row"). y_at: the output of pixel p_. */
#define QMCU_DSP_PIXELS(kernel, tail, y_at, acc, x, first_args, last_args)                  \
    do {                                                                                  \
        int32_t p_ = 0;                                                                   \
        for (; p_ + 1 < npx; p_ += 2)                                                     \
            kernel(y_at, y_pix, (int32_t *)(acc) + p_ * acc_pix, acc_pix,                 \
                   (const uint8_t *)(x) + p_ * sw * x_pix, x_row, x_pix, first_args);     \
        if (p_ < npx)                                                                     \
            tail(y_at, y_pix, (int32_t *)(acc) + p_ * acc_pix, acc_pix,                   \
                 (const uint8_t *)(x) + p_ * sw * x_pix, x_row, x_pix, last_args);        \
    } while (0)
#define QMCU_ARGS(...) __VA_ARGS__
#endif

QMCU_INLINE int32_t qmcu_conv(void *y, int32_t y_pix, void *acc, int32_t acc_pix, void *x,
                              int32_t x_row, int32_t x_pix, void *w, void *bias, void *mult,
                              void *shift, void *q, int32_t npx, int32_t kh, int32_t kw,
                              int32_t c, int32_t oc, int32_t sw, int32_t ib, int32_t ob) {
    const qmcu_q qo = out_params((const int32_t *)q);
#if defined(QMCU_MVE)
    conv_mve((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
             (const int8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
             (const int32_t *)shift, &qo, npx, kh, kw, c, oc, sw, ib, ob, 1);
#elif defined(QMCU_DSP)
    const int8_t *wt = (const int8_t *)w;
    const int32_t *b = (const int32_t *)bias, *m = (const int32_t *)mult;
    const int32_t *n = (const int32_t *)shift;
    if (QMCU_RQ_AT_PAIR && oc % 2 == 0) {
        QMCU_DSP_PIXELS(conv_dsp, conv_dsp_tail, (uint8_t *)y + p_ * y_pix, acc, x,
                        QMCU_ARGS(wt, b, m, n, &qo, 2, kh, kw, c, oc, sw, ib, ob, 1),
                        QMCU_ARGS(wt, b, m, n, &qo, kh, kw, c, oc, sw, ib, ob, 1));
    } else {
        /* the products of all pixels, then their requantization in one call: the product
         * loops then keep no output-stage pointer live */
        QMCU_DSP_PIXELS(conv_dsp, conv_dsp_tail, (uint8_t *)0, acc, x,
                        QMCU_ARGS(wt, 0, 0, 0, 0, 2, kh, kw, c, oc, sw, ib, 8, 0),
                        QMCU_ARGS(wt, 0, 0, 0, 0, kh, kw, c, oc, sw, ib, 8, 0));
        requant_out((uint8_t *)y, y_pix, (const int32_t *)acc, acc_pix, npx, oc, b, m, n, &qo,
                    ob);
    }
#else
    conv_ref((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
             (const int8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
             (const int32_t *)shift, &qo, npx, kh, kw, c, oc, sw, ib, ob, 1, 0);
#endif
    return 0;
}

QMCU_INLINE int32_t qmcu_conv_acc(void *acc, int32_t acc_pix, void *x, int32_t x_row,
                                  int32_t x_pix, void *w, int32_t npx, int32_t kh, int32_t kw,
                                  int32_t c, int32_t oc, int32_t sw, int32_t ib) {
#if defined(QMCU_MVE)
    conv_mve(0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
             (const int8_t *)w, 0, 0, 0, 0, npx, kh, kw, c, oc, sw, ib, 8, 0);
#elif defined(QMCU_DSP)
    const int8_t *wt = (const int8_t *)w;
    const int32_t y_pix = 0;
    QMCU_DSP_PIXELS(conv_dsp, conv_dsp_tail, (uint8_t *)0, acc, x,
                    QMCU_ARGS(wt, 0, 0, 0, 0, 2, kh, kw, c, oc, sw, ib, 8, 0),
                    QMCU_ARGS(wt, 0, 0, 0, 0, kh, kw, c, oc, sw, ib, 8, 0));
#else
    conv_ref(0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
             (const int8_t *)w, 0, 0, 0, 0, npx, kh, kw, c, oc, sw, ib, 8, 0, 0);
#endif
    return 0;
}

QMCU_INLINE int32_t qmcu_dw(void *y, int32_t y_pix, void *acc, int32_t acc_pix, void *x,
                            int32_t x_row, int32_t x_pix, void *w, void *bias, void *mult,
                            void *shift, void *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                            int32_t oc, int32_t sw, int32_t ib, int32_t ob) {
    const qmcu_q qo = out_params((const int32_t *)q);
    (void)oc;
#if defined(QMCU_MVE)
    dw_mve((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
           (const int8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
           (const int32_t *)shift, &qo, npx, kh, kw, c, sw, ib, ob, 1);
#elif defined(QMCU_DSP)
    const int8_t *wt = (const int8_t *)w;
    const int32_t *b = (const int32_t *)bias, *m = (const int32_t *)mult;
    const int32_t *n = (const int32_t *)shift;
    QMCU_DSP_PIXELS(dw_dsp, dw_dsp_tail, (uint8_t *)y + p_ * y_pix, acc, x,
                    QMCU_ARGS(wt, b, m, n, &qo, 2, kh, kw, c, sw, ib, ob, 1),
                    QMCU_ARGS(wt, b, m, n, &qo, kh, kw, c, sw, ib, ob, 1));
#else
    dw_ref((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
           (const int8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
           (const int32_t *)shift, &qo, npx, kh, kw, c, sw, ib, ob, 1, 0);
#endif
    return 0;
}

QMCU_INLINE int32_t qmcu_dw_acc(void *acc, int32_t acc_pix, void *x, int32_t x_row,
                                int32_t x_pix, void *w, int32_t npx, int32_t kh, int32_t kw,
                                int32_t c, int32_t oc, int32_t sw, int32_t ib) {
    (void)oc;
#if defined(QMCU_MVE)
    dw_mve(0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix, (const int8_t *)w,
           0, 0, 0, 0, npx, kh, kw, c, sw, ib, 8, 0);
#elif defined(QMCU_DSP)
    const int8_t *wt = (const int8_t *)w;
    const int32_t y_pix = 0;
    QMCU_DSP_PIXELS(dw_dsp, dw_dsp_tail, (uint8_t *)0, acc, x,
                    QMCU_ARGS(wt, 0, 0, 0, 0, 2, kh, kw, c, sw, ib, 8, 0),
                    QMCU_ARGS(wt, 0, 0, 0, 0, kh, kw, c, sw, ib, 8, 0));
#else
    dw_ref(0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix, (const int8_t *)w,
           0, 0, 0, 0, npx, kh, kw, c, sw, ib, 8, 0, 0);
#endif
    return 0;
}

#endif
