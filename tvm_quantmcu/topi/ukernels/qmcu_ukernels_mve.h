/* Helium (M-profile Vector Extension, Armv8.1-M: Cortex-M55) implementations of the
 * micro-kernels of qmcu_ukernels.h, included by it after the portable and DSP definitions.
 * Selected by __ARM_FEATURE_MVE (gcc -mcpu=cortex-m55), unless the kernel file defines
 * QMCU_NO_MVE (the DSP micro-kernels then run, as on ARMv7E-M) or QMCU_PORTABLE. Same
 * arguments, same integer result as the portable and DSP implementations.
 *
 * conv2d / pointwise / dense: VMLADAVA.U8 sums 16 products into a scalar accumulator. MVE has
 * no mixed-sign dot product, so the int8 weights are offset to unsigned (w ^ 0x80 = w + 128,
 * one VEOR per weight vector, shared by two pixels) and the result corrected once per pixel:
 * sum x*w = sum x*(w + 128) - 128 * sum x (VADDVA over the same vectors). Two pixels x two
 * output channels per pass (VMLADAVA's accumulator must be an even register: four is what the
 * register file affords next to the pointers). 8-bit windows are read in place, one
 * contiguous segment of kw*c bytes per kernel row, the last vector of a segment tail-
 * predicated (VCTP); 4/2-bit windows are first unpacked into bytes, in the weights' lane
 * order (scatter stores of the nibble planes) or, for gathered windows, in channel order.
 * depthwise: channels in 32-bit lanes (VLDRB.U32 / VLDRB.S32 widening loads), VMUL + VADD per
 * tap (MVE has no vector-by-vector integer multiply-accumulate), four channels of two pixels
 * per pass; 4/2-bit windows and the lane-ordered weights are unpacked into bytes first.
 * Requantization: four output channels per vector, floor((a*M + 2^(n-1)) / 2^n) as VMULH
 * (floor(a*M / 2^32)) then VRSHL by -(n - 32) (a rounding shift: exact for n > 32, see
 * rq_fast in qmcu_ukernels_dsp.h), + zp_out, VMAX/VMIN clamp, VSTRB.32 narrowing store; 4/2-bit
 * outputs are packed by one VMLADAV against (1, 16, 256, 4096) resp. (1, 4, 16, 64). Groups
 * holding a shift n <= 32 (rare, see params.prepare) take the exact 64-bit scalar path.
 */
#ifndef QMCU_UKERNELS_MVE_H
#define QMCU_UKERNELS_MVE_H
#if defined(__ARM_FEATURE_MVE) && !defined(QMCU_PORTABLE) && !defined(QMCU_NO_MVE)
#define QMCU_MVE 1
#include <arm_mve.h>

#ifndef QMCU_MVE_MAX_K
#define QMCU_MVE_MAX_K 2304   /* largest unpacked window (kh*kw*cw) per pixel */
#endif
#define QMCU_MVE_SLACK 64     /* VST2/VST4 of a partial vector write past the last value */
#define QMCU_MVE_BUF_BYTES (2 * (QMCU_MVE_MAX_K + QMCU_MVE_SLACK))
/* The Helium loops without the kernel files' unroll-loops (registry.PRAGMA): their inner
 * loops are tail-predicated vector loops that unrolling does not shorten, and it took ~40%
 * of the code of an int8 model (mbv2-fmnist on Cortex-M55: 58,184 -> 42,608 B of code); the
 * loops that pay are unrolled by their own #pragma GCC unroll. */
#define QMCU_MVE_LOOP QMCU_LOOP __attribute__((optimize("no-unroll-loops")))

/* Unpacked 4/2-bit windows (and depthwise weights). Weak: every kernel file defines it and
 * the linker keeps one copy (kernels run one at a time). */
uint8_t qmcu_mve_buf[QMCU_MVE_BUF_BYTES] __attribute__((weak, aligned(16)));

/* Byte positions of the nibble planes of 16 packed bytes in the weights' lane order
 * (compute.lane_pos): at 4 bits plane 0 (low nibbles, channels 2k) and plane 1 = plane 0 + 1;
 * at 2 bits planes s = 0..3 (channels 4k + s) are plane 0 + (0, 1, 4, 5). And the lane order
 * position of channel l < 16 (depthwise weights back to channel order). */
static const uint8_t qmcu_mve_lane4[16] __attribute__((aligned(16))) = {
    0, 4, 2, 6, 8, 12, 10, 14, 16, 20, 18, 22, 24, 28, 26, 30};
