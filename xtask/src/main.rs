//! `cargo xtask`: set-up, tests, the local lab and benchmarks. Orchestration only: building the XDP
//! program is ipf-agent's build script's job.

mod bench;
mod fuzz;
mod image;
mod lab;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build and the tests need (apt packages, eBPF toolchain, bpf-linker); idempotent.
    Setup,
    /// Set up, lint, build and run every test (needs root: namespaces and BPF).
    Test(TestArgs),
    /// The local lab: namespaces with VRRP routers and an ipf node, shown live (needs root).
    Run(lab::LabArgs),
    /// Build the ipf-agent OCI image archive offline and reproducibly; prints its path, digest and size.
    Image(image::ImageArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
    /// The cargo-fuzz targets (nightly), each for --secs; prints executions per target, fails on a crash.
    Fuzz(fuzz::FuzzArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    /// Skip rustfmt and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::run(),
        Command::Test(args) => test(args),
        Command::Image(args) => {
            setup::run()?;
            image::run(args).map(|_| ())
        }
        Command::Run(args) => {
            setup::run()?;
            lab::run(args)
        }
        Command::Bench { which } => {
            setup::run()?;
            bench::run(which)
        }
        Command::Fuzz(args) => {
            setup::run()?;
            setup::fuzz_tools()?;
            fuzz::run(args)
        }
    }
}

fn test(args: TestArgs) -> Result<()> {
    util::require_root("the tests create network namespaces and load BPF programs")?;
    setup::run()?;
    if !args.no_lint {
        util::step("format check", util::cargo(&["fmt", "--all", "--check"]))?;
        util::step(
            "clippy (host crates)",
            util::cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        )?;
        util::step("clippy (eBPF crate, bpfel-unknown-none)", setup::ebpf_clippy())?;
    }
    util::step("build ipf-agent", util::cargo(&["build", "-p", "ipf-agent"]))?;
    let agent = util::workspace_root()?.join("target/debug/ipf-agent");
    // The container tests run the image; packing it twice checks it is reproducible.
    let image = image::run(image::ImageArgs {
        out: None,
        check_reproducible: true,
    })?;
    // --all-targets: unit, integration and bin tests; no doctests (there are none).
    let mut test = util::cargo(&["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    test.env("IPF_AGENT_BIN", &agent);
    test.env("IPF_IMAGE_ARCHIVE", &image.archive);
    if !args.cargo_test_args.is_empty() {
        test.arg("--").args(&args.cargo_test_args);
    }
    let (passed, failed) = util::run_tests(test)?;
    // The closing line CI reads.
    println!("tests: {passed} passed, {failed} failed");
    if failed > 0 {
        anyhow::bail!("{failed} tests failed");
    }
    Ok(())
}
