use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use rand::RngExt;

use super::*;
use crate::distributions::GeneLikelihood;
use crate::models::LossOutput;
use crate::train::Silent;

/// Counts of `n` cells x `g` genes drawn from Poisson(`rate(cell, gene)`), a crude draw that is
/// enough for tests of the machinery; a cell drawn empty gets one count of gene 0.
pub(crate) fn poisson_counts(
    n: usize,
    g: usize,
    seed: u64,
    rate: &dyn Fn(usize, usize) -> f64,
) -> CsrMatrix {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut indptr = vec![0];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in 0..g {
            let rate = rate(i, j);
            let mut k = 0;
            let mut p = (-rate).exp();
            let mut cdf = p;
            let u: f64 = rng.random();
            while u > cdf && k < 60 {
                k += 1;
                p *= rate / k as f64;
                cdf += p;
            }
            if k > 0 {
                indices.push(j as u32);
                values.push(k as f32);
            }
        }
        if indptr.last() == Some(&indices.len()) {
            indices.push(0);
            values.push(1.0);
        }
        indptr.push(indices.len());
    }
    CsrMatrix::new(n, g, indptr, indices, values).unwrap()
}

/// Counts of `n` cells x `g` genes from two batches with different means.
pub(crate) fn synthetic(n: usize, g: usize, seed: u64) -> (CsrMatrix, Vec<u32>) {
    let batch: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let counts = poisson_counts(n, g, seed, &|i, j| {
        0.3 + 2.0 * ((j + batch[i] as usize * 3) % 5) as f64
    });
    (counts, batch)
}

/// Each parameter's id and rank.
struct Ids(Vec<(ParamId, usize)>);

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D));
    }
}

/// Loss terms (per cell, to the host) and every parameter's gradient of `objective` for one
/// training pass of `engine` with a fixed seed.
pub(crate) fn pass<M: GenerativeModule>(
    module: &M,
    cells: &CountData<'_>,
    rows: &[usize],
    labelled: &[usize],
    engine: Engine,
    objective: &dyn Fn(&LossOutput) -> Tensor<1>,
) -> (Vec<Vec<f32>>, HashMap<ParamId, Vec<f32>>) {
    let device = Device::flex().autodiff();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let mut ctx = StepContext::new(engine, Mode::Train, device, &mut rng);
    let mut batch = ctx.minibatch(cells, rows.to_vec());
    batch.labelled_rows = labelled.to_vec();
    let (_, _, loss) = module.forward(&mut ctx, &batch);
    let terms = vec![
        to_host(loss.reconstruction.clone()),
        to_host(loss.kl_z.clone()),
        loss.kl_library.clone().map(to_host).unwrap_or_default(),
    ];
    let grads = objective(&loss).backward();
    let mut out = HashMap::new();
    for (id, gradient) in ctx.host_gradients(&grads, &batch) {
        out.insert(id, gradient);
    }
    let params = GradientsParams::from_grads(grads, module);
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    for (id, rank) in ids.0 {
        if out.contains_key(&id) {
            continue;
        }
        let g = if rank == 2 {
            params.get::<2>(id).map(to_host)
        } else {
            params.get::<1>(id).map(to_host)
        };
        if let Some(g) = g {
            out.insert(id, g);
        }
    }
    (terms, out)
}

/// |a - b| <= rel * max(max |a|, floor), elementwise.
pub(crate) fn close(a: &[f32], b: &[f32], rel: f32, floor: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(floor);
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rel * scale,
            "{what}[{k}]: host {x} vs tensor {y} (scale {scale})"
        );
    }
}

