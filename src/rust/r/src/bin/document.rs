//! Writes R/extendr-wrappers.R (rextendr is not available here): `make wrappers`.
fn main() {
    let wrappers = cellweave::get_cellweave_metadata()
        .make_r_wrappers(true, "cellweave")
        .expect("generating the R wrappers");
    print!("{wrappers}");
}
