use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

/// Runs a command, echoing it and its duration; fails on a non-zero exit.
pub fn step(what: &str, mut cmd: Command) -> Result<()> {
    eprintln!("==> {what}: {}", display(&cmd));
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {}", display(&cmd)))?;
    eprintln!("<== {what}: {status} in {:.1}s", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout, or the error with its stderr.
pub fn output(mut cmd: Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {}", display(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            display(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo ARGS` in the workspace root, with the cargo that runs xtask.
pub fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    if let Ok(root) = workspace_root() {
        c.current_dir(root);
    }
    c
}

pub fn workspace_root() -> Result<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run through `cargo xtask`")?;
    PathBuf::from(manifest)
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}

pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("this needs root ({why}); run it with sudo -E");
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines: (passed, failed).
/// Fails when cargo fails for another reason (a build error) or no test ran.
pub fn run_tests(mut cmd: Command) -> Result<(u64, u64)> {
    use std::io::BufRead as _;
    eprintln!("==> tests: {}", display(&cmd));
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", display(&cmd)))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| -> u64 {
                    rest.split(';')
                        .find_map(|part| {
                            part.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0)
                };
                passed += count(" passed");
                failed += count(" failed");
            }
        }
    }
    let status = child.wait()?;
    eprintln!("<== tests: {status} in {:.1}s", start.elapsed().as_secs_f64());
    if !status.success() && failed == 0 {
        bail!("cargo test failed ({status}) before running tests");
    }
    if passed + failed == 0 {
        bail!("no test ran");
    }
    Ok((passed, failed))
}