/// The host-fused and the pure-tensor engines give the same loss terms and the same gradient
/// for every parameter, for the mean objective and for one that weights cells unequally (the
/// host engine's probe must weight the head's gradients by cell).
#[test]
fn both_engines_give_the_same_losses_and_gradients() {
    let configs = [
        (GeneLikelihood::Zinb, false, false, 1, true),
        (GeneLikelihood::Nb, true, false, 1, true),
        (GeneLikelihood::Zinb, true, true, 2, true),
        (GeneLikelihood::Zinb, false, true, 2, false),
    ];
    for (likelihood, latent_library, encode_covariates, n_layers, deep) in configs {
        let (counts, batch) = synthetic(40, 30, 3);
        let arch = ScviArchitecture {
            n_latent: 4,
            n_hidden: 16,
            likelihood,
            latent_library,
            encode_covariates,
            n_layers,
            deeply_inject_covariates: deep,
            ..ScviArchitecture::new(30, 2)
        };
        let data = CountsAndBatch {
            counts: &counts,
            batch: &batch,
        };
        let cells = data.prepare(&arch).unwrap();
        let (mean, var) = library_prior(&cells.log_library, &batch, 2);
        let device = Device::flex().autodiff();
        let module = ScviModule::new(
            &arch,
            Some((&mean, &var)),
            &mut Xoshiro256PlusPlus::seed_from_u64(7),
            &device,
        );
        let rows: Vec<usize> = (0..40)
            .rev()
            .step_by(2)
            .chain((0..40).step_by(2))
            .take(32)
            .collect();
        let mean_objective = |l: &LossOutput| l.objective(0.7);
        let weights: Vec<f32> = (0..rows.len())
            .map(|i| 0.2 + (i % 5) as f32 * 0.3)
            .collect();
        let weighted = |l: &LossOutput| {
            let w = crate::nn::tensor_2d(
                weights.clone(),
                weights.len(),
                1,
                &l.reconstruction.device(),
            );
            (l.reconstruction.clone() * w).sum() + l.kl_z.clone().mean()
        };
        let objectives: [&dyn Fn(&LossOutput) -> Tensor<1>; 2] = [&mean_objective, &weighted];
        for (k, objective) in objectives.iter().enumerate() {
            let (t_host, g_host) = pass(&module, &cells, &rows, &[], Engine::HostFused, *objective);
            let (t_tensor, g_tensor) =
                pass(&module, &cells, &rows, &[], Engine::Tensor, *objective);
            let what = format!(
                "{likelihood:?} library {latent_library} covariates {encode_covariates} layers {n_layers} objective {k}"
            );
            for (name, (a, b)) in ["reconstruction", "kl_z", "kl_library"]
                .iter()
                .zip(t_host.iter().zip(&t_tensor))
            {
                close(a, b, 1e-4, 1e-3, &format!("{what}: {name}"));
            }
            assert_eq!(
                g_host.len(),
                g_tensor.len(),
                "{what}: same parameters have gradients"
            );
            let names = weights::named_tensors(&module);
            let mut id_names = HashMap::new();
            {
                struct Named<'a>(&'a mut HashMap<ParamId, String>, Vec<String>);
                impl ModuleVisitor for Named<'_> {
                    fn enter_module(&mut self, n: &str, _: &str) {
                        self.1.push(n.into());
                    }
                    fn exit_module(&mut self, _: &str, _: &str) {
                        self.1.pop();
                    }
                    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                        self.0.insert(p.id, self.1.join("."));
                    }
                }
                module.visit(&mut Named(&mut id_names, Vec::new()));
            }
            assert!(names.0.len() >= g_host.len());
            // A gradient far below the model's largest (a bias before batch normalisation has
            // none in exact arithmetic) is compared on the scale of 1% of that largest one.
            let largest = g_host.values().flatten().fold(0f32, |m, v| m.max(v.abs()));
            for (id, a) in &g_host {
                let b = &g_tensor[id];
                close(
                    a,
                    b,
                    2e-4,
                    1e-2 * largest,
                    &format!("{what}: gradient of {}", id_names[id]),
                );
            }
        }
    }
}

/// The tensor-op lgamma agrees with the f64 series (and so its autodiff derivative is digamma).
#[test]
fn tensor_ln_gamma_matches_the_series() {
    let device = Device::flex();
    let z: Vec<f32> = vec![1e-3, 0.05, 0.5, 1.0, 2.5, 7.0, 33.3, 1234.5, 3.0e5];
    let t = crate::nn::tensor_2d(z.clone(), 1, z.len(), &device);
    let got = to_host(crate::distributions::tensor_ops::ln_gamma(t));
    for (&x, &y) in z.iter().zip(&got) {
        let want = crate::distributions::special::ln_gamma(x as f64);
        assert!(
            (y as f64 - want).abs() < 2e-6 * want.abs().max(1.0) + 1e-5,
            "ln_gamma({x}) = {y} vs {want}"
        );
    }
}

