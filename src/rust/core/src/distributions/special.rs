//! Special functions burn does not have: log-gamma and digamma for positive arguments.
//! Both shift the argument up by the recurrence until an asymptotic series is accurate to
//! better than 1e-13, then evaluate the series; f64 throughout.

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// ln Γ(z) for z > 0 (Stirling series after shifting z to >= 7).
pub fn ln_gamma(z: f64) -> f64 {
    debug_assert!(z > 0.0, "ln_gamma needs z > 0, got {z}");
    let mut x = z;
    let mut product = 1.0;
    while x < 7.0 {
        product *= x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv
        * (1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    (x - 0.5) * x.ln() - x + HALF_LN_2PI + series - product.ln()
}

/// ψ(z) = d/dz ln Γ(z) for z > 0 (asymptotic series after shifting z to >= 10).
pub fn digamma(z: f64) -> f64 {
    debug_assert!(z > 0.0, "digamma needs z > 0, got {z}");
    let mut x = z;
    let mut shift = 0.0;
    while x < 10.0 {
        shift += 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv2
        * (1.0 / 12.0
            - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))));
    x.ln() - 0.5 * inv - series - shift
}

/// log(1 + exp(x)) without overflow.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// 1 / (1 + exp(-x)) without overflow.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: scipy.special.gammaln / digamma (double precision).
    const REFERENCE: &[(f64, f64, f64)] = &[
        (1e-6, 13.81550998074943, -1000000.57721402),
        (0.01, 4.599479878042022, -100.56088545786868),
        (0.1, 2.252712651734206, -10.423754940411076),
        (0.5, 0.5723649429247, -1.9635100260214235),
        (1.0, 0.0, -0.5772156649015329),
        (1.5, -0.12078223763524526, 0.03648997397857652),
        (2.0, 0.0, 0.42278433509846713),
        (3.7, 1.428072326665388, 1.1671535393615113),
        (10.0, 12.801827480081469, 2.251752589066721),
        (25.5, 56.38916764371994, 3.2189424728839198),
        (123.4, 469.3360974421906, 4.8113737751162775),
        (1e4, 82099.71749644238, 9.21029037114285),
        (1e7, 151180949.36947393, 16.11809560095832),
    ];

    #[test]
    fn ln_gamma_matches_reference_values() {
        for &(z, lg, _) in REFERENCE {
            let err = (ln_gamma(z) - lg).abs() / lg.abs().max(1.0);
            assert!(err < 1e-12, "ln_gamma({z}) = {} vs {lg}", ln_gamma(z));
        }
    }

    #[test]
    fn digamma_matches_reference_values() {
        for &(z, _, dg) in REFERENCE {
            let err = (digamma(z) - dg).abs() / dg.abs().max(1.0);
            assert!(err < 1e-12, "digamma({z}) = {} vs {dg}", digamma(z));
        }
    }

    #[test]
    fn ln_gamma_of_integers_is_log_factorial() {
        let mut log_fact = 0.0f64;
        for n in 1..60u32 {
            assert!((ln_gamma(n as f64) - log_fact).abs() < 1e-9 * log_fact.max(1.0));
            log_fact += (n as f64).ln();
        }
    }

    #[test]
    fn digamma_is_the_derivative_of_ln_gamma() {
        for &z in &[0.05, 0.7, 3.3, 40.0] {
            let h = 1e-5 * z;
            let fd = (ln_gamma(z + h) - ln_gamma(z - h)) / (2.0 * h);
            assert!((fd - digamma(z)).abs() < 1e-6 * digamma(z).abs().max(1.0));
        }
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.3) + sigmoid(-0.3) - 1.0).abs() < 1e-15);
    }
}
