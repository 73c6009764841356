//! extendr glue for the classic family: converts R values, calls the core, converts back.

use extendr_api::prelude::*;

extendr_module! {
    mod classic;
}
