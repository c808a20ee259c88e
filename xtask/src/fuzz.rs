//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (its own workspace, built with rustup's
//! nightly toolchain, never by the stable build), each for `--secs` seconds from the committed seeds
//! plus the corpus earlier runs grew; prints executions per target and fails on any crash, leaving the
//! reproducer in `fuzz/artifacts/TARGET/`.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::util;

pub const TOOLCHAIN: &str = "nightly";

/// Every target, the executions each should reach in a full run (issue 11: 10⁷ per packet target,
/// 10⁶ per configuration target), and its sanitizer. The packet targets run ipf-common's `unsafe`
/// header casts (the ones the XDP program uses): AddressSanitizer checks them. The configuration
/// and status targets run safe Rust only (no `unsafe` on their paths: the host they see is fixed,
/// see `fuzz/src/lib.rs`), where the sanitizer can find nothing a panic does not and its allocator
/// costs most of the throughput (measured: ~0.9-1.8 k executions/s with it).
pub const TARGETS: &[(&str, u64, Sanitizer)] = &[
    ("frame", 10_000_000, Sanitizer::Address),
    ("advert_roundtrip", 10_000_000, Sanitizer::Address),
    ("keepalived_conf", 1_000_000, Sanitizer::None),
    ("openshift_env", 1_000_000, Sanitizer::None),
    ("keepalived_env", 1_000_000, Sanitizer::None),
    ("status", 1_000_000, Sanitizer::None),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sanitizer {
    Address,
    None,
}

impl Sanitizer {
    /// cargo-fuzz's flags: the sanitizer, and a target directory per sanitizer so the two builds
    /// do not undo each other.
    fn args(self) -> [&'static str; 4] {
        match self {
            Sanitizer::Address => ["-s", "address", "--target-dir", "target/address"],
            Sanitizer::None => ["-s", "none", "--target-dir", "target/none"],
        }
    }
}

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Only these targets (default: all).
    targets: Vec<String>,
}

fn cargo_fuzz(args: &[&str]) -> Result<Command> {
    let dir = util::workspace_root()?.join("fuzz");
    let mut c = Command::new("cargo");
    c.arg(format!("+{TOOLCHAIN}")).arg("fuzz").args(args).current_dir(dir);
    // The xtask's own cargo settings must not leak into the nightly build.
    c.env_remove("CARGO").env_remove("RUSTUP_TOOLCHAIN");
    Ok(c)
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let chosen: Vec<(&str, u64, Sanitizer)> = TARGETS
        .iter()
        .copied()
        .filter(|(t, ..)| args.targets.is_empty() || args.targets.iter().any(|a| a == t))
        .collect();
    if let Some(unknown) = args.targets.iter().find(|a| !TARGETS.iter().any(|(t, ..)| t == a)) {
        bail!(
            "no fuzz target {unknown:?}; targets: {}",
            TARGETS.iter().map(|(t, ..)| *t).collect::<Vec<_>>().join(", ")
        );
    }
    for (target, _, sanitizer) in &chosen {
        let mut build = vec!["build"];
        build.extend(sanitizer.args());
        build.push(target);
        util::step(&format!("build fuzz target {target} (nightly)"), cargo_fuzz(&build)?)?;
    }
    let root = util::workspace_root()?.join("fuzz");
    let mut report = Vec::new();
    for (target, goal, sanitizer) in chosen {
        let corpus = root.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = format!("seeds/{target}");
        let corpus_arg = format!("corpus/{target}");
        let max_time = format!("-max_total_time={}", args.secs);
        let [s_flag, s_name, dir_flag, dir] = sanitizer.args();
        let mut c = cargo_fuzz(&[
            "run",
            s_flag,
            s_name,
            dir_flag,
            dir,
            target,
            &corpus_arg,
            &seeds,
            "--",
            &max_time,
            "-print_final_stats=1",
            // Inputs are text or frames: a few KiB reach every branch.
            "-max_len=8192",
        ])?;
        eprintln!("==> fuzz {target} for {} s", args.secs);
        let out = c
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |name: &str| -> Option<u64> {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .and_then(|v| v.trim().parse().ok())
        };
        let execs = stat("number_of_executed_units").unwrap_or(0);
        let per_sec = stat("average_exec_per_sec").unwrap_or(0);
        if !out.status.success() {
            // The crash report and the reproducer's path are at the end of libFuzzer's output.
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            report.push(format!(
                "  {target:<18} CRASHED after {execs} executions (reproducer in fuzz/artifacts/{target}/)"
            ));
            print_report(&report);
            bail!("fuzz target {target} failed ({})", out.status);
        }
        report.push(format!(
            "  {target:<18} {execs:>12} executions ({per_sec} /s), no crash; goal for a full run {:.0e}{}",
            goal as f64,
            if execs >= goal { " reached" } else { "" }
        ));
    }
    print_report(&report);
    Ok(())
}

fn print_report(lines: &[String]) {
    println!("fuzz:");
    for l in lines {
        println!("{l}");
    }
}
