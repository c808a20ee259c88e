//! Idempotent installation of the build and test dependencies on Debian.
//!
//! The eBPF crate needs a compiler with its own library source (to build `core` for
//! bpfel-unknown-none) and a bpf-linker built against the same LLVM major. Debian's rustc-web (1.96,
//! LLVM 22) ships both a compiler and rust-web-src; it is linked into rustup as `ipf-bpf` and used only
//! for the eBPF crate. See ../shared/docs/toolchain.md for the recipe.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util::{display, is_root, output, step};

/// Name of the rustup toolchain linked to Debian's rustc (ipf-agent/build.rs uses the same name).
pub const EBPF_TOOLCHAIN: &str = "ipf-bpf";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_MAJOR: &str = "22";

/// Debian packages: the eBPF toolchain and linker build, and the real peers the tests run.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-clippy",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "keepalived",
    "frr",
    "python3",
    "prometheus",
    // The firewall tests drive the same tools ipf-agent runs for OPENSHIFT_HA_*TABLES*.
    "iptables",
    "nftables",
    // `cargo xtask image`: the static agent (ring needs musl-gcc), the image's shell and tools, and
    // ocidir's openssl; `file` checks the agent is static.
    "musl-tools",
    "bash-static",
    "busybox-static",
    "libssl-dev",
    "pkg-config",
    "file",
    // The container tests: podman with runc (crun fails on this VM's hybrid cgroups), skopeo to load
    // the archive into podman's storage.
    "podman",
    "runc",
    "skopeo",
    // kubernetes-validate's virtualenv.
    "python3-venv",
    // The DNS-peers test's name server (the binary only: no system service is started).
    "dnsmasq-base",
];

/// Where the manifest validators live: kubernetes-validate in a virtualenv, the prometheus-operator
/// CRD schemas from npm. Outside the checkout, so a fresh clone on the same machine reuses them.
pub const TOOLS_DIR: &str = "/var/lib/ipf-tools";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const PROMETHEUS_OPERATOR_MODELS: &str = "@kubernetes-models/prometheus-operator@6.0.0";

pub fn run() -> Result<()> {
    apt_packages()?;
    toolchain()?;
    bpf_linker()?;
    musl_target()?;
    manifest_tools()?;
    Ok(())
}

/// The static target of the image's agent.
fn musl_target() -> Result<()> {
    let list = output({
        let mut c = Command::new("rustup");
        c.args(["target", "list", "--installed"]);
        c
    })?;
    if list.lines().any(|l| l.trim() == crate::image::MUSL_TARGET) {
        eprintln!("setup: rust target {} present", crate::image::MUSL_TARGET);
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["target", "add", crate::image::MUSL_TARGET]);
    step("add the musl target (static ipf-agent for the image)", c)
}

/// kubernetes-validate (virtualenv) and the prometheus-operator models (npm); kubectl for kustomize.
fn manifest_tools() -> Result<()> {
    let dir = std::path::Path::new(TOOLS_DIR);
    let validate = dir.join("venv/bin/kubernetes-validate");
    if validate.exists() {
        eprintln!("setup: kubernetes-validate present");
    } else {
        if !is_root() {
            bail!("setup: kubernetes-validate missing; run `sudo -E cargo xtask setup`");
        }
        std::fs::create_dir_all(dir)?;
        let mut c = Command::new("/usr/bin/python3");
        c.args(["-m", "venv"]).arg(dir.join("venv"));
        step("virtualenv for kubernetes-validate", c)?;
        let mut c = Command::new(dir.join("venv/bin/pip"));
        c.args(["install", "--quiet", KUBERNETES_VALIDATE]);
        step("install kubernetes-validate", c)?;
    }
    let models = dir.join("npm/node_modules/@kubernetes-models/prometheus-operator");
    if models.exists() {
        eprintln!("setup: {PROMETHEUS_OPERATOR_MODELS} present");
    } else {
        std::fs::create_dir_all(dir.join("npm"))?;
        let mut c = Command::new("npm");
        c.args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir.join("npm"))
            .arg(PROMETHEUS_OPERATOR_MODELS);
        step("install the prometheus-operator schemas (npm)", c)?;
    }
    // kubectl (with its built-in kustomize) comes with this kind of machine; Debian's is too old
    // for kustomize v5 overlays.
    match Command::new("kubectl").args(["version", "--client"]).output() {
        Ok(o) if o.status.success() => eprintln!(
            "setup: kubectl present ({})",
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => {
            eprintln!("setup: WARNING kubectl not found: the manifest tests need `kubectl kustomize` (v1.27 or later)")
        }
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("setup: apt packages present");
        return Ok(());
    }
    if !is_root() {
        bail!("setup: missing Debian packages {missing:?}; run `sudo -E cargo xtask setup`");
    }
    step("apt-get update", apt(&["update", "-qq"]))?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    step("apt-get install", apt(&args))
}

