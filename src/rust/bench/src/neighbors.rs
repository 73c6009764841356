//! `cellweave-bench neighbors`: times exact and approximate kNN on a synthetic Gaussian mixture
//! and reports the approximate index's recall (on 1,000 sampled cells), to choose where
//! `NeighborMethod::Auto` switches.

use std::ffi::OsString;
use std::time::Instant;

use cellweave_core::data::DenseMatrix;
use cellweave_core::neighbors::{DescentConfig, KnnGraph, knn_descent, knn_exact, knn_query_exact};

use crate::common::peak_rss_mib;

const USAGE: &str = "usage: cellweave-bench neighbors [--cells N] [--dims D] [--k K] [--exact]
Times nearest-neighbour descent on N cells (default 100000) of D dims (30) with K neighbours (30);
--exact also times the exact search on all cells.";

fn value(p: &mut lexopt::Parser) -> Result<usize, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "arguments must be UTF-8".to_string())?
        .parse()
        .map_err(|_| "expected a whole number".to_string())
}

/// A mixture of 20 Gaussian clusters (a rough stand-in for cell types in a latent space).
fn mixture(n: usize, d: usize) -> DenseMatrix {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let centres: Vec<f64> = (0..20 * d).map(|_| (uniform() - 0.5) * 10.0).collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % 20;
        for j in 0..d {
            // Sum of uniforms: close enough to normal noise for timing and recall.
            let noise: f64 = (0..4).map(|_| uniform() - 0.5).sum::<f64>();
            data.push(centres[c * d + j] + noise);
        }
    }
    DenseMatrix::new(n, d, data).expect("consistent sizes")
}

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut n, mut d, mut k, mut exact) = (100_000usize, 30usize, 30usize, false);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("cells") => n = value(&mut p)?,
            Long("dims") => d = value(&mut p)?,
            Long("k") => k = value(&mut p)?,
            Long("exact") => exact = true,
            Long("help") | Short('h') => return Err(USAGE.to_string()),
            other => return Err(format!("{}\n{USAGE}", other.unexpected())),
        }
    }
    let x = mixture(n, d);
    let t = Instant::now();
    let approx = knn_descent(&x, k, &DescentConfig::default()).map_err(|e| e.to_string())?;
    let approx_s = t.elapsed().as_secs_f64();
    // Recall against exact neighbours of 1,000 cells (the query includes the cell itself).
    let sample: Vec<usize> = (0..1000.min(n)).map(|i| i * (n / 1000.min(n))).collect();
    let mut q = Vec::with_capacity(sample.len() * d);
    for &i in &sample {
        q.extend_from_slice(x.row(i));
    }
    let query = DenseMatrix::new(sample.len(), d, q).map_err(|e| e.to_string())?;
    let truth = knn_query_exact(&x, &query, k + 1).map_err(|e| e.to_string())?;
    let mut hits = 0usize;
    for (qi, &i) in sample.iter().enumerate() {
        let t: Vec<u32> = truth
            .neighbors(qi)
            .iter()
            .copied()
            .filter(|&j| j as usize != i)
            .take(k)
            .collect();
        hits += approx.neighbors(i).iter().filter(|j| t.contains(j)).count();
    }
    let recall = hits as f64 / (sample.len() * k) as f64;
    println!("cells {n} dims {d} k {k}: descent {approx_s:.2} s, recall {recall:.4}");
    if exact {
        let t = Instant::now();
        let g: KnnGraph = knn_exact(&x, k).map_err(|e| e.to_string())?;
        println!(
            "exact {:.2} s ({} neighbours per cell)",
            t.elapsed().as_secs_f64(),
            g.k
        );
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    Ok(())
}
