//! cellweave-bench: runs the core on files (no R needed), for benchmarks.
//!
//! Usage: cellweave-bench <command> [options]; `cellweave-bench <command> --help` for details.

mod classic_io;
mod common;
mod cvae;
mod harmony;
mod metrics;
mod mnn;
mod neighbors;
mod pca;
mod scanvi;
mod scvi;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprintln!(
            "usage: cellweave-bench <command> [options]\ncommands: {}",
            COMMANDS.join(", ")
        );
        return ExitCode::from(2);
    };
    let rest: Vec<_> = args.collect();
    let result = match command.to_string_lossy().as_ref() {
        "scvi" => scvi::main(rest),
        "scanvi" => scanvi::main(rest),
        "cvae" => cvae::main(rest),
        "pca" => pca::main(rest),
        "harmony" => harmony::main(rest),
        "mnn" => mnn::main(rest),
        "metrics" => metrics::main(rest),
        "neighbors" => neighbors::main(rest),
        other => Err(format!(
            "unknown command `{other}`; commands: {}",
            COMMANDS.join(", ")
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

const COMMANDS: &[&str] = &[
    "scvi",
    "scanvi",
    "cvae",
    "pca",
    "harmony",
    "mnn",
    "metrics",
    "neighbors",
];