fn apt(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn toolchain() -> Result<()> {
    let list = output({
        let mut c = Command::new("rustup");
        c.args(["toolchain", "list"]);
        c
    })
    .context("rustup is needed to run the eBPF toolchain")?;
    if !list
        .lines()
        .any(|l| l.split_whitespace().next() == Some(EBPF_TOOLCHAIN))
    {
        let mut c = Command::new("rustup");
        c.args(["toolchain", "link", EBPF_TOOLCHAIN, "/usr"]);
        step("link Debian's rustc as the eBPF toolchain", c)?;
    }
    let mut c = Command::new("rustup");
    c.args(["run", EBPF_TOOLCHAIN, "rustc", "-vV"]);
    let info = output(c)?;
    if !info.contains(&format!("LLVM version: {LLVM_MAJOR}.")) {
        bail!("toolchain {EBPF_TOOLCHAIN} is not on LLVM {LLVM_MAJOR}: {info}");
    }
    eprintln!("setup: eBPF toolchain `{EBPF_TOOLCHAIN}` ready");
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(out) = current {
        let v = String::from_utf8_lossy(&out.stdout);
        if v.contains(BPF_LINKER_VERSION) {
            eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} present");
            return Ok(());
        }
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
    ])
    .arg(format!("llvm-{LLVM_MAJOR}"))
    .env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM_MAJOR}"));
    step("install bpf-linker (about 2 minutes)", c)
}

/// rustup's nightly toolchain and cargo-fuzz, for `cargo xtask fuzz` only (the build stays on stable).
pub fn fuzz_tools() -> Result<()> {
    let toolchain = crate::fuzz::TOOLCHAIN;
    let list = output({
        let mut c = Command::new("rustup");
        c.args(["toolchain", "list"]);
        c
    })
    .context("rustup is needed for the nightly fuzzing toolchain")?;
    if list.lines().any(|l| l.starts_with(&format!("{toolchain}-"))) {
        eprintln!("setup: {toolchain} toolchain present");
    } else {
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", toolchain, "--profile", "minimal"]);
        step("install the nightly toolchain (fuzzing only)", c)?;
    }
    let present = Command::new("cargo")
        .args([&format!("+{toolchain}"), "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        eprintln!("setup: cargo-fuzz present");
        return Ok(());
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(["install", "cargo-fuzz", "--locked"]);
    step("install cargo-fuzz (about 2 minutes)", c)
}

/// clippy for the eBPF crate on its real target, with the eBPF toolchain.
pub fn ebpf_clippy() -> Command {
    let mut c = Command::new("rustup");
    c.args([
        "run",
        EBPF_TOOLCHAIN,
        "cargo",
        "clippy",
        "-p",
        "ipf-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])
    .env("RUSTC_BOOTSTRAP", "1")
    .env("CARGO_TARGET_DIR", "target/ebpf-clippy");
    if let Ok(root) = crate::util::workspace_root() {
        c.current_dir(root);
    }
    eprintln!("(eBPF clippy runs as: RUSTC_BOOTSTRAP=1 {})", display(&c));
    c
}
