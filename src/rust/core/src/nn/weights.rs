//! Weights of any module as a map from parameter path to tensor, as bytes and back (the R
//! object keeps them as a raw vector). Names are the module's field paths, e.g.
//! `z_encoder.layers.layers.0.linear.weight`, so a model can start from another's weights (scANVI
//! from scVI) or a query model can extend a reference, by name.
//!
//! Format 2: magic `CWWEIGHT`, format version (u32), number of tensors (u32), then per tensor:
//! name length (u32), name (UTF-8), rank (u32), dims (u32 each), values (f32). Little endian.
//! Every size is checked against the bytes present before anything is allocated, so a damaged
//! file gives an error, never a huge allocation. Format 1 (positional, cellweave 0.1 before
//! the model framework) is recognised and refused with a message.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use super::to_host;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"CWWEIGHT";
const VERSION: u32 = 2;
/// Highest tensor rank a model uses, with room to spare.
const MAX_RANK: usize = 8;

/// Saved tensors by parameter path: (dims, row-major values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedTensors(pub BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl NamedTensors {
    pub fn dims(&self, name: &str) -> Option<&[usize]> {
        self.0.get(name).map(|(d, _)| d.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn n_values(&self) -> usize {
        self.0.values().map(|(_, v)| v.len()).sum()
    }
}

/// The path of the tensor being visited, from the visitor's enter/exit calls.
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn joined(&self) -> String {
        self.0.join(".")
    }
}

struct Collector {
    path: Path,
    tensors: NamedTensors,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        self.tensors
            .0
            .insert(self.path.joined(), (dims, to_host(t)));
    }
}

/// Every float tensor of `module` (parameters and running statistics) by path.
pub fn named_tensors<M: Module>(module: &M) -> NamedTensors {
    let mut collector = Collector {
        path: Path::default(),
        tensors: NamedTensors::default(),
    };
    module.visit(&mut collector);
    collector.tensors
}

struct IdCollector {
    path: Path,
    ids: BTreeMap<String, burn::module::ParamId>,
}

impl ModuleVisitor for IdCollector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.insert(self.path.joined(), param.id);
    }
}

/// The parameter id of every float tensor of `module`, by the path `named_tensors` gives it.
pub fn param_ids<M: Module>(module: &M) -> BTreeMap<String, burn::module::ParamId> {
    let mut collector = IdCollector {
        path: Path::default(),
        ids: BTreeMap::new(),
    };
    module.visit(&mut collector);
    collector.ids
}

pub fn encode(tensors: &NamedTensors) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * tensors.n_values() + 64 * tensors.0.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.0.len() as u32).to_le_bytes());
    for (name, (dims, values)) in &tensors.0 {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims {
            out.extend_from_slice(&(d as u32).to_le_bytes());
        }
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Serialises every float tensor of `module` by name.
pub fn to_bytes<M: Module>(module: &M) -> Vec<u8> {
    encode(&named_tensors(module))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(Error::Format("model weights are truncated".into()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

/// Parses saved weights; every count and size is checked against the bytes present first.
pub fn decode(bytes: &[u8]) -> Result<NamedTensors> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8).ok() != Some(MAGIC.as_slice()) {
        return Err(Error::Format("not cellweave model weights".into()));
    }
    let version = r.u32()?;
    if version == 1 {
        return Err(Error::Format(
            "the model was saved by an older cellweave (weights format 1, before weights by name); \
             this version cannot read it: train the model again"
                .into(),
        ));
    }
    if version != VERSION {
        return Err(Error::Format(format!(
            "model weights have format version {version}, this cellweave reads {VERSION}"
        )));
    }
    let n = r.u32()? as usize;
    // Each tensor takes at least 8 bytes (name length and rank).
    if n > r.remaining() / 8 {
        return Err(Error::Format(format!(
            "model weights claim {n} tensors but hold only {} bytes",
            r.remaining()
        )));
    }
    let mut tensors = NamedTensors::default();
    for _ in 0..n {
        let len = r.u32()? as usize;
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| {
                Error::Format("model weights have a tensor name that is not UTF-8".into())
            })?
            .to_string();
        let rank = r.u32()? as usize;
        if rank > MAX_RANK {
            return Err(Error::Format(format!(
                "model weights: tensor `{name}` has rank {rank}"
            )));
        }
        let dims: Vec<usize> = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<_>>()?;
        let len = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&l| l <= r.remaining() / 4)
            .ok_or_else(|| {
                Error::Format(format!(
                    "model weights: tensor `{name}` of shape {dims:?} is larger than the bytes present"
                ))
            })?;
        let values = r
            .take(4 * len)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if tensors.0.insert(name.clone(), (dims, values)).is_some() {
            return Err(Error::Format(format!(
                "model weights hold tensor `{name}` twice"
            )));
        }
    }
    if r.pos != bytes.len() {
        return Err(Error::Format("model weights have trailing bytes".into()));
    }
    Ok(tensors)
}