static const uint8_t qmcu_mve_lane2[16] __attribute__((aligned(16))) = {
    0, 8, 2, 10, 16, 24, 18, 26, 32, 40, 34, 42, 48, 56, 50, 58};
static const uint8_t qmcu_mve_wpos4[16] __attribute__((aligned(16))) = {
    0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
static const uint8_t qmcu_mve_wpos2[16] __attribute__((aligned(16))) = {
    0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15};

/* Keep a vector accumulator's sum in order: without it gcc reassociates the adds of a tap
 * loop, computes every product first and spills them. */
#define QMCU_MVE_KEEP(v) __asm__("" : "+w"(v))

/* ---- unpacking 4/2-bit activations into bytes ----------------------------------------- */

/* nb packed bytes at src (ib = 4 or 2 bits per value) as one byte per value, in channel order
 * at dst (VST2/VST4 interleave the nibble planes; up to QMCU_MVE_SLACK bytes written past the
 * last value). */
QMCU_INLINE void mve_unpack(uint8_t *dst, const uint8_t *src, int32_t nb, int32_t ib) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(0x03);
    for (int32_t k = 0; k < nb; k += 16) {
        const uint8x16_t v = vldrbq_z_u8(src + k, vctp8q((uint32_t)(nb - k)));
        if (ib == 4) {
            uint8x16x2_t t = {{vandq_u8(v, m4), vshrq_n_u8(v, 4)}};
            vst2q_u8(dst + 2 * k, t);
        } else {
            uint8x16x4_t t = {{vandq_u8(v, m2), vandq_u8(vshrq_n_u8(v, 2), m2),
                               vandq_u8(vshrq_n_u8(v, 4), m2), vshrq_n_u8(v, 6)}};
            vst4q_u8(dst + 4 * k, t);
        }
    }
}

/* One packed pixel (nb bytes) as bytes in the weights' lane order at dst: plane s of every
 * byte scattered to its lane-order position. Positions of channels beyond the pixel's last
 * byte are not written (their weights are zero). */
QMCU_INLINE void mve_unpack_lanes(uint8_t *dst, const uint8_t *src, int32_t nb, int32_t ib) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(0x03);
    const uint8x16_t o0 = vld1q_u8(ib == 4 ? qmcu_mve_lane4 : qmcu_mve_lane2);
    for (int32_t k = 0; k < nb; k += 16) {
        const mve_pred16_t p = vctp8q((uint32_t)(nb - k));
        const uint8x16_t v = vldrbq_z_u8(src + k, p);
        if (ib == 4) {
            uint8_t *d = dst + 2 * k;
            vstrbq_scatter_offset_p_u8(d, o0, vandq_u8(v, m4), p);
            vstrbq_scatter_offset_p_u8(d + 1, o0, vshrq_n_u8(v, 4), p);
        } else {
            uint8_t *d = dst + 4 * k;
            vstrbq_scatter_offset_p_u8(d, o0, vandq_u8(v, m2), p);
            vstrbq_scatter_offset_p_u8(d + 1, o0, vandq_u8(vshrq_n_u8(v, 2), m2), p);
            vstrbq_scatter_offset_p_u8(d + 4, o0, vandq_u8(vshrq_n_u8(v, 4), m2), p);
            vstrbq_scatter_offset_p_u8(d + 5, o0, vshrq_n_u8(v, 6), p);
        }
    }
}

/* The window of one output pixel (kh x kw taps of c values at ib bits) unpacked into dst:
 * tap t at dst + t*cw, in lane order (lane) or channel order. */
QMCU_INLINE void mve_window(uint8_t *dst, const uint8_t *x, int32_t x_row, int32_t x_pix,
                            int32_t kh, int32_t kw, int32_t c, int32_t cw, int32_t ib,
                            int32_t lane) {
    const int32_t nb = (c * ib + 7) / 8;
    for (int32_t i = 0; i < kh; i++) {
        const uint8_t *row = x + i * x_row;
        if (!lane && x_pix * 8 == c * ib) {        /* the row's taps are contiguous values */
            mve_unpack(dst + i * kw * c, row, kw * x_pix, ib);
            continue;
        }
        for (int32_t j = 0; j < kw; j++) {
            if (lane)
                mve_unpack_lanes(dst + (i * kw + j) * cw, row + j * x_pix, nb, ib);
            else
                mve_unpack(dst + (i * kw + j) * cw, row + j * x_pix, nb, ib);
        }
    }
}

