//! The compute device, chosen by name: the user's `device = "cpu"` becomes a burn `Device`.

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Where tensors live and which burn backend runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDevice {
    /// burn's Flex backend (pure-Rust CPU).
    Flex,
    /// burn's NdArray backend (CPU).
    NdArray,
    /// An NVIDIA GPU (needs a build with CUDA support).
    Cuda,
}

impl ComputeDevice {
    /// The CPU backend `"cpu"` stands for: the faster of the two on the scVI training step
    /// (measured with `cellweave-bench scvi --device cpu:flex|cpu:ndarray`; see bench/README.md).
    pub const DEFAULT_CPU: ComputeDevice = ComputeDevice::Flex;

    /// Parses `"cpu"`, `"cpu:flex"`, `"cpu:ndarray"` or `"cuda"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Self::DEFAULT_CPU),
            "cpu:flex" => Ok(Self::Flex),
            "cpu:ndarray" => Ok(Self::NdArray),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(Error::invalid(
                "device",
                format!(
                    "unknown device \"{other}\": use \"cpu\", \"cpu:flex\", \"cpu:ndarray\" or \"cuda\""
                ),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "cpu:flex",
            Self::NdArray => "cpu:ndarray",
            Self::Cuda => "cuda",
        }
    }

    /// The burn device (without autodiff).
    pub fn burn_device(self) -> Result<Device> {
        match self {
            Self::Flex => Ok(Device::flex()),
            // Deprecated upstream in favour of Flex; kept while it is the faster CPU backend here.
            #[allow(deprecated)]
            Self::NdArray => Ok(Device::ndarray()),
            Self::Cuda => Err(Error::Device(
                "cuda".into(),
                "this build of cellweave has no GPU support (it was built for CPU only); use device = \"cpu\"".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for d in [
            ComputeDevice::Flex,
            ComputeDevice::NdArray,
            ComputeDevice::Cuda,
        ] {
            assert_eq!(ComputeDevice::parse(d.name()).unwrap(), d);
        }
        let err = ComputeDevice::parse("tpu").unwrap_err().to_string();
        assert!(err.contains("device") && err.contains("tpu"), "{err}");
        assert!(ComputeDevice::Cuda.burn_device().is_err());
    }
}