struct Loader<'a> {
    path: Path,
    tensors: &'a NamedTensors,
    used: usize,
    error: Option<Error>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.joined();
        let Some((dims, values)) = self.tensors.0.get(&name) else {
            self.error
                .get_or_insert(Error::Format(format!("model weights lack tensor `{name}`")));
            return param;
        };
        let expected = param.val().dims().to_vec();
        if *dims != expected {
            self.error.get_or_insert(Error::Format(format!(
                "model weights do not fit the architecture: `{name}` has shape {dims:?}, expected {expected:?}"
            )));
            return param;
        }
        self.used += 1;
        let values = values.clone();
        param.map(|t| {
            let require_grad = t.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(values, expected), &t.device())
                .set_require_grad(require_grad)
        })
    }
}

/// Replaces every float tensor of `module` (built with the right architecture) by the tensor of
/// the same name. Every tensor of the module must be present; with `exact`, nothing else may be.
pub fn load_named<M: Module>(module: M, tensors: &NamedTensors, exact: bool) -> Result<M> {
    let mut loader = Loader {
        path: Path::default(),
        tensors,
        used: 0,
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    if exact && loader.used != tensors.0.len() {
        let known = named_tensors(&module);
        let extra: Vec<&String> = tensors.0.keys().filter(|k| !known.contains(k)).collect();
        return Err(Error::Format(format!(
            "model weights hold tensors the architecture does not have: {}",
            extra
                .iter()
                .take(3)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(module)
}

struct Replacer {
    values: std::collections::HashMap<burn::module::ParamId, Vec<f32>>,
}

impl ModuleMapper for Replacer {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.remove(&param.id) {
            Some(values) => param.map(|t| {
                let require_grad = t.is_require_grad();
                Tensor::<D>::from_data(TensorData::new(values, t.dims()), &t.device())
                    .set_require_grad(require_grad)
            }),
            None => param,
        }
    }
}

/// `module` with the parameters in `updates` (by id) set to the given values (same shapes).
pub fn replace_params<M: Module>(
    module: M,
    updates: std::collections::HashMap<burn::module::ParamId, Vec<f32>>,
) -> M {
    let mut replacer = Replacer { values: updates };
    module.map(&mut replacer)
}

struct ParamReader<'a> {
    wanted: &'a std::collections::HashSet<burn::module::ParamId>,
    values: std::collections::HashMap<burn::module::ParamId, Vec<f32>>,
}

impl ModuleVisitor for ParamReader<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.wanted.contains(&param.id) {
            self.values.insert(param.id, to_host(param.val()));
        }
    }
}

/// The current values of the parameters `ids` of `module`.
pub fn param_values<M: Module>(
    module: &M,
    ids: &std::collections::HashSet<burn::module::ParamId>,
) -> std::collections::HashMap<burn::module::ParamId, Vec<f32>> {
    let mut reader = ParamReader {
        wanted: ids,
        values: Default::default(),
    };
    module.visit(&mut reader);
    reader.values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NamedTensors {
        let mut t = NamedTensors::default();
        t.0.insert(
            "a.weight".into(),
            (vec![2, 3], (0..6).map(|v| v as f32).collect()),
        );
        t.0.insert("b".into(), (vec![1], vec![7.5]));
        t
    }

    #[test]
    fn round_trips_and_refuses_damaged_bytes() {
        let t = sample();
        let bytes = encode(&t);
        assert_eq!(decode(&bytes).unwrap(), t);
        // Tensor count set to 2^32 - 1: refused before allocating.
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode(&bad).unwrap_err().to_string();
        assert!(e.contains("claim"), "{e}");
        // A dimension inflated: refused as larger than the bytes present.
        let mut bad = bytes.clone();
        let dim_at = 16 + 4 + "a.weight".len() + 4;
        bad[dim_at..dim_at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        let e = decode(&bad).unwrap_err().to_string();
        assert!(e.contains("larger than the bytes"), "{e}");
        assert!(decode(&bytes[..bytes.len() - 2]).is_err());
        let mut v1 = bytes.clone();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(
            decode(&v1)
                .unwrap_err()
                .to_string()
                .contains("older cellweave")
        );
        assert!(decode(b"garbage").is_err());
    }
}
