//! extendr glue only: R values <-> core types. No science here.

mod classic;
mod convert;
mod cvae;
mod interrupt;
mod metrics;
mod scanvi;
mod scvi;

use extendr_api::prelude::*;

/// Version of the Rust core, for `cellweave::coreVersion()` style checks.
/// @noRd
#[extendr]
fn cw_core_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Called from .onLoad: Rust panics become R errors carrying their message (extendr does
/// that), so the default hook's extra print to stderr is only noise.
/// @noRd
#[extendr]
fn cw_init() {
    std::panic::set_hook(Box::new(|_| {}));
}

extendr_module! {
    mod cellweave;
    fn cw_core_version;
    fn cw_init;
    use scvi;
    use scanvi;
    use cvae;
    use metrics;
    use classic;
}
