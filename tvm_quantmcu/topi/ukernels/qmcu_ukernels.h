/* Micro-kernels called by the TVM-generated kernels (tensorized inner products,
 * requantization + packing). Each has an ARMv7E-M DSP implementation (SMLAD, SXTB16,
 * SMLAxy, SMMLA) selected by __ARM_FEATURE_DSP and a portable C fallback with the same result.
 *
 * Header-only: every generated kernel file includes it, and the shape arguments TVM passes are
 * literals, so the compiler specialises each call (constant strides become immediate offsets).
 * Pointer arguments are void* because that is how TVM's C codegen declares extern calls; the
 * plain prototypes TVM emits after this header refer to these static functions.
 *
 * qmcu_conv_px(acc, x, row_stride, kh, rk, w, oc):
 *   acc[o] += sum_{i<kh, j<rk} x[i*row_stride + j] * w[(o*kh + i)*rk + j]   for o < oc
 *   (x int16, w int8: one output pixel of a convolution, OHWI weights)
 * qmcu_dw_px(acc, x, row_stride, kh, kw, c, w):
 *   acc[ch] += sum_{i<kh, j<kw} x[i*row_stride + j*c + ch] * w[(i*kw + j)*c + ch]
 * qmcu_requant_px(y, acc, bias, mult, shift, q, oc, bits):
 *   y = pack_bits(clamp(floor(((acc+bias)*M + 2^(n-1)) / 2^n) + zp_out, lo, hi)) for one pixel,
 *   q = {zp_out, lo, hi} (qp + 1 of the kernel ABI)
 */
#ifndef QMCU_UKERNELS_H
#define QMCU_UKERNELS_H
#include <stdint.h>
#include <string.h>

#define QMCU_INLINE static inline __attribute__((always_inline))

#if defined(__ARM_FEATURE_DSP) && !defined(QMCU_PORTABLE)
#define QMCU_DSP 1
#include <arm_acle.h>
#endif

QMCU_INLINE int32_t load32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);   /* one LDR on Cortex-M (unaligned access allowed) */
    return v;
}