/* ---- requantization of four output channels ------------------------------------------- */

/* Outputs of channels o .. o+n-1 (n <= 4; 4/2-bit outputs: whole bytes) of npx pixels from
 * their accumulators v0, v1 (bias not included): requantized, clamped, packed and stored at
 * y0, y1 (the pixels' outputs). */
QMCU_INLINE void mve_requant(uint8_t *y0, uint8_t *y1, int32_t npx, int32x4_t v0,
                             int32x4_t v1, int32_t o, int32_t n, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, const qmcu_q *q,
                             int32_t ob) {
    const mve_pred16_t pr = vctp32q((uint32_t)n);
    int32x4_t b, M, s;
    if (n == 4) {
        b = vld1q_s32(bias + o);
        M = vld1q_s32(mult + o);
        s = vld1q_s32(shift + o);
    } else {
        b = vldrwq_z_s32(bias + o, pr);
        M = vldrwq_z_s32(mult + o, pr);
        s = vpselq_s32(vldrwq_z_s32(shift + o, pr), vdupq_n_s32(33), pr);
    }
    v0 = vaddq_s32(v0, b);
    v1 = vaddq_s32(v1, b);
    if (__builtin_expect(vminvq_s32(INT32_MAX, s) < 33, 0)) {
        /* a shift n <= 32: the exact 64-bit path, lane by lane */
        int32_t a[8];
        vst1q_s32(a, v0);
        vst1q_s32(a + 4, v1);
        for (int32_t p = 0; p < npx; p++)
            for (int32_t l = 0; l < n; l++)
                store_one(p ? y1 : y0, o + l,
                          requant_ref(a[4 * p + l], mult[o + l], shift[o + l], q->zp, q->lo,
                                      q->hi), ob);
        return;
    }
    s = vsubq_s32(vdupq_n_s32(32), s);                 /* -(n - 32) */
    const int32x4_t lo = vdupq_n_s32(q->lo), hi = vdupq_n_s32(q->hi);
    for (int32_t p = 0; p < npx; p++) {
        int32x4_t v = vrshlq_s32(vmulhq_s32(p ? v1 : v0, M), s);
        v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, q->zp), lo), hi);
        uint8_t *yp = p ? y1 : y0;
        if (ob == 8) {
            if (n == 4)
                vstrbq_s32((int8_t *)yp + o, v);
            else
                vstrbq_p_s32((int8_t *)yp + o, v, pr);
        } else if (ob == 4) {
            static const int32_t k4[4] __attribute__((aligned(16))) = {1, 16, 256, 4096};
            const uint32_t u = (uint32_t)vmladavq_p_s32(v, vld1q_s32(k4), pr);
            yp[o / 2] = (uint8_t)u;
            if (n > 2) yp[o / 2 + 1] = (uint8_t)(u >> 8);
        } else {
            static const int32_t k2[4] __attribute__((aligned(16))) = {1, 4, 16, 64};
            yp[o / 4] = (uint8_t)vmladavq_s32(v, vld1q_s32(k2));
        }
    }
}

/* Add the accumulators in memory (channels o .. o+n-1 of npx pixels), then requantize (fuse)
 * or store them back. */
QMCU_INLINE void mve_finish(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                            int32_t npx, int32x4_t v0, int32x4_t v1, int32_t o, int32_t n,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            const qmcu_q *q, int32_t ob, int32_t fuse) {
    const mve_pred16_t pr = vctp32q((uint32_t)n);
    if (n == 4) {
        v0 = vaddq_s32(v0, vld1q_s32(acc + o));
        if (npx == 2) v1 = vaddq_s32(v1, vld1q_s32(acc + acc_pix + o));
    } else {
        v0 = vaddq_s32(v0, vldrwq_z_s32(acc + o, pr));
        if (npx == 2) v1 = vaddq_s32(v1, vldrwq_z_s32(acc + acc_pix + o, pr));
    }
    if (fuse) {
        mve_requant(y, y + y_pix, npx, v0, v1, o, n, bias, mult, shift, q, ob);
        return;
    }
    vstrwq_p_s32(acc + o, v0, pr);
    if (npx == 2) vstrwq_p_s32(acc + acc_pix + o, v1, pr);
}

/* ---- conv2d / pointwise / dense ----------------------------------------------------------- */