fn small_arch() -> ScviArchitecture {
    ScviArchitecture {
        n_latent: 3,
        n_hidden: 8,
        ..ScviArchitecture::new(12, 2)
    }
}

#[test]
fn training_is_seeded_and_weights_round_trip_by_name() {
    let (counts, batch) = synthetic(90, 12, 1);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let config = TrainConfig {
        max_epochs: Some(4),
        batch_size: 32,
        ..TrainConfig::default()
    };
    let train = || {
        ScviModel::train(
            small_arch(),
            &config,
            data,
            ComputeDevice::Flex,
            Engine::HostFused,
            &mut Silent,
        )
        .unwrap()
    };
    let a = train();
    let b = train();
    let za = a.latent(data).unwrap();
    assert_eq!(
        za.data,
        b.latent(data).unwrap().data,
        "same seed, same latent"
    );
    assert!(a.history[3].train.loss < a.history[0].train.loss);
    let bytes = a.weights_bytes();
    let names = weights::decode(&bytes).unwrap();
    assert!(names.contains("z_encoder.layers.layers.0.linear.weight"));
    assert!(names.contains("decoder.head.log_theta"));
    assert!(names.contains("z_encoder.layers.layers.0.norm.running_var"));
    let reloaded =
        ScviModel::from_parts(small_arch(), &bytes, ComputeDevice::Flex, Engine::Tensor).unwrap();
    let zr = reloaded.latent(data).unwrap();
    for (x, y) in za.data.iter().zip(&zr.data) {
        assert!((x - y).abs() < 1e-5, "reloaded latent {y} vs {x}");
    }
    // A damaged architecture fails before anything is allocated.
    let huge = ScviArchitecture {
        n_hidden: 1_000_000_000,
        ..small_arch()
    };
    let e = ScviModel::from_parts(huge, &bytes, ComputeDevice::Flex, Engine::HostFused)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("n_hidden"), "{e}");
    let wider = ScviArchitecture {
        n_hidden: 9,
        ..small_arch()
    };
    let e = ScviModel::from_parts(wider, &bytes, ComputeDevice::Flex, Engine::HostFused)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not match its weights"), "{e}");
}

/// Mends: the decoder honours `deeply_inject_covariates`; a single batch adds no one-hot column.
#[test]
fn covariate_injection_follows_the_architecture() {
    let device = Device::flex();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let arch = ScviArchitecture {
        n_layers: 2,
        deeply_inject_covariates: false,
        ..small_arch()
    };
    let m = ScviModule::new(&arch, None, &mut rng, &device);
    let dims = |l: &burn::nn::Linear| l.weight.val().dims();
    assert_eq!(dims(&m.decoder.layers.layers[0].linear), [3 + 2, 8]);
    assert_eq!(dims(&m.decoder.layers.layers[1].linear), [8, 8]);
    let deep = ScviModule::new(
        &ScviArchitecture {
            deeply_inject_covariates: true,
            ..arch.clone()
        },
        None,
        &mut rng,
        &device,
    );
    assert_eq!(dims(&deep.decoder.layers.layers[1].linear), [8 + 2, 8]);
    let one_batch = ScviModule::new(
        &ScviArchitecture {
            n_batch: 1,
            encode_covariates: true,
            ..arch
        },
        None,
        &mut rng,
        &device,
    );
    assert_eq!(dims(&one_batch.decoder.layers.layers[0].linear), [3, 8]);
    assert_eq!(dims(&one_batch.z_encoder.layers.layers[0].linear), [12, 8]);
}

