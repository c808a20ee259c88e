//! Benchmarks: built in release mode, they print figures (no pass/fail thresholds).

use anyhow::Result;

use crate::util;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// XDP program ns/packet (pass-through and adverts) and ring-buffer events per 10,000 adverts.
    Datapath,
}

pub fn run(which: Bench) -> Result<()> {
    util::require_root("benchmarks load BPF programs")?;
    match which {
        Bench::Datapath => util::step(
            "bench datapath",
            util::cargo(&[
                "run",
                "--quiet",
                "--release",
                "-p",
                "ipf-tests",
                "--bin",
                "bench-datapath",
            ]),
        ),
    }
}
