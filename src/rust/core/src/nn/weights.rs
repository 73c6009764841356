//! Weights of any module as bytes and back (the R object keeps them as a raw vector).
//!
//! Format: magic `CWWEIGHT`, format version (u32), number of tensors (u32), then for each float
//! tensor in the module's visiting order (parameters and batch-norm running statistics): rank
//! (u32), dims (u32 each), values (f32). All little endian. Loading rebuilds the module from its
//! architecture and replaces every tensor in the same order, checking shapes.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use super::to_host;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"CWWEIGHT";
const VERSION: u32 = 1;

struct Collector {
    tensors: Vec<(Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        self.tensors.push((dims, to_host(t)));
    }
}

/// Serialises every float tensor of `module`.
pub fn to_bytes<M: Module>(module: &M) -> Vec<u8> {
    let mut collector = Collector {
        tensors: Vec::new(),
    };
    module.visit(&mut collector);
    let n_values: usize = collector.tensors.iter().map(|t| t.1.len()).sum();
    let mut out = Vec::with_capacity(16 + 4 * n_values + 32 * collector.tensors.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(collector.tensors.len() as u32).to_le_bytes());
    for (dims, values) in &collector.tensors {
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

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.pos + n > self.bytes.len() {
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

fn parse(bytes: &[u8]) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err(Error::Format("not cellweave model weights".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(Error::Format(format!(
            "model weights have format version {version}, this cellweave reads {VERSION}"
        )));
    }
    let n = r.u32()? as usize;
    let mut tensors = Vec::with_capacity(n);
    for _ in 0..n {
        let rank = r.u32()? as usize;
        let dims: Vec<usize> = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<_>>()?;
        let len: usize = dims.iter().product();
        let values = r
            .take(4 * len)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        tensors.push((dims, values));
    }
    if r.pos != bytes.len() {
        return Err(Error::Format("model weights have trailing bytes".into()));
    }
    Ok(tensors)
}

struct Loader {
    tensors: std::vec::IntoIter<(Vec<usize>, Vec<f32>)>,
    error: Option<Error>,
}

impl ModuleMapper for Loader {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((dims, values)) = self.tensors.next() else {
            self.error
                .get_or_insert(Error::Format("model weights hold too few tensors".into()));
            return param;
        };
        let device = param.val().device();
        let expected = param.val().dims().to_vec();
        if dims != expected {
            self.error.get_or_insert(Error::Format(format!(
                "model weights do not fit the architecture: tensor of shape {dims:?}, expected {expected:?}"
            )));
            return param;
        }
        let tensor = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
        param.map(|_| tensor)
    }
}

/// Replaces every float tensor of `module` (built with the right architecture) by the saved ones.
pub fn load_bytes<M: Module>(module: M, bytes: &[u8]) -> Result<M> {
    let tensors = parse(bytes)?;
    let mut loader = Loader {
        tensors: tensors.into_iter(),
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    if loader.tensors.next().is_some() {
        return Err(Error::Format(
            "model weights hold more tensors than the architecture".into(),
        ));
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
pub fn replace_params<M: Module>(module: M, updates: Vec<crate::nn::host::HostParam>) -> M {
    let mut replacer = Replacer {
        values: updates.into_iter().map(|p| (p.id, p.values)).collect(),
    };
    module.map(&mut replacer)
}