/* Dot products of npx pixels (x0, x1) with two output channels' weights (w0, w0 + K; no = 1:
 * one) over nseg segments of len bytes (pixel segments x_row apart, weight segments len
 * apart), added to a[2*p + j] as sum x*(w + 128). */
QMCU_INLINE void mve_dot(uint32_t *a, int32_t npx, int32_t no, const uint8_t *x0,
                         const uint8_t *x1, int32_t x_row, int32_t nseg, int32_t len,
                         const int8_t *w0, int32_t K) {
    uint32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
    const uint8x16_t k80 = vdupq_n_u8(0x80);
    if (npx == 2 && no == 2 && len > 16) {
        /* the common case as a tail-predicated low-overhead loop (DLSTP/LETP): 10 vector
         * instructions per 64 MACs. The accumulators are even registers ("Te"), as VMLADAVA
         * requires; gcc's own allocation of them costs a move per product. (Segments of one
         * vector stay in C: gcc then keeps the pixels' vectors in registers across channels.) */
        for (int32_t i = 0; i < nseg; i++) {
            const uint8_t *p0 = x0 + i * x_row, *p1 = x1 + i * x_row;
            const int8_t *q0 = w0 + i * len, *q1 = q0 + K;
            __asm__ volatile(
                "dlstp.8 lr, %[n]\n"
                "1:\n\t"
                "vldrb.u8 q0, [%[p0]], #16\n\t"
                "vldrb.u8 q1, [%[q0]], #16\n\t"
                "vldrb.u8 q2, [%[p1]], #16\n\t"
                "veor q1, q1, %q[k]\n\t"
                "vldrb.u8 q3, [%[q1]], #16\n\t"
                "vmladava.u8 %[a00], q0, q1\n\t"
                "veor q3, q3, %q[k]\n\t"
                "vmladava.u8 %[a10], q2, q1\n\t"
                "vmladava.u8 %[a01], q0, q3\n\t"
                "vmladava.u8 %[a11], q2, q3\n\t"
                "letp lr, 1b\n"
                : [a00] "+Te"(a00), [a01] "+Te"(a01), [a10] "+Te"(a10), [a11] "+Te"(a11),
                  [p0] "+r"(p0), [p1] "+r"(p1), [q0] "+r"(q0), [q1] "+r"(q1)
                : [n] "r"(len), [k] "w"(k80)
                : "q0", "q1", "q2", "q3", "lr", "memory");
        }
        a[0] = a00;
        a[1] = a01;
        a[2] = a10;
        a[3] = a11;
        return;
    }
#pragma GCC unroll 4
    for (int32_t i = 0; i < nseg; i++) {
        const uint8_t *p0 = x0 + i * x_row, *p1 = x1 + i * x_row;
        const int8_t *q0 = w0 + i * len, *q1 = q0 + K;
        int32_t k = 0;
#pragma GCC unroll 4
        for (; k + 16 <= len; k += 16) {
            const uint8x16_t xa = vld1q_u8(p0 + k);
            const uint8x16_t wa = veorq_u8(vreinterpretq_u8_s8(vld1q_s8(q0 + k)), k80);
            a00 = vmladavaq_u8(a00, xa, wa);
            if (npx == 2) a10 = vmladavaq_u8(a10, vld1q_u8(p1 + k), wa);
            if (no == 2) {
                const uint8x16_t wb = veorq_u8(vreinterpretq_u8_s8(vld1q_s8(q1 + k)), k80);
                a01 = vmladavaq_u8(a01, xa, wb);
                if (npx == 2) a11 = vmladavaq_u8(a11, vld1q_u8(p1 + k), wb);
            }
        }
        if (k < len) {       /* tail: lanes beyond the segment are zero in x */
            const mve_pred16_t pr = vctp8q((uint32_t)(len - k));
            const uint8x16_t xa = vldrbq_z_u8(p0 + k, pr);
            const uint8x16_t wa = veorq_u8(vreinterpretq_u8_s8(vldrbq_z_s8(q0 + k, pr)), k80);
            a00 = vmladavaq_u8(a00, xa, wa);
            if (npx == 2) a10 = vmladavaq_u8(a10, vldrbq_z_u8(p1 + k, pr), wa);
            if (no == 2) {
                const uint8x16_t wb =
                    veorq_u8(vreinterpretq_u8_s8(vldrbq_z_s8(q1 + k, pr)), k80);
                a01 = vmladavaq_u8(a01, xa, wb);
                if (npx == 2) a11 = vmladavaq_u8(a11, vldrbq_z_u8(p1 + k, pr), wb);
            }
        }
    }
    a[0] = a00;
    a[1] = a01;
    a[2] = a10;
    a[3] = a11;
}

