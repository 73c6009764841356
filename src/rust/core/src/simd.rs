//! Processor features and state shared by the numeric kernels.

/// faer's matrix-product kernels return with the upper halves of the AVX registers dirty;
/// later SSE instructions on the thread (libm's exp, scalar float code compiled for the
/// baseline target) then pay a transition penalty (measured here: Harmony's membership update
/// 10x slower). Call after a faer product, before scalar code. A no-op without AVX.
#[inline]
pub fn clear_upper_simd_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is available (checked above); vzeroupper only clears register halves.
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

/// Whether the processor runs AVX2 and FMA code (the kernels compiled for them dispatch on this).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