#ifdef QMCU_DSP
static inline int32_t sxtb16_ror8(int32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#endif

/* ------------------------------------------------------------------------------------------ */
#ifndef QMCU_MAX_K
#define QMCU_MAX_K 2304   /* largest window (kh*kw*c) of the DSP path: 3x3x256 */
#endif

#ifdef QMCU_DSP
/* One pixel's window, gathered and paired for SXTB16. Weak: every kernel file defines it and
 * the linker keeps one copy (kernels run one at a time). */
int32_t qmcu_gather[2 * ((QMCU_MAX_K + 3) / 2 + 1)] __attribute__((weak, aligned(8)));

/* Gather one pixel's window rows into dst (int16) and pair every group of four as
 * (x0,x2),(x1,x3); the K%4 tail stays in order. */
QMCU_INLINE void gather_px(int32_t *dst, const int16_t *x,
                                                            int32_t row_stride, int32_t kh,
                                                            int32_t rk) {
    int16_t *b16 = (int16_t *)dst;
    for (int32_t i = 0; i < kh; i++) {
        const int16_t *row = x + i * row_stride;
        for (int32_t j = 0; j < rk; j++) *b16++ = row[j];
    }
    const int32_t K4 = (kh * rk) & ~3;
    for (int32_t k = 0; k < K4; k += 4) {
        uint32_t lo = (uint32_t)dst[k >> 1], hi = (uint32_t)dst[(k >> 1) + 1];
        dst[k >> 1] = (int32_t)((lo & 0xFFFFu) | (hi << 16));          /* PKHBT */
        dst[(k >> 1) + 1] = (int32_t)((hi & 0xFFFF0000u) | (lo >> 16));   /* PKHTB */
    }
}

QMCU_INLINE void conv_px_dsp(int32_t *acc, const int32_t *buf, int32_t K, const int8_t *w,
                             int32_t oc) {
    const int16_t *b16 = (const int16_t *)buf;
    const int32_t K4 = K & ~3;
    const int32_t *xend = buf + (K4 >> 1);
    int32_t o = 0;
    /* Four output channels per pass: each pair of x words feeds eight SMLADs. */
    for (; o + 3 < oc; o += 4) {
        const int8_t *p0 = w + o * K, *p1 = p0 + K, *p2 = p1 + K, *p3 = p2 + K;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (const int32_t *xb = buf; xb < xend; xb += 2) {
            int32_t xa = xb[0], xc = xb[1];
            int32_t v0 = load32(p0), v1 = load32(p1), v2 = load32(p2), v3 = load32(p3);
            p0 += 4;
            p1 += 4;
            p2 += 4;
            p3 += 4;
            a0 = __smlad(xa, __sxtb16(v0), a0);
            a1 = __smlad(xa, __sxtb16(v1), a1);
            a2 = __smlad(xa, __sxtb16(v2), a2);
            a3 = __smlad(xa, __sxtb16(v3), a3);
            a0 = __smlad(xc, sxtb16_ror8(v0), a0);
            a1 = __smlad(xc, sxtb16_ror8(v1), a1);
            a2 = __smlad(xc, sxtb16_ror8(v2), a2);
            a3 = __smlad(xc, sxtb16_ror8(v3), a3);
        }
        for (int32_t k = K4; k < K; k++) {
            int32_t xv = b16[k];
            a0 += xv * *p0++;
            a1 += xv * *p1++;
            a2 += xv * *p2++;
            a3 += xv * *p3++;
        }
        acc[o] += a0;
        acc[o + 1] += a1;
        acc[o + 2] += a2;
        acc[o + 3] += a3;
    }
    for (; o < oc; o++) {
        const int8_t *p0 = w + o * K;
        int32_t a0 = 0;
        for (const int32_t *xb = buf; xb < xend; xb += 2, p0 += 4) {
            int32_t v = load32(p0);
            a0 = __smlad(xb[0], __sxtb16(v), a0);
            a0 = __smlad(xb[1], sxtb16_ror8(v), a0);
        }
        for (int32_t k = K4; k < K; k++) a0 += b16[k] * *p0++;
        acc[o] += a0;
    }
}
#endif

QMCU_INLINE int32_t qmcu_conv_px(void *acc_, void *x_, int32_t row_stride, int32_t kh,
                                 int32_t rk, void *w_, int32_t oc) {
    int32_t *acc = (int32_t *)acc_;
    const int16_t *x = (const int16_t *)x_;
    const int8_t *w = (const int8_t *)w_;
    const int32_t K = kh * rk;
#ifdef QMCU_DSP
    if (K <= QMCU_MAX_K) {
        gather_px(qmcu_gather, x, row_stride, kh, rk);
        conv_px_dsp(acc, qmcu_gather, K, w, oc);
        return 0;
    }
#endif
    (void)K;
    for (int32_t o = 0; o < oc; o++) {
        int32_t a = 0;
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < rk; j++) a += x[i * row_stride + j] * w[(o * kh + i) * rk + j];
        acc[o] += a;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
#ifdef QMCU_DSP
/* Four channels, one tap: lane-wise products of (x0,x1),(x2,x3) with SXTB16'd (w0,w2),(w1,w3). */
#define DW_TAP(xp, wp)                                   \
    do {                                                 \
        int32_t x01 = load32(xp), x23 = load32((xp) + 2); \
        int32_t wv = load32(wp);                         \
        int32_t wa = __sxtb16(wv), wb = sxtb16_ror8(wv); \
        a0 = __smlabb(x01, wa, a0);                      \
        a1 = __smlatb(x01, wb, a1);                      \
        a2 = __smlabt(x23, wa, a2);                      \
        a3 = __smlatt(x23, wb, a3);                      \
    } while (0)
#endif

QMCU_INLINE int32_t qmcu_dw_px(void *acc_, void *x_, int32_t row_stride, int32_t kh,
                               int32_t kw, int32_t c, void *w_) {
    int32_t *acc = (int32_t *)acc_;
    const int16_t *x = (const int16_t *)x_;
    const int8_t *w = (const int8_t *)w_;
    int32_t ch = 0;
#ifdef QMCU_DSP
    if (kh == 3 && kw == 3) {
        const int16_t *r0 = x, *r1 = x + row_stride, *r2 = x + 2 * row_stride;
        const int8_t *w0 = w, *w1 = w + 3 * c, *w2 = w + 6 * c;
        const int32_t c2 = 2 * c;
        for (; ch + 4 <= c; ch += 4, r0 += 4, r1 += 4, r2 += 4, w0 += 4, w1 += 4, w2 += 4) {
            int32_t a0 = acc[ch], a1 = acc[ch + 1], a2 = acc[ch + 2], a3 = acc[ch + 3];
            DW_TAP(r0, w0);
            DW_TAP(r0 + c, w0 + c);
            DW_TAP(r0 + c2, w0 + c2);
            DW_TAP(r1, w1);
            DW_TAP(r1 + c, w1 + c);
            DW_TAP(r1 + c2, w1 + c2);
            DW_TAP(r2, w2);
            DW_TAP(r2 + c, w2 + c);
            DW_TAP(r2 + c2, w2 + c2);
            acc[ch] = a0;
            acc[ch + 1] = a1;
            acc[ch + 2] = a2;
            acc[ch + 3] = a3;
        }
    } else {
        for (; ch + 4 <= c; ch += 4) {
            int32_t a0 = acc[ch], a1 = acc[ch + 1], a2 = acc[ch + 2], a3 = acc[ch + 3];
            for (int32_t i = 0; i < kh; i++) {
                const int16_t *xr = x + i * row_stride + ch;
                const int8_t *wr = w + i * kw * c + ch;
                for (int32_t j = 0; j < kw; j++, xr += c, wr += c) DW_TAP(xr, wr);
            }
            acc[ch] = a0;
            acc[ch + 1] = a1;
            acc[ch + 2] = a2;
            acc[ch + 3] = a3;
        }
    }
#endif
    for (; ch < c; ch++) {
        int32_t a = 0;
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++)
                a += x[i * row_stride + j * c + ch] * w[(i * kw + j) * c + ch];
        acc[ch] += a;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Two output pixels per call (the second at x + x_pix, accumulators at acc + acc_pix): every
 * weight word is loaded and sign-extended once for both. Same sums as two qmcu_conv_px. */
QMCU_INLINE int32_t qmcu_conv_px2(
    void *acc_, void *x_, int32_t row_stride, int32_t kh, int32_t rk, void *w_, int32_t oc,
    int32_t acc_pix, int32_t x_pix) {
    int32_t *acc = (int32_t *)acc_;
    const int16_t *x = (const int16_t *)x_;
    const int8_t *w = (const int8_t *)w_;
    const int32_t K = kh * rk;
#ifdef QMCU_DSP
    if (K <= QMCU_MAX_K) {
        const int32_t G = (K + 3) / 2 + 1;          /* words per gathered window */
        int32_t *g0 = qmcu_gather, *g1 = qmcu_gather + G;
        gather_px(g0, x, row_stride, kh, rk);
        gather_px(g1, x + x_pix, row_stride, kh, rk);
        const int16_t *h0 = (const int16_t *)g0, *h1 = (const int16_t *)g1;
        const int32_t K4 = K & ~3;
        const int32_t *xend = g0 + (K4 >> 1);
        int32_t o = 0;
        for (; o + 1 < oc; o += 2) {
            const int8_t *p = w + o * K;
            int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;     /* a<pixel><channel> */
            for (const int32_t *xb = g0; xb < xend; xb += 2, p += 4) {
                int32_t v0 = load32(p), v1 = load32(p + K);
                int32_t s0 = __sxtb16(v0), t0 = sxtb16_ror8(v0);
                int32_t s1 = __sxtb16(v1), t1 = sxtb16_ror8(v1);
                int32_t xa = xb[0], xc = xb[1];
                a00 = __smlad(xa, s0, a00);
                a00 = __smlad(xc, t0, a00);
                a01 = __smlad(xa, s1, a01);
                a01 = __smlad(xc, t1, a01);
                xa = xb[G];
                xc = xb[G + 1];
                a10 = __smlad(xa, s0, a10);
                a10 = __smlad(xc, t0, a10);
                a11 = __smlad(xa, s1, a11);
                a11 = __smlad(xc, t1, a11);
            }
            for (int32_t k = K4; k < K; k++, p++) {
                a00 += h0[k] * p[0];
                a01 += h0[k] * p[K];
                a10 += h1[k] * p[0];
                a11 += h1[k] * p[K];
            }
            acc[o] += a00;
            acc[o + 1] += a01;
            acc[acc_pix + o] += a10;
            acc[acc_pix + o + 1] += a11;
        }
        if (o < oc) {
            conv_px_dsp(acc + o, g0, K, w + o * K, 1);
            conv_px_dsp(acc + acc_pix + o, g1, K, w + o * K, 1);
        }
        return 0;
    }
#endif
    (void)w;
    (void)K;
    qmcu_conv_px(acc, x_, row_stride, kh, rk, w_, oc);
    qmcu_conv_px(acc + acc_pix, (void *)(x + x_pix), row_stride, kh, rk, w_, oc);
    return 0;
}

QMCU_INLINE int32_t qmcu_dw_px2(
    void *acc_, void *x_, int32_t row_stride, int32_t kh, int32_t kw, int32_t c, void *w_,
    int32_t acc_pix, int32_t x_pix) {
    int32_t *acc = (int32_t *)acc_;
    const int16_t *x = (const int16_t *)x_;
    const int8_t *w = (const int8_t *)w_;
    int32_t ch = 0;
#ifdef QMCU_DSP
    for (; ch + 4 <= c; ch += 4) {
        int32_t *q = acc + acc_pix;
        int32_t a0 = acc[ch], a1 = acc[ch + 1], a2 = acc[ch + 2], a3 = acc[ch + 3];
        int32_t b0 = q[ch], b1 = q[ch + 1], b2 = q[ch + 2], b3 = q[ch + 3];
        for (int32_t i = 0; i < kh; i++) {
            const int16_t *xr = x + i * row_stride + ch;
            const int8_t *wr = w + i * kw * c + ch;
#pragma GCC unroll 8
            for (int32_t j = 0; j < kw; j++, xr += c, wr += c) {
                int32_t wv = load32(wr);
                int32_t wa = __sxtb16(wv), wb = sxtb16_ror8(wv);   /* (w0,w2), (w1,w3) */
                int32_t x01 = load32(xr), x23 = load32(xr + 2);
                a0 = __smlabb(x01, wa, a0);
                a1 = __smlatb(x01, wb, a1);
                a2 = __smlabt(x23, wa, a2);
                a3 = __smlatt(x23, wb, a3);
                x01 = load32(xr + x_pix);
                x23 = load32(xr + x_pix + 2);
                b0 = __smlabb(x01, wa, b0);
                b1 = __smlatb(x01, wb, b1);
                b2 = __smlabt(x23, wa, b2);
                b3 = __smlatt(x23, wb, b3);
            }
        }
        acc[ch] = a0;
        acc[ch + 1] = a1;
        acc[ch + 2] = a2;
        acc[ch + 3] = a3;
        q[ch] = b0;
        q[ch + 1] = b1;
        q[ch + 2] = b2;
        q[ch + 3] = b3;
    }
#endif
    for (; ch < c; ch++) {
        int32_t a = 0, b = 0;
        for (int32_t i = 0; i < kh; i++)
            for (int32_t j = 0; j < kw; j++) {
                int32_t wv = w[(i * kw + j) * c + ch];
                a += x[i * row_stride + j * c + ch] * wv;
                b += x[i * row_stride + j * c + ch + x_pix] * wv;
            }
        acc[ch] += a;
        acc[acc_pix + ch] += b;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* floor((a·M + 2^(n-1)) / 2^n) + zp, clamped to [lo, hi]. */
QMCU_INLINE int32_t requant1(int32_t a, int32_t M, int32_t n,
                                                              int32_t zp, int32_t lo,
                                                              int32_t hi) {
    int32_t r;
#ifdef QMCU_DSP
    if (__builtin_expect(n > 32, 1)) {
        /* SMMLA: (2^(n-33)·2^32 + a·M) >> 32 = floor((a·M + 2^(n-1)) / 2^32); then ASR. */
        int32_t s = n - 32;
        __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(M), "r"(1 << (s - 1)));
        r = (r >> s) + zp;
    } else if (n == 32) {
        __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(M));
        r += zp;
    } else
#endif
    {
        int64_t v = (((int64_t)a * M + ((int64_t)1 << (n - 1))) >> n) + zp;
        return v < lo ? lo : (v > hi ? hi : (int32_t)v);
    }
    r = r < lo ? lo : r;
    return r > hi ? hi : r;
}

QMCU_INLINE int32_t qmcu_requant_px(void *y_, void *acc_, void *bias_, void *mult_,
                                    void *shift_, void *qp_, int32_t oc, int32_t bits) {
    uint8_t *y = (uint8_t *)y_;
    const int32_t *acc = (const int32_t *)acc_, *bias = (const int32_t *)bias_;
    const int32_t *M = (const int32_t *)mult_, *n = (const int32_t *)shift_;
    const int32_t *qp = (const int32_t *)qp_;
    const int32_t zp = qp[0], lo = qp[1], hi = qp[2];
    if (bits == 8) {
#ifdef QMCU_DSP
        for (int32_t o = 0; o < oc; o++) {
            int32_t a = acc[o] + bias[o], s = n[o] - 32, r;
            if (__builtin_expect(s > 0, 1)) {
                __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(M[o]), "r"(1 << (s - 1)));
                r = (r >> s) + zp;
                r = r < lo ? lo : r;
                y[o] = (uint8_t)(r > hi ? hi : r);
            } else {
                y[o] = (uint8_t)requant1(a, M[o], n[o], zp, lo, hi);
            }
        }
#else
        for (int32_t o = 0; o < oc; o++)
            y[o] = (uint8_t)requant1(acc[o] + bias[o], M[o], n[o], zp, lo, hi);
#endif
        return 0;
    }
    if (bits == 4) {
        for (int32_t o = 0; o < oc; o += 2) {
            uint32_t v = (uint32_t)requant1(acc[o] + bias[o], M[o], n[o], zp, lo, hi);
            if (o + 1 < oc)
                v |= (uint32_t)requant1(acc[o + 1] + bias[o + 1], M[o + 1], n[o + 1], zp, lo, hi)
                     << 4;
            *y++ = (uint8_t)v;
        }
        return 0;
    }
    for (int32_t o = 0; o < oc; o += 4) {
        uint32_t byte = 0;
        for (int32_t l = 0; l < 4 && o + l < oc; l++)
            byte |= (uint32_t)requant1(acc[o + l] + bias[o + l], M[o + l], n[o + l], zp, lo, hi)
                    << (2 * l);
        *y++ = (uint8_t)byte;
    }
    return 0;
}

#endif