/* -128 * (sum of the bytes the dot products of a pixel read). */
QMCU_INLINE uint32_t mve_offset(const uint8_t *x, int32_t x_row, int32_t nseg, int32_t len) {
    uint32_t s = 0;
#pragma GCC unroll 4
    for (int32_t i = 0; i < nseg; i++) {
        const uint8_t *p = x + i * x_row;
        int32_t k = 0;
        for (; k + 16 <= len; k += 16) s = vaddvaq_u8(s, vld1q_u8(p + k));
        if (k < len) s = vaddvaq_u8(s, vldrbq_z_u8(p + k, vctp8q((uint32_t)(len - k))));
    }
    return 0u - (s << 7);
}

/* Channels o .. o+n-1 (n = 1..4) of npx pixels: two passes of up to two channels, their sums
 * moved into the lanes of one vector per pixel. */
QMCU_INLINE void mve_conv_group(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                                int32_t npx, const uint8_t *x0, const uint8_t *x1,
                                int32_t x_row, int32_t nseg, int32_t len, const int8_t *w,
                                int32_t K, int32_t o, int32_t n, uint32_t c0, uint32_t c1,
                                const int32_t *bias, const int32_t *mult, const int32_t *shift,
                                const qmcu_q *q, int32_t ob, int32_t fuse) {
    uint32_t a[4] = {c0, c0, c1, c1};
    mve_dot(a, npx, n >= 2 ? 2 : 1, x0, x1, x_row, nseg, len, w + o * K, K);
    int32x4_t v0 = vdupq_n_s32(0), v1 = v0;
    v0 = vsetq_lane_s32((int32_t)a[0], v0, 0);
    v0 = vsetq_lane_s32((int32_t)a[1], v0, 1);
    if (npx == 2) {
        v1 = vsetq_lane_s32((int32_t)a[2], v1, 0);
        v1 = vsetq_lane_s32((int32_t)a[3], v1, 1);
    }
    if (n > 2) {
        uint32_t b[4] = {c0, c0, c1, c1};
        mve_dot(b, npx, n == 4 ? 2 : 1, x0, x1, x_row, nseg, len, w + (o + 2) * K, K);
        v0 = vsetq_lane_s32((int32_t)b[0], v0, 2);
        v0 = vsetq_lane_s32((int32_t)b[1], v0, 3);
        if (npx == 2) {
            v1 = vsetq_lane_s32((int32_t)b[2], v1, 2);
            v1 = vsetq_lane_s32((int32_t)b[3], v1, 3);
        }
    }
    mve_finish(y, y_pix, acc, acc_pix, npx, v0, v1, o, n, bias, mult, shift, q, ob, fuse);
}

/* All output channels of npx (1 or 2, a literal) pixels whose windows are x0, x1. */
QMCU_INLINE void mve_conv_pixels(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                                 int32_t npx, const uint8_t *x0, const uint8_t *x1,
                                 int32_t x_row, int32_t nseg, int32_t len, const int8_t *w,
                                 int32_t K, int32_t oc, const int32_t *bias,
                                 const int32_t *mult, const int32_t *shift, const qmcu_q *q,
                                 int32_t ob, int32_t fuse) {
    const uint32_t c0 = mve_offset(x0, x_row, nseg, len);
    const uint32_t c1 = npx == 2 ? mve_offset(x1, x_row, nseg, len) : 0;
    int32_t o = 0;
#pragma GCC unroll 1
    for (; o + 4 <= oc; o += 4)
        mve_conv_group(y, y_pix, acc, acc_pix, npx, x0, x1, x_row, nseg, len, w, K, o, 4, c0,
                       c1, bias, mult, shift, q, ob, fuse);
    if (o < oc)
        mve_conv_group(y, y_pix, acc, acc_pix, npx, x0, x1, x_row, nseg, len, w, K, o, oc - o,
                       c0, c1, bias, mult, shift, q, ob, fuse);
}

