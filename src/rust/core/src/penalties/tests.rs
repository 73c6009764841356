use super::*;
use crate::nn::{standard_normal, tensor_2d, to_host};
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn rep_of(z: Tensor<2>, sd: f32) -> Representation {
    let var = z.clone().zeros_like().add_scalar(sd * sd);
    Representation {
        z: z.clone(),
        mean: z.clone(),
        var,
        decoder_first: z,
    }
}

/// Two conditions: half the cells shifted by `shift` in every dimension.
fn two_conditions(
    n: usize,
    d: usize,
    shift: f32,
    seed: u64,
    device: &Device,
) -> (Tensor<2>, Vec<u32>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let z = standard_normal(&mut rng, n, d, device);
    let conditions: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let offset: Vec<f32> = (0..n * d)
        .map(|i| if (i / d) % 2 == 1 { shift } else { 0.0 })
        .collect();
    (z + tensor_2d(offset, n, d, device), conditions)
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(to_host(t)[0])
}

/// Every penalty is near its floor when the conditions share a distribution, clearly larger
/// when they are apart, and has a gradient with respect to the representation.
#[test]
fn penalties_separate_shifted_conditions_and_have_gradients() {
    let device = Device::flex().autodiff();
    let n = 256;
    for name in ["mmd", "trvae", "comp", "hsic"] {
        let spec = PenaltySpec::default_for(name, 1.0).unwrap();
        spec.validate(2, n).unwrap();
        let mut penalty = spec.build(2, 4, 0, &device);
        let (mixed, codes) = two_conditions(n, 4, 0.0, 1, &device);
        let (apart, _) = two_conditions(n, 4, 3.0, 1, &device);
        let leaf = apart.detach().require_grad();
        let same = scalar(penalty.value(&rep_of(mixed, 0.5), &codes));
        let value = penalty.value(&rep_of(leaf.clone(), 0.5), &codes);
        let shifted = scalar(value.clone());
        assert!(
            shifted > 3.0 * same.abs().max(0.01),
            "{name}: same {same}, shifted {shifted}"
        );
        let g = to_host(leaf.grad(&value.backward()).expect("gradient"));
        assert!(
            g.iter().all(|v| v.is_finite()) && g.iter().any(|v| v.abs() > 1e-5),
            "{name}"
        );
    }
}

/// CoMP's pairwise log posterior is log N(z_i; mu_j, diag v_j) computed directly.
#[test]
fn comp_pairwise_log_posterior_matches_the_direct_density() {
    let device = Device::flex();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let (n, d) = (5, 3);
    let z = standard_normal(&mut rng, n, d, &device);
    let mean = standard_normal(&mut rng, n, d, &device);
    let var = standard_normal(&mut rng, n, d, &device)
        .powi_scalar(2)
        .add_scalar(0.1);
    let got = to_host(comp::pairwise_log_posterior(
        z.clone(),
        mean.clone(),
        var.clone(),
    ));
    let (z, mean, var) = (to_host(z), to_host(mean), to_host(var));
    for i in 0..n {
        for j in 0..n {
            let direct: f64 = (0..d)
                .map(|k| {
                    let (x, m, v) = (
                        z[i * d + k] as f64,
                        mean[j * d + k] as f64,
                        var[j * d + k] as f64,
                    );
                    -0.5 * ((x - m).powi(2) / v + v.ln() + (2.0 * std::f64::consts::PI).ln())
                })
                .sum();
            assert!((got[i * n + j] as f64 - direct).abs() < 1e-4, "{i},{j}");
        }
    }
}

/// CoMP on a hand-checkable minibatch: the cells' own-condition and other-condition mixtures
/// (the cell itself left out) from the formula of seed 001.
#[test]
fn comp_penalty_is_the_log_ratio_of_posterior_mixtures() {
    let device = Device::flex();
    let z = tensor_2d(vec![0.0, 0.3, 2.0, 2.5, 0.1], 5, 1, &device);
    let codes = [0u32, 0, 1, 1, 1];
    let sd = 0.7f64;
    for include_self in [false, true] {
        let value = scalar(comp::comp_penalty(
            &rep_of(z.clone(), sd as f32),
            &codes,
            include_self,
        ));
        let zs: [f64; 5] = [0.0, 0.3, 2.0, 2.5, 0.1];
        let log_q = |i: usize, j: usize| -> f64 {
            -0.5 * ((zs[i] - zs[j]).powi(2) / (sd * sd)
                + (sd * sd).ln()
                + (2.0 * std::f64::consts::PI).ln())
        };
        let mut expected = 0.0;
        for i in 0..5 {
            let own: Vec<usize> = (0..5)
                .filter(|&j| (include_self || j != i) && codes[j] == codes[i])
                .collect();
            let other: Vec<usize> = (0..5).filter(|&j| codes[j] != codes[i]).collect();
            let mix = |js: &[usize]| {
                (js.iter().map(|&j| log_q(i, j).exp()).sum::<f64>() / js.len() as f64).ln()
            };
            expected += mix(&own) - mix(&other);
        }
        expected /= 5.0;
        assert!(
            (value - expected).abs() < 1e-4,
            "{include_self}: {value} vs {expected}"
        );
    }
}