/// Expression in chunks with a gene subset equals the matching columns of the full result.
#[test]
fn expression_subsets_genes_and_streams_cells() {
    let (counts, batch) = synthetic(1100, 12, 2);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let config = TrainConfig {
        max_epochs: Some(1),
        ..TrainConfig::default()
    };
    let model = ScviModel::train(
        small_arch(),
        &config,
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    let collect = |genes: Option<&[usize]>| {
        let width = genes.map_or(12, |g| g.len());
        let mut out = vec![0f32; 1100 * width];
        let mut chunks = 0;
        model
            .normalized_expression(
                data,
                &[1],
                LibraryScale::Constant(1.0),
                genes,
                &mut |start, block| {
                    out[start * width..start * width + block.len()].copy_from_slice(block);
                    chunks += 1;
                },
            )
            .unwrap();
        (out, chunks)
    };
    let (full, chunks) = collect(None);
    assert_eq!(chunks, 2);
    for row in full.chunks(12) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let (sub, _) = collect(Some(&[5, 0]));
    for i in 0..1100 {
        assert_eq!(sub[2 * i], full[12 * i + 5]);
        assert_eq!(sub[2 * i + 1], full[12 * i]);
    }
    assert!(
        model
            .normalized_expression(
                data,
                &[],
                LibraryScale::Observed,
                Some(&[12]),
                &mut |_, _| {}
            )
            .is_err()
    );
}

/// A file of the scvi-tools parity fixture (tests/fixtures/scvi_parity, made by its
/// make_fixture.py), found at run time.
fn parity_path(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    std::path::Path::new(&dir)
        .join("../../../tests/fixtures/scvi_parity")
        .join(name)
}

fn parity_file(name: &str) -> Vec<Vec<f64>> {
    use std::io::Read;
    let path = parity_path(name);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("parity fixture"))
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| l.split('\t').map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// A trained scvi-tools 1.4.2 SCVI (200 genes, 300 cells, 2 batches, 2 layers) loaded by name
/// reproduces scvi-tools' eval-mode numbers: per-cell reconstruction loss and KL(z), latent
/// means, normalized expression for the cells' own batch and for batch 1, on both engines.
#[test]
fn scvi_tools_weights_reproduce_scvi_tools() {
    let dense = parity_file("counts.tsv.gz");
    let batch: Vec<u32> = parity_file("batch.tsv.gz")[0]
        .iter()
        .map(|&b| b as u32)
        .collect();
    let (n, g) = (dense.len(), dense[0].len());
    let mut indptr = vec![0];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for row in &dense {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                indices.push(j as u32);
                values.push(v as f32);
            }
        }
        indptr.push(indices.len());
    }
    let counts = CsrMatrix::new(n, g, indptr, indices, values).unwrap();
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let arch = ScviArchitecture {
        n_layers: 2,
        ..ScviArchitecture::new(g, 2)
    };
    let bytes = std::fs::read(parity_path("weights.cwt")).unwrap();
    let expect = |name: &str| -> Vec<f64> { parity_file(name).into_iter().flatten().collect() };
    let check = |got: &[f64], want: &[f64], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0f64, f64::max);
        eprintln!("{what}: largest relative difference {worst:e}");
        assert!(
            worst < 1e-4,
            "{what}: largest relative difference {worst:e}"
        );
    };
    for engine in [Engine::HostFused, Engine::Tensor] {
        let model =
            ScviModel::from_parts(arch.clone(), &bytes, ComputeDevice::Flex, engine).unwrap();
        check(
            &model.latent(data).unwrap().data,
            &expect("latent_mean.tsv.gz"),
            "latent means",
        );
        for (transform, file) in [
            (vec![], "expression_own_batch.tsv.gz"),
            (vec![1], "expression_batch_1.tsv.gz"),
        ] {
            let mut out = vec![0f32; n * g];
            model
                .normalized_expression(
                    data,
                    &transform,
                    LibraryScale::Constant(1.0),
                    None,
                    &mut |s, b| out[s * g..s * g + b.len()].copy_from_slice(b),
                )
                .unwrap();
            let out: Vec<f64> = out.into_iter().map(f64::from).collect();
            check(
                &out,
                &expect(file),
                &format!("{engine:?} normalized expression {file}"),
            );
        }
        let cells = data.prepare(&arch).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let mut ctx = StepContext::new(engine, Mode::Predict, Device::flex(), &mut rng);
        let batch = ctx.minibatch(&cells, (0..n).collect());
        let (_, _, loss) = model.module.forward(&mut ctx, &batch);
        let host = |t: Tensor<2>| -> Vec<f64> { to_host(t).into_iter().map(f64::from).collect() };
        check(
            &host(loss.reconstruction),
            &expect("reconstruction.tsv.gz"),
            &format!("{engine:?} reconstruction"),
        );
        check(
            &host(loss.kl_z),
            &expect("kl_z.tsv.gz"),
            &format!("{engine:?} KL(z)"),
        );
    }
}