QMCU_INLINE void conv_mve_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                               const uint8_t *x, int32_t x_row, int32_t x_pix,
                               const int8_t *w, const int32_t *bias, const int32_t *mult,
                               const int32_t *shift, const qmcu_q *q, int32_t npx,
                               int32_t kh, int32_t kw, int32_t c, int32_t oc, int32_t sw,
                               int32_t ib, int32_t ob, int32_t fuse) {
    const int32_t lane = ib < 8 && !conv_gathers(c, ib);
    const int32_t cw = wchannels(c, ib, lane), K = kh * kw * cw;
    const int32_t dx = sw * x_pix;
    const int32_t in_place = ib == 8 && x_pix == c;
    if (!in_place && K > QMCU_MVE_MAX_K) {
        conv_ref(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, npx, kh,
                 kw, c, oc, sw, ib, ob, fuse, 0);
        return;
    }
    /* in place: one segment per kernel row (one for all when the rows are contiguous) */
    int32_t nseg = 1, len = K, row = 0;
    if (in_place) {
        nseg = kh;
        len = kw * c;
        row = x_row;
        if (kh == 1 || x_row == len) {
            len *= kh;
            nseg = 1;
        }
    }
    uint8_t *b0 = qmcu_mve_buf, *b1 = qmcu_mve_buf + K + QMCU_MVE_SLACK;
    int32_t p = 0;
    for (; p + 1 < npx; p += 2) {
        const uint8_t *x0 = x + p * dx, *x1 = x0 + dx;
        if (!in_place) {
            mve_window(b0, x0, x_row, x_pix, kh, kw, c, cw, ib, lane);
            mve_window(b1, x1, x_row, x_pix, kh, kw, c, cw, ib, lane);
            x0 = b0;
            x1 = b1;
        }
        mve_conv_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, x0, x1, row,
                        nseg, len, w, K, oc, bias, mult, shift, q, ob, fuse);
    }
    if (p < npx) {
        const uint8_t *x0 = x + p * dx;
        if (!in_place) {
            mve_window(b0, x0, x_row, x_pix, kh, kw, c, cw, ib, lane);
            x0 = b0;
        }
        mve_conv_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 1, x0, x0, row,
                        nseg, len, w, K, oc, bias, mult, shift, q, ob, fuse);
    }
}

QMCU_MVE_LOOP void conv_mve(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                        const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                        int32_t oc, int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    conv_mve_body(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, npx, kh,
                  kw, c, oc, sw, ib, ob, fuse);
}

/* ---- depthwise ------------------------------------------------------------------------- */

/* Channels ch .. ch+n-1 (n <= 4) of npx pixels: x holds channel-order bytes (taps x_row /
 * x_pix apart, the second pixel dx on), w channel-order weights (taps wc apart). */
QMCU_INLINE void mve_dw_group(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                              int32_t npx, const uint8_t *x, int32_t x_row, int32_t x_pix,
                              int32_t dx, const int8_t *w, int32_t wc, int32_t kh, int32_t kw,
                              int32_t ch, int32_t n, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, const qmcu_q *q, int32_t ob,
                              int32_t fuse) {
    const mve_pred16_t pr = vctp32q((uint32_t)n);
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
    for (int32_t i = 0; i < kh; i++)
#pragma GCC unroll 8
        for (int32_t j = 0; j < kw; j++) {
            const int8_t *wp = w + (i * kw + j) * wc + ch;
            const uint8_t *xp = x + i * x_row + j * x_pix + ch;
            int32x4_t wv, x0, x1 = a1;
            if (n == 4) {
                wv = vldrbq_s32(wp);
                x0 = vreinterpretq_s32_u32(vldrbq_u32(xp));
                if (npx == 2) x1 = vreinterpretq_s32_u32(vldrbq_u32(xp + dx));
            } else {
                wv = vldrbq_z_s32(wp, pr);
                x0 = vreinterpretq_s32_u32(vldrbq_z_u32(xp, pr));
                if (npx == 2) x1 = vreinterpretq_s32_u32(vldrbq_z_u32(xp + dx, pr));
            }
            a0 = vaddq_s32(a0, vmulq_s32(x0, wv));
            QMCU_MVE_KEEP(a0);
            if (npx == 2) {
                a1 = vaddq_s32(a1, vmulq_s32(x1, wv));
                QMCU_MVE_KEEP(a1);
            }
        }
    mve_finish(y, y_pix, acc, acc_pix, npx, a0, a1, ch, n, bias, mult, shift, q, ob, fuse);
}

