use burn::tensor::Device;

use super::*;
use crate::models::LossOutput;
use crate::models::scvi::tests::{close, pass, poisson_counts};
use crate::models::scvi::{ScviArchitecture, ScviModel};
use crate::nn::weights::NamedTensors;
use crate::nn::{tensor_2d, to_host};
use crate::train::Silent;

/// `n` cells x `g` genes: three cell types (each raising its own block of genes) in two batches
/// (a milder shift). Returns counts, batch codes and label codes.
fn typed_cells(n: usize, g: usize, seed: u64) -> (CsrMatrix, Vec<u32>, Vec<u32>) {
    let batch: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let labels: Vec<u32> = (0..n).map(|i| ((i / 2) % 3) as u32).collect();
    let counts = poisson_counts(n, g, seed, &|i, j| {
        let own = j % 3 == labels[i] as usize;
        let shift = if batch[i] == 1 && j % 2 == 0 {
            1.5
        } else {
            1.0
        };
        let base = if own { 4.0 } else { 0.5 };
        base * shift
    });
    (counts, batch, labels)
}

fn small_arch(g: usize, hierarchy: Option<LabelHierarchy>) -> ScanviArchitecture {
    ScanviArchitecture {
        scvi: ScviArchitecture {
            n_latent: 4,
            n_hidden: 16,
            ..ScviArchitecture::new(g, 2)
        },
        n_labels: 3,
        linear_classifier: false,
        hierarchy,
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        max_epochs: Some(epochs),
        batch_size: 32,
        ..TrainConfig::default()
    }
}

