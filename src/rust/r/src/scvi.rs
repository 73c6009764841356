//! extendr glue for the scvi family: converts R values, calls the core, converts back.

use extendr_api::prelude::*;

extendr_module! {
    mod scvi;
}