QMCU_INLINE void mve_dw_pixels(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                               int32_t npx, const uint8_t *x, int32_t x_row, int32_t x_pix,
                               int32_t dx, const int8_t *w, int32_t wc, int32_t kh, int32_t kw,
                               int32_t c, const int32_t *bias, const int32_t *mult,
                               const int32_t *shift, const qmcu_q *q, int32_t ob,
                               int32_t fuse) {
    int32_t ch = 0;
#pragma GCC unroll 1
    for (; ch + 4 <= c; ch += 4)
        mve_dw_group(y, y_pix, acc, acc_pix, npx, x, x_row, x_pix, dx, w, wc, kh, kw, ch, 4,
                     bias, mult, shift, q, ob, fuse);
    if (ch < c)
        mve_dw_group(y, y_pix, acc, acc_pix, npx, x, x_row, x_pix, dx, w, wc, kh, kw, ch,
                     c - ch, bias, mult, shift, q, ob, fuse);
}

/* Lane-ordered depthwise weights (taps cw apart) back to channel order (taps c apart). */
QMCU_INLINE void mve_dw_weights(int8_t *dst, const int8_t *w, int32_t taps, int32_t c,
                                int32_t cw, int32_t ib) {
    const uint8x16_t off = vld1q_u8(ib == 4 ? qmcu_mve_wpos4 : qmcu_mve_wpos2);
    for (int32_t t = 0; t < taps; t++)
        for (int32_t ch = 0; ch < c; ch += 16) {
            const mve_pred16_t p = vctp8q((uint32_t)(c - ch));
            vstrbq_p_s8(dst + t * c + ch,
                        vldrbq_gather_offset_z_s8(w + t * cw + ch, off, p), p);
        }
}

QMCU_INLINE void dw_mve_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                             const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                             const int32_t *bias, const int32_t *mult, const int32_t *shift,
                             const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                             int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    const int32_t dx = sw * x_pix;
    int32_t p = 0;
    if (ib == 8) {
        for (; p + 1 < npx; p += 2)
            mve_dw_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, x + p * dx,
                          x_row, x_pix, dx, w, c, kh, kw, c, bias, mult, shift, q, ob, fuse);
        if (p < npx)
            mve_dw_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 1, x + p * dx,
                          x_row, x_pix, dx, w, c, kh, kw, c, bias, mult, shift, q, ob, fuse);
        return;
    }
    /* 4/2 bits: weights to channel order once, then per pixel pair its rows of the window
     * unpacked (span pixels of c bytes per row) */
    const int32_t cw = wchannels(c, ib, 1), span = sw + kw, nb = (c * ib + 7) / 8;
    const int32_t wbytes = (kh * kw * c + 15) & ~15;
    if (wbytes + kh * span * c + QMCU_MVE_SLACK > QMCU_MVE_BUF_BYTES) {
        dw_ref(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, npx, kh, kw,
               c, sw, ib, ob, fuse, 0);
        return;
    }
    int8_t *wn = (int8_t *)qmcu_mve_buf;
    uint8_t *xb = qmcu_mve_buf + wbytes;
    mve_dw_weights(wn, w, kh * kw, c, cw, ib);
    for (; p < npx; p += 2) {
        const int32_t np = npx - p >= 2 ? 2 : 1, cols = (np - 1) * sw + kw;
        const uint8_t *xs = x + p * dx;
        for (int32_t i = 0; i < kh; i++) {
            if (x_pix * 8 == c * ib) {
                mve_unpack(xb + i * span * c, xs + i * x_row, cols * x_pix, ib);
            } else {
                for (int32_t u = 0; u < cols; u++)
                    mve_unpack(xb + (i * span + u) * c, xs + i * x_row + u * x_pix, nb, ib);
            }
        }
        if (np == 2)
            mve_dw_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 2, xb, span * c, c,
                          sw * c, wn, c, kh, kw, c, bias, mult, shift, q, ob, fuse);
        else
            mve_dw_pixels(y + p * y_pix, y_pix, acc + p * acc_pix, acc_pix, 1, xb, span * c, c,
                          sw * c, wn, c, kh, kw, c, bias, mult, shift, q, ob, fuse);
    }
}

QMCU_MVE_LOOP void dw_mve(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                      const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift,
                      const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                      int32_t sw, int32_t ib, int32_t ob, int32_t fuse) {
    dw_mve_body(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q, npx, kh, kw,
                c, sw, ib, ob, fuse);
}
#endif
#endif