/// With a hierarchy, q(c | z) = softmax of c's logit among its siblings x q(parent | z): the
/// seed's formula, checked against the two classifiers' own logits.
#[test]
fn hierarchical_probabilities_follow_the_seed_formula() {
    let hierarchy = LabelHierarchy::new(vec![1, 0, 1], 2).unwrap();
    let arch = small_arch(12, Some(hierarchy.clone()));
    let device = Device::flex();
    let module = ScanviModule::new(
        &arch,
        None,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
        &device,
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let z: Vec<f32> = (0..5 * 4)
        .map(|k| ((k * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let z = tensor_2d(z, 5, 4, &device);
    let mut ctx = StepContext::new(Engine::Tensor, Mode::Predict, device.clone(), &mut rng);
    let probs = to_host(module.classify(&mut ctx, z.clone()).exp());
    let logits = to_host(module.classifier.logits(&mut ctx, z.clone()));
    let group_logits = to_host(
        module
            .classifier_groups
            .as_ref()
            .unwrap()
            .logits(&mut ctx, z),
    );
    for i in 0..5 {
        let row: f32 = probs[i * 3..i * 3 + 3].iter().sum();
        assert!((row - 1.0).abs() < 1e-5, "row {i} sums to {row}");
        let g = &group_logits[i * 2..i * 2 + 2];
        let gz: f32 = g.iter().map(|v| v.exp()).sum();
        for c in 0..3 {
            let parent = hierarchy.parent[c] as usize;
            let siblings: f32 = (0..3)
                .filter(|&j| hierarchy.parent[j] as usize == parent)
                .map(|j| logits[i * 3 + j].exp())
                .sum();
            let expected = logits[i * 3 + c].exp() / siblings * g[parent].exp() / gz;
            assert!(
                (probs[i * 3 + c] - expected).abs() < 1e-5,
                "cell {i} label {c}"
            );
        }
    }
    let groups = hierarchy.group_probabilities(&[0.2, 0.5, 0.3], 3);
    assert_eq!(groups, vec![0.5, 0.5]);
    assert!(
        LabelHierarchy::new(vec![0, 0, 2], 3).is_err(),
        "a parent without children"
    );
}

/// Both engines give the same scANVI losses and gradients, the labelled cells' encoder pass
/// included (the host engine's first layer is then used by two passes of one step).
#[test]
fn both_engines_agree_on_the_semi_supervised_objective() {
    let (counts, batch, labels) = typed_cells(48, 12, 3);
    let arch = small_arch(12, Some(LabelHierarchy::new(vec![0, 0, 1], 2).unwrap()));
    let data = LabelledCounts {
        counts: &counts,
        batch: &batch,
        labels: &labels,
    };
    let cells = prepare(&arch, data).unwrap();
    let device = Device::flex().autodiff();
    let module = ScanviModule::new(
        &arch,
        None,
        &mut Xoshiro256PlusPlus::seed_from_u64(7),
        &device,
    );
    let rows: Vec<usize> = (0..32).collect();
    let labelled: Vec<usize> = (16..48).step_by(2).collect();
    let objective = |l: &LossOutput| l.objective(0.3);
    let (t_host, g_host) = pass(
        &module,
        &cells,
        &rows,
        &labelled,
        Engine::HostFused,
        &objective,
    );
    let (t_tensor, g_tensor) = pass(
        &module,
        &cells,
        &rows,
        &labelled,
        Engine::Tensor,
        &objective,
    );
    for (a, b) in t_host.iter().zip(&t_tensor) {
        close(a, b, 1e-4, 1e-3, "loss terms");
    }
    assert_eq!(g_host.len(), g_tensor.len());
    // Biases feeding a batch norm have a true gradient of zero: what both engines give there
    // is rounding noise (~1e-6), hence the absolute floor.
    for (id, g) in &g_host {
        close(g, &g_tensor[id], 2e-3, 1e-2, "gradient");
    }
}

/// Warm-started from scVI, scANVI starts from scVI's latent exactly, learns the labels of the
/// hidden cells, and reloads from its saved weights to the same outputs.
#[test]
fn scanvi_from_scvi_transfers_labels_and_reloads_exactly() {
    let (counts, batch, truth) = typed_cells(300, 12, 5);
    let arch = small_arch(12, None);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let scvi = ScviModel::train(
        arch.scvi.clone(),
        &config(15),
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    let scvi_latent = scvi.latent(data).unwrap();

    let warm = with_scvi_weights(
        ScanviModule::new(
            &arch,
            None,
            &mut Xoshiro256PlusPlus::seed_from_u64(3),
            &Device::flex(),
        ),
        &weights::named_tensors(&scvi.module),
    )
    .unwrap();
    let untrained = ScanviModel {
        arch: arch.clone(),
        module: warm,
        device: ComputeDevice::Flex,
        engine: Engine::HostFused,
        history: Vec::new(),
        profile: StepProfile::default(),
    };
    let (z0, _) = untrained.latent_and_probabilities(data).unwrap();
    close(
        &z0.data.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &scvi_latent
            .data
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>(),
        1e-5,
        1e-3,
        "warm-started latent",
    );

    // Every fifth cell keeps its label.
    let labels: Vec<u32> = truth
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 5 == 0 { c } else { 3 })
        .collect();
    let labelled = LabelledCounts {
        counts: &counts,
        batch: &batch,
        labels: &labels,
    };
    let model = ScanviModel::train(
        arch.clone(),
        &config(10),
        ScanviTraining::default(),
        labelled,
        Some(&scvi),
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    assert!(
        model.history[0]
            .train
            .extra
            .iter()
            .any(|(n, _)| n == "classification")
    );
    let (_, probs) = model.latent_and_probabilities(data).unwrap();
    let predicted: Vec<u32> = probs
        .data
        .chunks(3)
        .map(|p| (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap() as u32)
        .collect();
    let hidden: Vec<usize> = (0..300).filter(|i| i % 5 != 0).collect();
    let accuracy =
        hidden.iter().filter(|&&i| predicted[i] == truth[i]).count() as f64 / hidden.len() as f64;
    assert!(accuracy > 0.9, "accuracy on hidden labels {accuracy}");

    let again = ScanviModel::from_parts(
        arch.clone(),
        &model.weights_bytes(),
        ComputeDevice::Flex,
        Engine::HostFused,
    )
    .unwrap();
    assert_eq!(
        again.latent_and_probabilities(data).unwrap().1.data,
        probs.data
    );
    let other = ScanviArchitecture {
        n_labels: 4,
        ..arch.clone()
    };
    assert!(
        ScanviModel::from_parts(
            other,
            &model.weights_bytes(),
            ComputeDevice::Flex,
            Engine::HostFused
        )
        .is_err()
    );

    let none = vec![3u32; 300];
    let e = ScanviModel::train(
        arch,
        &config(1),
        ScanviTraining::default(),
        LabelledCounts {
            labels: &none,
            ..labelled
        },
        None,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("labels"), "{e}");
}

#[test]
fn scanvi_epochs_follow_scvi_tools() {
    assert_eq!(scanvi_epochs_heuristic(13_999, true), 10);
    // 200k cells: scVI's heuristic 40, a third of it 13, capped at 10.
    assert_eq!(scanvi_epochs_heuristic(200_000, true), 10);
    assert_eq!(scanvi_epochs_heuristic(1_000_000, true), 3);
    assert_eq!(scanvi_epochs_heuristic(13_999, false), 400);
}

/// Checks a query model against its reference: every tensor keeps the reference's values but
/// the batch rows of the layers that take the batch, and those `trained` names allow.
fn assert_frozen_but(
    reference: &NamedTensors,
    query: &NamedTensors,
    trained: &dyn Fn(&str) -> bool,
) -> usize {
    let mut grown = 0;
    for (name, (dims, values)) in &query.0 {
        let (ref_dims, ref_values) = &reference.0[name];
        if ref_dims != dims {
            // Covariates come last: the rows before the reference's two batch rows are frozen.
            let keep = (ref_dims[0] - 2) * dims[1];
            assert_eq!(
                &values[..keep],
                &ref_values[..keep],
                "{name}: frozen rows moved"
            );
            assert_eq!(dims[0], ref_dims[0] + 1, "{name}");
            grown += 1;
        } else if !trained(name) {
            assert_eq!(values, ref_values, "{name} should be frozen");
        }
    }
    grown
}

/// scArches query mapping (scvi-tools' `load_query_data` defaults): the model grows by the
/// query's batch and only the batch rows, the library encoder and the decoders' batch norms
/// train; with the encoder frozen, the query's latent and labels are the reference's encoder and
/// classifier applied to the query.
#[test]
fn query_mapping_trains_only_what_scarches_trains() {
    let (counts, batch, truth) = typed_cells(300, 12, 5);
    let arch = small_arch(12, None);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let scvi = ScviModel::train(
        arch.scvi.clone(),
        &config(15),
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    let labels: Vec<u32> = truth
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 5 == 0 { c } else { 3 })
        .collect();
    let labelled = LabelledCounts {
        counts: &counts,
        batch: &batch,
        labels: &labels,
    };
    let reference = ScanviModel::train(
        arch.clone(),
        &config(10),
        ScanviTraining::default(),
        labelled,
        Some(&scvi),
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();

    let (q_counts, _, q_truth) = typed_cells(120, 12, 11);
    let q_batch = vec![2u32; 120];
    let unlabelled = vec![3u32; 120];
    let query = LabelledCounts {
        counts: &q_counts,
        batch: &q_batch,
        labels: &unlabelled,
    };
    let mapped = reference
        .map_query(query, 3, &config(4), &mut Silent)
        .unwrap();
    assert_eq!(mapped.arch.scvi.n_batch, 3);
    assert_eq!(mapped.history.len(), 4);
    let before = weights::named_tensors(&reference.module);
    let after = weights::named_tensors(&mapped.module);
    // The decoders' batch norms train; the classifier's running statistics follow the query
    // (scvi-tools leaves their momentum), its weights do not.
    let grown = assert_frozen_but(&before, &after, &|n| {
        (n.contains("decoder") && n.contains(".norm."))
            || (n.starts_with("classifier") && n.contains("running"))
    });
    assert_eq!(
        grown, 1,
        "scVI's decoder takes the batch in its one hidden layer"
    );
    let name = "vae.decoder.layers.layers.0.linear.weight";
    assert!(
        after.0.contains_key(name),
        "{:?}",
        after.0.keys().collect::<Vec<_>>()
    );

    let (q_latent, q_probs) = mapped
        .latent_and_probabilities(CountsAndBatch {
            counts: &q_counts,
            batch: &q_batch,
        })
        .unwrap();
    let (r_latent, r_probs) = reference
        .latent_and_probabilities(CountsAndBatch {
            counts: &q_counts,
            batch: &vec![0; 120],
        })
        .unwrap();
    assert_eq!(q_latent.data, r_latent.data, "the encoder is frozen");
    let predicted: Vec<u32> = q_probs
        .data
        .chunks(3)
        .map(|p| (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap() as u32)
        .collect();
    let accuracy = (0..120).filter(|&i| predicted[i] == q_truth[i]).count() as f64 / 120.0;
    assert!(accuracy > 0.9, "query accuracy {accuracy}");
    assert_eq!(q_probs.data.len(), r_probs.data.len());

    // More epochs move the new batch's rows: they do train.
    let longer = reference
        .map_query(query, 3, &config(8), &mut Silent)
        .unwrap();
    let w4 = &after.0[name].1;
    let w8 = &weights::named_tensors(&longer.module).0[name].1;
    let width = arch.scvi.n_hidden;
    let new_row = (arch.scvi.n_latent + 2) * width..(arch.scvi.n_latent + 3) * width;
    assert_ne!(
        &w4[new_row.clone()],
        &w8[new_row],
        "the query batch's row trains"
    );

    // scVI with the batch given to the encoder: its host-side first layer's gene rows stay.
    let arch_cov = ScviArchitecture {
        encode_covariates: true,
        ..arch.scvi.clone()
    };
    let scvi_cov = ScviModel::train(
        arch_cov,
        &config(3),
        data,
        ComputeDevice::Flex,
        Engine::HostFused,
        &mut Silent,
    )
    .unwrap();
    let mapped_cov = scvi_cov
        .map_query(
            CountsAndBatch {
                counts: &q_counts,
                batch: &q_batch,
            },
            3,
            &config(3),
            &mut Silent,
        )
        .unwrap();
    let grown = assert_frozen_but(
        &weights::named_tensors(&scvi_cov.module),
        &weights::named_tensors(&mapped_cov.module),
        &|n| n.contains("decoder") && n.contains(".norm."),
    );
    assert_eq!(
        grown, 2,
        "the encoder's and the decoder's first layers take the batch"
    );
    let err = scvi_cov
        .map_query(
            CountsAndBatch {
                counts: &q_counts,
                batch: &q_batch,
            },
            1,
            &config(1),
            &mut Silent,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("batch"), "{err}");
}
