//! extendr glue only: R values <-> core types. No science here.

mod classic;
mod convert;
mod interrupt;
mod metrics;
mod scvi;

use extendr_api::prelude::*;

/// Version of the Rust core, for `cellweave::coreVersion()` style checks.
/// @noRd
#[extendr]
fn cw_core_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

extendr_module! {
    mod cellweave;
    fn cw_core_version;
    use scvi;
    use metrics;
    use classic;
}