/// The trainer: a parameter group with its own learning rate (0 here) is left alone by the main
/// optimiser on both engines, and a penalty adds its named term to the history.
#[test]
fn trainer_honours_parameter_groups_and_penalties() {
    let (counts, batch) = synthetic(96, 12, 4);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let arch = small_arch();
    let cells = data.prepare(&arch).unwrap();
    let config = TrainConfig {
        max_epochs: Some(2),
        batch_size: 32,
        ..TrainConfig::default()
    };
    for engine in [Engine::HostFused, Engine::Tensor] {
        let device = Device::flex();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let module = ScviModule::new(&arch, None, &mut rng, &device.clone().autodiff());
        let theta_before = to_host(module.decoder.head.log_theta.val());
        let mean_before = to_host(module.z_encoder.mean.weight.val());
        let split = DataSplit::random(96, 0.9, 32, &mut rng);
        let mut plan = TrainingPlan::new(engine);
        plan.groups.push(crate::train::ParamGroup {
            name: "dispersion".into(),
            params: vec![module.decoder.head.log_theta.id],
            lr: 0.0,
            adam_eps: 0.01,
            weight_decay: 0.0,
        });
        plan.penalties.push((
            Box::new(crate::penalties::Mmd {
                weight: 2.0,
                site: crate::penalties::MmdSite::Latent,
                bandwidths: vec![1.0],
            }),
            BATCH,
        ));
        let fitted = fit(
            module,
            &cells,
            &split,
            &config,
            &mut plan,
            &device,
            &mut rng,
            &mut Silent,
        )
        .unwrap();
        assert_eq!(
            to_host(fitted.module.decoder.head.log_theta.val()),
            theta_before,
            "{engine:?}"
        );
        assert_ne!(
            to_host(fitted.module.z_encoder.mean.weight.val()),
            mean_before,
            "{engine:?}"
        );
        let last = fitted.history.last().unwrap();
        assert_eq!(last.train.extra.len(), 1);
        let (name, mmd) = &last.train.extra[0];
        assert_eq!(name, "mmd");
        assert!(mmd.is_finite() && *mmd >= -1e-6);
        let expected = last.train.reconstruction + last.kl_weight * last.train.kl_z + 2.0 * mmd;
        assert!((last.train.loss - expected).abs() < 1e-6 * expected.abs());
    }
}

/// The CVAE (scVI's module with CoMP's settings): the posterior variance is the fixed one, every
/// penalty trains on it with minibatches that hold both conditions and records its term, and a
/// model reloaded from its weights gives the same latent.
#[test]
fn the_cvae_trains_with_each_penalty_and_round_trips() {
    let (counts, batch) = synthetic(120, 12, 5);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let arch = ScviArchitecture {
        n_hidden: 16,
        n_layers: 2,
        n_latent: 4,
        ..ScviArchitecture::cvae(12, 2)
    };
    assert!(arch.encode_covariates && !arch.deeply_inject_covariates);
    let cells = data.prepare(&arch).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let module = ScviModule::new(&arch, None, &mut rng, &Device::flex());
    let mut ctx = StepContext::new(Engine::Tensor, Mode::Train, Device::flex(), &mut rng);
    let mb = ctx.minibatch(&cells, (0..40).collect());
    let inference = module.inference(&mut ctx, &mb);
    assert!(
        to_host(inference.qz.var.clone())
            .iter()
            .all(|&v| (v - 0.01).abs() < 1e-7)
    );
    for name in ["mmd", "trvae", "comp", "mine", "hsic"] {
        let config = TrainConfig {
            max_epochs: Some(2),
            batch_size: 32,
            kl_weight: 1e-3,
            n_epochs_kl_warmup: 0,
            penalty: Some(crate::penalties::PenaltySpec::default_for(name, 2.0).unwrap()),
            ..TrainConfig::default()
        };
        let model = ScviModel::train(
            arch.clone(),
            &config,
            data,
            ComputeDevice::Flex,
            Engine::HostFused,
            &mut Silent,
        )
        .unwrap();
        let last = model.history.last().unwrap();
        let term = config.penalty.as_ref().unwrap().name();
        assert_eq!(last.train.extra.len(), 1, "{name}");
        assert_eq!(last.train.extra[0].0, term);
        assert!(last.train.extra[0].1.is_finite(), "{name}");
        // The KL weight scales the KL term in the objective.
        let expected =
            last.train.reconstruction + 1e-3 * last.train.kl_z + 2.0 * last.train.extra[0].1;
        assert!(
            (last.train.loss - expected).abs() < 1e-5 * expected.abs(),
            "{name}"
        );
        let z = model.latent(data).unwrap();
        let reloaded = ScviModel::from_parts(
            arch.clone(),
            &model.weights_bytes(),
            ComputeDevice::Flex,
            Engine::Tensor,
        )
        .unwrap();
        for (a, b) in z.data.iter().zip(&reloaded.latent(data).unwrap().data) {
            assert!((a - b).abs() < 1e-5, "{name}: reloaded {b} vs {a}");
        }
    }
    let too_small = TrainConfig {
        batch_size: 3,
        penalty: Some(crate::penalties::PenaltySpec::default_for("comp", 1.0).unwrap()),
        ..TrainConfig::default()
    };
    let e = ScviModel::train(
        arch,
        &too_small,
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("batch_size"), "{e}");
}

