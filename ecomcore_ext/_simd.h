/* Portable vectorised maximum over a short run of floats/doubles.
 *
 * Used by the fused top-k selection to skip a whole chunk of accumulator entries when none of
 * them can beat the current k-th best.  A plain C max reduction is not vectorised by GCC or
 * Clang without -ffast-math (NaN and signed-zero semantics forbid reassociation), and a wheel
 * must not be built with -ffast-math, so the x86-64 path uses SSE2 intrinsics (part of the
 * x86-64 baseline, no -march flag needed) and NEON on AArch64.  Other targets use a scalar loop
 * with independent lanes.  NaN entries (the kernels' "not reached" marker) are ignored: every
 * update has the form max(new, running) with the running maximum never NaN, and SSE2/scalar
 * "a > b ? a : b" returns the running value when the new one is NaN.  All NaN gives -inf.
 */
#ifndef ECOMCORE_SIMD_H
#define ECOMCORE_SIMD_H

#include <stddef.h>
#include <math.h>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define EC_HAVE_SSE2 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define EC_HAVE_NEON 1
#endif

static inline float ec_max_f32(const float *p, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    float m = -INFINITY;
#if defined(EC_HAVE_SSE2)
    if (n == 8) {  /* the selection's smallest groups: two loads, two shuffles */
        __m128 a = _mm_max_ps(_mm_loadu_ps(p + 4), _mm_max_ps(_mm_loadu_ps(p), _mm_set1_ps(-INFINITY)));
        a = _mm_max_ps(_mm_shuffle_ps(a, a, _MM_SHUFFLE(1, 0, 3, 2)), a);
        a = _mm_max_ps(_mm_shuffle_ps(a, a, _MM_SHUFFLE(2, 3, 0, 1)), a);
        return _mm_cvtss_f32(a);
    }
    if (n >= 4) {
        __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        for (; i + 16 <= n; i += 16) {
            /* _mm_max_ps(a, b) returns b when a is NaN: the running maximum is the 2nd operand */
            m0 = _mm_max_ps(_mm_loadu_ps(p + i), m0);
            m1 = _mm_max_ps(_mm_loadu_ps(p + i + 4), m1);
            m2 = _mm_max_ps(_mm_loadu_ps(p + i + 8), m2);
            m3 = _mm_max_ps(_mm_loadu_ps(p + i + 12), m3);
        }
        for (; i + 4 <= n; i += 4)  /* short runs (groups of 8) stay vectorised too */
            m0 = _mm_max_ps(_mm_loadu_ps(p + i), m0);
        m0 = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
        m0 = _mm_max_ps(m0, _mm_shuffle_ps(m0, m0, _MM_SHUFFLE(1, 0, 3, 2)));
        m0 = _mm_max_ps(m0, _mm_shuffle_ps(m0, m0, _MM_SHUFFLE(2, 3, 0, 1)));
        m = _mm_cvtss_f32(m0);
    }
#elif defined(EC_HAVE_NEON)
    if (n >= 16) {
        /* vmaxnm (IEEE maxNum) returns the non-NaN operand */
        float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        for (; i + 16 <= n; i += 16) {
            m0 = vmaxnmq_f32(m0, vld1q_f32(p + i));
            m1 = vmaxnmq_f32(m1, vld1q_f32(p + i + 4));
            m2 = vmaxnmq_f32(m2, vld1q_f32(p + i + 8));
            m3 = vmaxnmq_f32(m3, vld1q_f32(p + i + 12));
        }
        m = vmaxnmvq_f32(vmaxnmq_f32(vmaxnmq_f32(m0, m1), vmaxnmq_f32(m2, m3)));
    }
#else
    {
        float a = -INFINITY, b = -INFINITY, c = -INFINITY, d = -INFINITY;
        for (; i + 4 <= n; i += 4) {
            a = p[i] > a ? p[i] : a;
            b = p[i + 1] > b ? p[i + 1] : b;
            c = p[i + 2] > c ? p[i + 2] : c;
            d = p[i + 3] > d ? p[i + 3] : d;
        }
        a = b > a ? b : a;
        c = d > c ? d : c;
        m = c > a ? c : a;
    }
#endif
    for (; i < n; i++)
        m = p[i] > m ? p[i] : m;
    return m;
}

static inline double ec_max_f64(const double *p, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    double m = -INFINITY;
#if defined(EC_HAVE_SSE2)
    if (n >= 2) {
        __m128d m0 = _mm_set1_pd(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        for (; i + 8 <= n; i += 8) {
            m0 = _mm_max_pd(_mm_loadu_pd(p + i), m0);
            m1 = _mm_max_pd(_mm_loadu_pd(p + i + 2), m1);
            m2 = _mm_max_pd(_mm_loadu_pd(p + i + 4), m2);
            m3 = _mm_max_pd(_mm_loadu_pd(p + i + 6), m3);
        }
        for (; i + 2 <= n; i += 2)
            m0 = _mm_max_pd(_mm_loadu_pd(p + i), m0);
        m0 = _mm_max_pd(_mm_max_pd(m0, m1), _mm_max_pd(m2, m3));
        m0 = _mm_max_pd(m0, _mm_shuffle_pd(m0, m0, 1));
        m = _mm_cvtsd_f64(m0);
    }
#elif defined(EC_HAVE_NEON)
    if (n >= 8) {
        float64x2_t m0 = vdupq_n_f64(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        for (; i + 8 <= n; i += 8) {
            m0 = vmaxnmq_f64(m0, vld1q_f64(p + i));
            m1 = vmaxnmq_f64(m1, vld1q_f64(p + i + 2));
            m2 = vmaxnmq_f64(m2, vld1q_f64(p + i + 4));
            m3 = vmaxnmq_f64(m3, vld1q_f64(p + i + 6));
        }
        m = vmaxnmvq_f64(vmaxnmq_f64(vmaxnmq_f64(m0, m1), vmaxnmq_f64(m2, m3)));
    }
#else
    {
        double a = -INFINITY, b = -INFINITY;
        for (; i + 2 <= n; i += 2) {
            a = p[i] > a ? p[i] : a;
            b = p[i + 1] > b ? p[i + 1] : b;
        }
        m = b > a ? b : a;
    }
#endif
    for (; i < n; i++)
        m = p[i] > m ? p[i] : m;
    return m;
}

#endif /* ECOMCORE_SIMD_H */