/// The seed's MMD: for two samples of one distribution it is small; the value is the square
/// root of the biased estimate, computed here by hand for one dimension and one bandwidth.
#[test]
fn mmd_matches_a_hand_computed_value() {
    let device = Device::flex();
    let x = [0.0f64, 1.0, 3.0, 4.0];
    let codes = [0u32, 1, 0, 1];
    let mmd = Mmd {
        weight: 1.0,
        site: MmdSite::Latent,
        bandwidths: vec![1.5],
    };
    let got = scalar(mmd.of(
        tensor_2d(x.iter().map(|&v| v as f32).collect(), 4, 1, &device),
        &codes,
    ));
    let mean = 2.0;
    let sd = ((x.iter().map(|v| (v - mean).powi(2)).sum::<f64>()) / 3.0).sqrt();
    let s: Vec<f64> = x.iter().map(|v| (v - mean) / sd).collect();
    let k = |a: f64, b: f64| (-(a - b).powi(2) / (2.0 * 1.5 * 1.5)).exp();
    let block = |p: &[usize], q: &[usize]| {
        let mut t = 0.0;
        for &i in p {
            for &j in q {
                t += k(s[i], s[j]);
            }
        }
        t / (p.len() * q.len()) as f64
    };
    let (a, b) = ([0usize, 2], [1usize, 3]);
    let expected = (block(&a, &a) + block(&b, &b) - 2.0 * block(&a, &b) + 1e-8).sqrt();
    assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
}

/// HSIC's bandwidth: the mean norm of a standard normal (g = sqrt(2) Gamma((d+1)/2) /
/// Gamma(d/2) up to the seed's factor 2 / sqrt(2)); seed 000's d = 10 gives gamma = 0.0263.
#[test]
fn hsic_bandwidth_follows_the_seed() {
    assert!(
        (hsic::gamma_for(10) - 0.0263).abs() < 1e-4,
        "{}",
        hsic::gamma_for(10)
    );
}

/// Validation names the argument: one condition, minibatches too small, bad weights.
#[test]
fn penalty_settings_are_checked() {
    let spec = PenaltySpec::default_for("comp", 1.0).unwrap();
    let e = spec.validate(1, 128).unwrap_err().to_string();
    assert!(e.contains("condition"), "{e}");
    let e = spec.validate(3, 5).unwrap_err().to_string();
    assert!(e.contains("batch_size") && e.contains(">= 6"), "{e}");
    let e = PenaltySpec::default_for("comp", -1.0)
        .unwrap()
        .validate(2, 128)
        .unwrap_err()
        .to_string();
    assert!(e.contains("penalty_weight"), "{e}");
    assert!(
        PenaltySpec::default_for("nope", 1.0)
            .unwrap_err()
            .to_string()
            .contains("penalty")
    );
}

/// MINE: the adversary learns a dependence that is there (a large bound on shifted
/// conditions) and finds next to none on independent ones.
#[test]
fn mine_estimate_detects_dependence() {
    let device = Device::flex();
    let n = 1500;
    let make = |shift: f64| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let z = to_host(standard_normal(&mut rng, n, 2, &device));
        let codes: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let values: Vec<f64> = z
            .iter()
            .enumerate()
            .map(|(k, &v)| v as f64 + if (k / 2) % 2 == 1 { shift } else { 0.0 })
            .collect();
        (crate::data::DenseMatrix::new(n, 2, values).unwrap(), codes)
    };
    let config = mine::EstimateConfig {
        network: MineConfig {
            n_layers: 2,
            n_hidden: 32,
            lr: 1e-3,
            ..MineConfig::default()
        },
        epochs: 20,
        batch_size: 64,
        ..mine::EstimateConfig::default()
    };
    let (apart, codes) = make(4.0);
    let dependent = mine::estimate(&apart, &codes, 2, &config, &device, &mut || false).unwrap();
    let (mixed, codes) = make(0.0);
    let independent = mine::estimate(&mixed, &codes, 2, &config, &device, &mut || false).unwrap();
    // I(z; s) <= ln 2 = 0.693 for a balanced binary s; well separated conditions approach it
    // (a bound on 300 held-out cells has some noise of its own).
    assert!(
        dependent.test > 0.4 && dependent.test < 0.85,
        "{dependent:?}"
    );
    assert!(independent.test.abs() < 0.1, "{:?}", independent.test);
    assert_eq!(dependent.history.len(), 20);
}

/// The MINE penalty trains its network before each step (its bound rises on dependent data)
/// and passes a gradient to z.
#[test]
fn mine_penalty_trains_its_adversary() {
    let device = Device::flex().autodiff();
    let spec = PenaltySpec {
        kind: PenaltyKind::Mine(MineConfig {
            n_layers: 2,
            n_hidden: 32,
            lr: 1e-3,
            ..MineConfig::default()
        }),
        weight: 1.0,
    };
    let mut penalty = spec.build(2, 3, 0, &device);
    let (z, codes) = two_conditions(256, 3, 3.0, 4, &device);
    let rep = rep_of(z.detach(), 0.1);
    let before = scalar(penalty.value(&rep, &codes));
    for _ in 0..150 {
        penalty.before_step(&rep.detach(), &codes).unwrap();
    }
    let leaf = rep.z.clone().require_grad();
    let value = penalty.value(&rep_of(leaf.clone(), 0.1), &codes);
    let after = scalar(value.clone());
    assert!(
        after > before + 0.2 && after < 0.75,
        "before {before}, after {after}"
    );
    let g = to_host(leaf.grad(&value.backward()).expect("gradient"));
    assert!(g.iter().any(|v| v.abs() > 1e-6));
}
