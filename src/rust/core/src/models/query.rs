//! Mapping a query data set onto a trained reference (scArches, Lotfollahi et al. 2022), as
//! scvi-tools' `load_query_data` with its default freezing: the model grows by the query's new
//! batches, starts from the reference's weights (the new batches' rows from a fresh model), and
//! only what scvi-tools trains for a query trains:
//! - the batch (covariate) rows of every layer that takes the batch; the rest of those layers,
//!   their biases and every other layer stay as in the reference;
//! - the library encoder (with a latent library);
//! - the decoders' batch-norm scale and shift, whose running statistics follow the query;
//!   the encoders' running statistics stay the reference's (scvi-tools' momentum 0).
//!
//! scvi-tools freezes with gradient hooks, so Adam's weight decay still moves its frozen weights
//! a little; here frozen weights keep their reference values exactly. With the scVI default
//! `encode_covariates = false` the encoder is frozen whole: the query's latent is the
//! reference encoder's, whatever the query training does to the decoder.

use std::collections::{BTreeMap, HashSet};

use burn::module::ParamId;
use burn::tensor::Device;
use rand::rngs::Xoshiro256PlusPlus;

use crate::engine::CountData;
use crate::error::{Error, Result};
use crate::models::GenerativeModule;
use crate::nn::weights::{self, NamedTensors};
use crate::train::{DataSplit, Fit, TrainConfig, Trainable, TrainingObserver, TrainingPlan, fit};

/// Trains `fresh` (the query model, on the autodiff device, built for the grown architecture)
/// from the `reference` weights on the query `cells`, training only what a query trains.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_query<M: GenerativeModule>(
    reference: &NamedTensors,
    fresh: M,
    n_batch_reference: usize,
    cells: &CountData<'_>,
    config: &TrainConfig,
    mut plan: TrainingPlan,
    device: &Device,
    rng: &mut Xoshiro256PlusPlus,
    observer: &mut dyn TrainingObserver,
) -> Result<Fit<M>> {
    let grown = grown_weights(reference, &weights::named_tensors(&fresh))?;
    let module = weights::load_named(fresh, &grown, true)?;
    plan.trainable = Some(query_trainable(
        &weights::param_ids(&module),
        reference,
        &grown,
        crate::nn::fc::one_hot_width(&[n_batch_reference]),
    ));
    let split = DataSplit::random(
        cells.counts.n_rows,
        config.train_size,
        config.batch_size,
        rng,
    );
    let trained = fit(
        module, cells, &split, config, &mut plan, device, rng, observer,
    )?;
    let restored = with_reference_values(
        weights::named_tensors(&trained.module),
        &grown,
        &frozen_statistics(&grown),
    );
    Ok(Fit {
        module: weights::load_named(trained.module, &restored, true)?,
        history: trained.history,
        profile: trained.profile,
    })
}

/// The reference's tensors grown to the query model's shapes (`fresh`): along each axis that
/// grew, the reference values first, then the fresh model's values for the new batches.
pub(crate) fn grown_weights(
    reference: &NamedTensors,
    fresh: &NamedTensors,
) -> Result<NamedTensors> {
    let mut out = NamedTensors::default();
    for (name, (dims, values)) in &fresh.0 {
        let Some((ref_dims, ref_values)) = reference.0.get(name) else {
            return Err(Error::Format(format!(
                "the reference model has no tensor `{name}`"
            )));
        };
        if ref_dims == dims {
            out.0
                .insert(name.clone(), (dims.clone(), ref_values.clone()));
            continue;
        }
        if ref_dims.len() != dims.len() || ref_dims.iter().zip(dims).any(|(r, d)| r > d) {
            return Err(Error::Format(format!(
                "tensor `{name}` of the reference ({ref_dims:?}) does not fit the query model ({dims:?})"
            )));
        }
        // Row-major copy of the reference block into the fresh tensor.
        let mut grown = values.clone();
        let n = ref_values.len();
        for flat in 0..n {
            let mut rest = flat;
            let mut target = 0usize;
            for axis in 0..dims.len() {
                let stride_ref: usize = ref_dims[axis + 1..].iter().product();
                let stride: usize = dims[axis + 1..].iter().product();
                let index = rest / stride_ref;
                rest %= stride_ref;
                target += index * stride;
            }
            grown[target] = ref_values[flat];
        }
        out.0.insert(name.clone(), (dims.clone(), grown));
    }
    Ok(out)
}

/// What trains for a query, by the tensors' names (see the module's notes).
/// `reference_batch_rows`: the width of the reference's batch one-hot block (none for a single
/// batch), which ends each grown layer's inputs in the reference.
pub(crate) fn query_trainable(
    ids: &BTreeMap<String, ParamId>,
    reference: &NamedTensors,
    grown: &NamedTensors,
    reference_batch_rows: usize,
) -> Trainable {
    let mut t = Trainable::default();
    for (name, id) in ids {
        let (Some((ref_dims, _)), Some((dims, _))) = (reference.0.get(name), grown.0.get(name))
        else {
            continue;
        };
        let is_linear_weight = name.ends_with("linear.weight");
        if is_linear_weight && ref_dims.len() == 2 && ref_dims[0] < dims[0] {
            // A layer taking the batch: only its covariate rows (all batches) train.
            t.params.insert(*id);
            t.frozen_rows
                .insert(*id, (ref_dims[0] - reference_batch_rows, dims[1]));
        } else if name.starts_with("l_encoder.") || name.contains(".l_encoder.") {
            t.params.insert(*id);
        } else if name.contains("decoder")
            && name.contains(".norm.")
            && (name.ends_with(".weight") || name.ends_with(".bias"))
        {
            t.params.insert(*id);
        }
    }
    t
}

/// The encoders' batch-norm running statistics, which keep the reference's values.
pub(crate) fn frozen_statistics(names: &NamedTensors) -> HashSet<String> {
    names
        .0
        .keys()
        .filter(|n| {
            n.contains("encoder")
                && !n.contains("l_encoder")
                && (n.ends_with("running_mean") || n.ends_with("running_var"))
        })
        .cloned()
        .collect()
}

/// `trained` with the tensors `names` set back to their values in `reference`.
pub(crate) fn with_reference_values(
    mut trained: NamedTensors,
    reference: &NamedTensors,
    names: &HashSet<String>,
) -> NamedTensors {
    for name in names {
        if let (Some(slot), Some(value)) = (trained.0.get_mut(name), reference.0.get(name)) {
            *slot = value.clone();
        }
    }
    trained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grown_weights_keep_the_reference_block_and_take_new_rows_from_the_fresh_model() {
        let mut reference = NamedTensors::default();
        reference
            .0
            .insert("w".into(), (vec![2, 3], vec![1., 2., 3., 4., 5., 6.]));
        reference.0.insert("p".into(), (vec![2], vec![7., 8.]));
        let mut fresh = NamedTensors::default();
        fresh.0.insert("w".into(), (vec![3, 3], vec![0.; 9]));
        fresh.0.insert("p".into(), (vec![3], vec![0., 0., 9.]));
        let grown = grown_weights(&reference, &fresh).unwrap();
        assert_eq!(grown.0["w"].1, vec![1., 2., 3., 4., 5., 6., 0., 0., 0.]);
        assert_eq!(grown.0["p"].1, vec![7., 8., 9.]);
        // A tensor that shrank cannot come from the reference.
        let mut small = NamedTensors::default();
        small.0.insert("w".into(), (vec![1, 3], vec![0.; 3]));
        small.0.insert("p".into(), (vec![2], vec![0.; 2]));
        assert!(grown_weights(&reference, &small).is_err());
    }
}
