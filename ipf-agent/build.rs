//! Builds the XDP program (crate ipf-ebpf) with the linked toolchain `cargo xtask setup` installs.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Name under which `cargo xtask setup` links Debian's rustc + rust-src into rustup.
const EBPF_TOOLCHAIN: &str = "ipf-bpf";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "ipf-ebpf")
        .ok_or_else(|| anyhow!("ipf-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("ipf-ebpf manifest has no parent"))?
        .as_str()
        .to_owned();
    println!("cargo:rerun-if-env-changed=IPF_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("IPF_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.to_owned());
    // The linked toolchain is a stable rustc: bootstrap mode lets it build `core` for the BPF target
    // (aya-build then passes -Z build-std=core).
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [Package {
            name: "ipf-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .with_context(|| format!("building the XDP program with toolchain `{toolchain}` (run `cargo xtask setup`)"))
}