/// The Gaussian head (CoMP's decoder): log N(log1p(10^4 x / total); mean, sd^2) per cell, the
/// same on both engines and equal to the density computed directly; a model with it trains
/// and decodes frequencies that sum to 1.
#[test]
fn the_gaussian_head_scores_log_normalised_expression() {
    let (counts, batch) = synthetic(60, 12, 8);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let arch = ScviArchitecture {
        likelihood: GeneLikelihood::Gaussian,
        n_hidden: 16,
        n_layers: 1,
        n_latent: 3,
        ..ScviArchitecture::cvae(12, 2)
    };
    let cells = data.prepare(&arch).unwrap();
    let device = Device::flex();
    let module = ScviModule::new(
        &arch,
        None,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
        &device,
    );
    let rows: Vec<usize> = (0..20).collect();
    let mut per_engine = Vec::new();
    for engine in [Engine::HostFused, Engine::Tensor] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut ctx = StepContext::new(engine, Mode::Predict, device.clone(), &mut rng);
        let mb = ctx.minibatch(&cells, rows.clone());
        let inference = module.inference(&mut ctx, &mb);
        let hidden = module
            .decoder
            .hidden(&mut ctx, inference.qz.mean.clone(), &inference.batch);
        let ll = to_host(ctx.count_log_likelihood(
            &module.decoder.head,
            hidden.clone(),
            inference.log_library.clone(),
            &mb,
        ));
        let mean = to_host(module.decoder.head.scale.forward(hidden.clone()));
        let sd_pre = to_host(module.decoder.head.sd.as_ref().unwrap().forward(hidden));
        for (i, &r) in rows.iter().enumerate() {
            let sd = (1.0 + (sd_pre[i] as f64).exp()).ln() + 0.01;
            let total: f64 = counts.row(r).1.iter().map(|&v| v as f64).sum();
            let mut x = vec![0f64; 12];
            for (&c, &v) in counts.row(r).0.iter().zip(counts.row(r).1) {
                x[c as usize] = (1e4 * v as f64 / total).ln_1p();
            }
            let direct: f64 = (0..12)
                .map(|j| {
                    let z = (x[j] - mean[i * 12 + j] as f64) / sd;
                    -0.5 * (z * z + (2.0 * std::f64::consts::PI).ln()) - sd.ln()
                })
                .sum();
            assert!(
                (ll[i] as f64 - direct).abs() < 1e-3 * direct.abs().max(1.0),
                "{engine:?} cell {r}: {} vs {direct}",
                ll[i]
            );
        }
        per_engine.push(ll);
    }
    close(
        &per_engine[0],
        &per_engine[1],
        1e-5,
        1e-4,
        "Gaussian log-likelihood",
    );
    let config = TrainConfig {
        max_epochs: Some(6),
        batch_size: 30,
        kl_weight: 1e-3,
        n_epochs_kl_warmup: 0,
        ..TrainConfig::default()
    };
    let model = ScviModel::train(
        arch,
        &config,
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    assert!(model.history[5].train.reconstruction < model.history[0].train.reconstruction);
    let mut sums = Vec::new();
    model
        .normalized_expression(
            data,
            &[1],
            LibraryScale::Constant(1.0),
            None,
            &mut |_, block| sums.extend(block.chunks(12).map(|r| r.iter().sum::<f32>())),
        )
        .unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4));
}
