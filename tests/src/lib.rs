//! Support for ipf's root-only tests and benchmarks: crafted frames, the XDP program under
//! BPF_PROG_TEST_RUN, network namespaces that clean up after themselves, and processes that die with
//! the test.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed set-up step should panic with a backtrace"
)]

pub use ipf_common::testing as frames;
pub mod container;
pub mod cost;
pub mod deploy;
pub mod flood;
pub mod trace;
pub mod xdp;

pub use ipf_testbed::{require_root, wait_for};

/// Path of the `ipf-agent` binary: `$IPF_AGENT_BIN`, else next to the test executable's target dir.
pub fn agent_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("IPF_AGENT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/ipf-agent
    let path = exe.parent().and_then(|d| d.parent()).unwrap().join("ipf-agent");
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build -p ipf-agent`; cargo xtask test does)",
        path.display()
    );
    path
}
