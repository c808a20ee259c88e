//! `cargo xtask image`: the ipf-agent OCI image archive, built offline and reproducibly.
//!
//! No base image is pulled. The root filesystem is one layer made of:
//! - ipf-agent, a static musl binary built in release mode;
//! - bash (bash-static: the ipfailover image's check scripts are bash) as /bin/bash and /bin/sh, and
//!   busybox-static's applets for what check and notify scripts usually call;
//! - iptables (nft and legacy back ends) and nft from the installed Debian packages, with the shared
//!   libraries and the loader they need, for the `OPENSHIFT_HA_*TABLES*` firewall rule.
//!
//! Same commit, same packages → same bytes: every tar entry is sorted, owned by 0:0 with mtime 0,
//! gzip carries no time or name, and the image's `created` is the commit's time. The layout is written
//! by `ocidir` (oci-spec types) and packed as an `oci-archive` (a tar of the layout directory).

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use ocidir::{
    OciDir,
    cap_std::{ambient_authority, fs::Dir},
    oci_spec::image::{self as oci, Arch, Os},
};
use sha2::{Digest as _, Sha256};

use crate::util::{cargo, output, step, workspace_root};

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The image name podman and the manifests use.
pub const IMAGE_NAME: &str = "ipf-agent";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Where to write the archive (default target/image/ipf-agent-VERSION.oci.tar).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pack the image twice from the same inputs and fail unless both archives are identical.
    #[arg(long)]
    pub check_reproducible: bool,
}

/// What `cargo xtask image` made.
pub struct Built {
    pub archive: PathBuf,
    /// Digest of the image manifest (what a registry and podman call the image digest).
    pub manifest_digest: String,
    pub archive_sha256: String,
    pub size: u64,
}

pub fn run(args: ImageArgs) -> Result<Built> {
    let root = workspace_root()?;
    let agent = build_agent()?;
    let meta = Metadata::from_git(&root)?;
    let rootfs = RootFs::collect(&agent)?;
    let archive = args
        .out
        .unwrap_or_else(|| root.join(format!("target/image/{IMAGE_NAME}-{}.oci.tar", meta.version)));
    let built = pack(&rootfs, &meta, &archive)?;
    if args.check_reproducible {
        let again = archive.with_extension("again.tar");
        let second = pack(&rootfs, &meta, &again)?;
        fs::remove_file(&again).ok();
        if second.archive_sha256 != built.archive_sha256 {
            bail!(
                "the image is not reproducible: {} then {}",
                built.archive_sha256,
                second.archive_sha256
            );
        }
        println!("reproducible: two packings gave sha256:{}", built.archive_sha256);
    }
    println!("archive: {}", built.archive.display());
    println!("digest: {}", built.manifest_digest);
    println!("size: {} bytes", built.size);
    Ok(built)
}

/// The static release build of ipf-agent.
fn build_agent() -> Result<PathBuf> {
    let mut c = cargo(&["build", "--release", "-p", "ipf-agent", "--target", MUSL_TARGET]);
    // Paths of the checkout must not end up in the binary (panic messages, debug info), and the
    // symbol table goes: its local names carry `.llvm.<hash>` suffixes that differ between two
    // clean builds of the same source (seen here), the only difference between them.
    let root = workspace_root()?;
    let home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", env_or("HOME", "/root")));
    c.env(
        "RUSTFLAGS",
        format!(
            "-C target-feature=+crt-static -C strip=symbols --remap-path-prefix={}=/src --remap-path-prefix={home}=/cargo",
            root.display()
        ),
    );
    // A separate target directory: other RUSTFLAGS would otherwise rebuild the debug tree.
    c.env("CARGO_TARGET_DIR", root.join("target/image-build"));
    step("build ipf-agent (static, release)", c)?;
    let bin = root.join(format!("target/image-build/{MUSL_TARGET}/release/ipf-agent"));
    let file = output({
        let mut c = Command::new("file");
        c.arg(&bin);
        c
    })
    .unwrap_or_default();
    if file.contains("dynamically linked") {
        bail!("{} is dynamically linked: {file}", bin.display());
    }
    Ok(bin)
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Labels and annotations of the image.
pub struct Metadata {
    pub version: String,
    pub revision: String,
    pub source: String,
    /// RFC 3339 time of the commit (the image's `created`).
    pub created: String,
}

impl Metadata {
    fn from_git(root: &Path) -> Result<Self> {
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.arg("-C").arg(root).args(args);
            output(c).map(|s| s.trim().to_owned())
        };
        let mut revision = git(&["rev-parse", "HEAD"]).context("the image is labelled with the git revision")?;
        if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
            // Honest about uncommitted changes: such an image is not the commit's.
            revision.push_str("-dirty");
        }
        let created = git(&["log", "-1", "--format=%cI"])?;
        let created = chrono_utc(&created)?;
        Ok(Metadata {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision,
            source: env!("CARGO_PKG_REPOSITORY").to_owned(),
            created,
        })
    }

    fn labels(&self) -> BTreeMap<String, String> {
        [
            ("org.opencontainers.image.title", "ipf-agent".to_owned()),
            (
                "org.opencontainers.image.description",
                "eBPF/XDP-accelerated VRRP IP-failover agent".to_owned(),
            ),
            ("org.opencontainers.image.version", self.version.clone()),
            ("org.opencontainers.image.revision", self.revision.clone()),
            ("org.opencontainers.image.source", self.source.clone()),
            (
                "org.opencontainers.image.licenses",
                env!("CARGO_PKG_LICENSE").to_owned(),
            ),
            ("org.opencontainers.image.created", self.created.clone()),
            ("org.opencontainers.image.ref.name", self.version.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// `git log %cI` gives the committer's offset; OCI wants UTC (`Z`).
fn chrono_utc(iso: &str) -> Result<String> {
    let mut c = Command::new("date");
    c.args(["-u", "-d", iso, "+%Y-%m-%dT%H:%M:%SZ"]);
    Ok(output(c)?.trim().to_owned())
}

/// One entry of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { source: PathBuf, mode: u32 },
    Symlink(PathBuf),
}

/// The image's files by absolute path inside the image (sorted: BTreeMap).
#[derive(Debug, Default)]
pub struct RootFs(pub BTreeMap<PathBuf, Entry>);

/// Busybox applets linked into /usr/bin for scripts (bash and the agent provide the rest).
const APPLETS: &[&str] = &[
    "awk", "basename", "cat", "cut", "date", "dirname", "echo", "env", "expr", "false", "grep", "head", "hostname",
    "id", "ip", "kill", "logger", "ls", "mkdir", "nc", "nslookup", "pgrep", "ping", "pidof", "printf", "ps", "rm",
    "sed", "seq", "sleep", "sort", "stat", "tail", "tee", "test", "timeout", "touch", "tr", "true", "uname", "wc",
    "wget", "xargs",
];

/// iptables (both back ends, as Debian ships them) and nft.
const FIREWALL_TOOLS: &[&str] = &[
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/xtables-legacy-multi",
    "/usr/sbin/nft",
];
const IPTABLES_NAMES: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];
const XTABLES_MODULES: &str = "/usr/lib/x86_64-linux-gnu/xtables";

impl RootFs {
    fn collect(agent: &Path) -> Result<Self> {
        let mut fs = RootFs::default();
        // Debian's merged /usr: the top-level directories are links into it.
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            fs.0.insert(PathBuf::from("/").join(link), Entry::Symlink(target.into()));
        }
        for d in ["/etc", "/run/ipf", "/tmp", "/proc", "/sys", "/dev", "/var/run"] {
            fs.dir(d);
        }
        fs.file("/usr/bin/ipf-agent", agent)?;
        fs.file("/usr/bin/bash", Path::new("/bin/bash-static"))?;
        fs.0.insert("/usr/bin/sh".into(), Entry::Symlink("bash".into()));
        fs.file("/usr/bin/busybox", Path::new("/bin/busybox"))?;
        for a in APPLETS {
            fs.0.entry(PathBuf::from("/usr/bin").join(a))
                .or_insert_with(|| Entry::Symlink("busybox".into()));
        }
        for tool in FIREWALL_TOOLS {
            fs.file(tool, Path::new(tool))?;
            for lib in shared_libraries(Path::new(tool))? {
                fs.host_path(&lib)?;
            }
        }
        for name in IPTABLES_NAMES {
            fs.0.insert(
                PathBuf::from("/usr/sbin").join(name),
                Entry::Symlink("xtables-nft-multi".into()),
            );
            let legacy = name.replacen("tables", "tables-legacy", 1);
            fs.0.insert(
                PathBuf::from("/usr/sbin").join(legacy),
                Entry::Symlink("xtables-legacy-multi".into()),
            );
        }
        let mut modules: Vec<PathBuf> = fs::read_dir(XTABLES_MODULES)
            .with_context(|| format!("{XTABLES_MODULES} (Debian package iptables)"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        modules.sort();
        for m in modules {
            fs.host_path(&m)?;
        }
        fs.text_file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )?;
        fs.text_file("/etc/group", "root:x:0:\nnogroup:x:65534:\n")?;
        fs.text_file(
            "/etc/protocols",
            "ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nvrrp 112 VRRP\n",
        )?;
        Ok(fs)
    }

    fn dir(&mut self, path: &str) {
        self.0.insert(path.into(), Entry::Dir);
    }

    fn file(&mut self, at: &str, source: &Path) -> Result<()> {
        let meta =
            fs::metadata(source).with_context(|| format!("{} (installed by `cargo xtask setup`)", source.display()))?;
        self.0.insert(
            at.into(),
            Entry::File {
                source: source.to_owned(),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Small generated files are written next to the layout and packed like the others.
    fn text_file(&mut self, at: &str, text: &str) -> Result<()> {
        let dir = workspace_root()?.join("target/image/generated");
        fs::create_dir_all(&dir)?;
        let path = dir.join(at.trim_start_matches('/').replace('/', "_"));
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        self.file(at, &path)
    }

    /// A host file at the same path (under /usr, as the merged-/usr image lays it out), following
    /// symbolic links and recording them as links.
    fn host_path(&mut self, path: &Path) -> Result<()> {
        let in_image = usr_path(path);
        let meta = fs::symlink_metadata(path).with_context(|| path.display().to_string())?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path)?;
            self.0.insert(in_image, Entry::Symlink(target.clone()));
            let resolved = path.parent().unwrap_or(Path::new("/")).join(target);
            return self.host_path(&resolved);
        }
        self.file(&in_image.to_string_lossy(), path)
    }
}

/// `/lib/x/y` → `/usr/lib/x/y` (the image's /lib is a link to usr/lib, as on Debian 12).
fn usr_path(path: &Path) -> PathBuf {
    for top in ["/lib64/", "/lib/", "/bin/", "/sbin/"] {
        if let Ok(rest) = path.strip_prefix(top) {
            return Path::new("/usr").join(&top[1..]).join(rest);
        }
    }
    path.to_owned()
}

/// The shared libraries and the loader a dynamic binary needs, from `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let mut c = Command::new("ldd");
    c.arg(binary);
    let text = output(c)?;
    Ok(parse_ldd(&text))
}

pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Writes the layout and the archive; returns what was made.
pub fn pack(rootfs: &RootFs, meta: &Metadata, archive: &Path) -> Result<Built> {
    let parent = archive.parent().context("archive path has no directory")?;
    fs::create_dir_all(parent)?;
    let layout_path = archive.with_extension("layout");
    if layout_path.exists() {
        fs::remove_dir_all(&layout_path)?;
    }
    fs::create_dir_all(&layout_path)?;
    let dir = Dir::open_ambient_dir(&layout_path, ambient_authority())?;
    let oci = OciDir::ensure(dir).context("creating the OCI layout")?;

    let mut layer = oci.create_layer(Some(flate2::Compression::best()))?;
    write_rootfs(&mut layer, rootfs)?;
    let layer = layer.into_inner()?.complete()?;

    let mut manifest = oci.new_empty_manifest()?.build()?;
    let labels = meta.labels();
    let mut config = oci::ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .created(meta.created.clone())
        .config(
            oci::ConfigBuilder::default()
                .entrypoint(vec!["/usr/bin/ipf-agent".to_owned(), "run".to_owned()])
                .env(vec![
                    "PATH=/usr/sbin:/usr/bin".to_owned(),
                    // Logs go to a pipe in a container: no colour (also detected), plain lines.
                    "NO_COLOR=1".to_owned(),
                ])
                .working_dir("/")
                .labels(labels.clone().into_iter().collect::<std::collections::HashMap<_, _>>())
                .exposed_ports(vec!["9477/tcp".to_owned()])
                .build()?,
        )
        .rootfs(
            oci::RootFsBuilder::default()
                .typ("layers")
                .diff_ids(Vec::<String>::new())
                .build()?,
        )
        .build()?;
    let created = chrono_parse(&meta.created)?;
    oci.push_layer_full(
        &mut manifest,
        &mut config,
        layer,
        None::<std::collections::HashMap<String, String>>,
        "cargo xtask image",
        created,
    );
    manifest.set_annotations(Some(labels.into_iter().collect()));
    let platform = oci::PlatformBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .build()?;
    let desc = oci.insert_manifest_and_config(manifest, config, Some(&meta.version), platform)?;
    let manifest_digest = desc.digest().to_string();

    tar_dir(&layout_path, archive)?;
    fs::remove_dir_all(&layout_path).ok();
    let bytes = fs::read(archive)?;
    Ok(Built {
        archive: archive.to_owned(),
        manifest_digest,
        archive_sha256: hex(&Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    })
}

fn chrono_parse(rfc3339: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::parse_from_rfc3339(rfc3339)
        .with_context(|| format!("commit time {rfc3339:?}"))?
        .with_timezone(&chrono::Utc))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The root filesystem as a tar stream: sorted, 0:0, mtime 0, parents before children.
pub fn write_rootfs<W: std::io::Write>(tar: &mut tar::Builder<W>, rootfs: &RootFs) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in rootfs.0.keys() {
        for a in path.ancestors().skip(1) {
            if a != Path::new("/") {
                dirs.insert(a.to_owned());
            }
        }
    }
    for (path, e) in &rootfs.0 {
        if matches!(e, Entry::Dir) {
            dirs.insert(path.clone());
        }
    }
    let mut all: BTreeMap<PathBuf, Option<&Entry>> = dirs.into_iter().map(|d| (d, None)).collect();
    for (p, e) in &rootfs.0 {
        if !matches!(e, Entry::Dir) {
            all.insert(p.clone(), Some(e));
        }
    }
    for (path, entry) in all {
        let rel = path.strip_prefix("/").unwrap_or(&path);
        match entry {
            None | Some(Entry::Dir) => {
                let mode = if path == Path::new("/tmp") { 0o1777 } else { 0o755 };
                let mut h = header(tar::EntryType::Directory, mode, 0);
                tar.append_data(&mut h, rel, std::io::empty())?;
            }
            Some(Entry::File { source, mode }) => {
                let data = fs::read(source).with_context(|| source.display().to_string())?;
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                tar.append_data(&mut h, rel, data.as_slice())?;
            }
            Some(Entry::Symlink(target)) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, rel, target)?;
            }
        }
    }
    tar.finish()?;
    Ok(())
}

/// Packs the layout directory into an archive, deterministically.
fn tar_dir(dir: &Path, archive: &Path) -> Result<()> {
    let file = fs::File::create(archive).with_context(|| archive.display().to_string())?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(dir)?;
        let meta = fs::metadata(&p)?;
        if meta.is_dir() {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, rel, std::io::empty())?;
        } else {
            let data = fs::read(&p)?;
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            tar.append_data(&mut h, rel, data.as_slice())?;
        }
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        out.push(p.clone());
        if fs::symlink_metadata(&p)?.is_dir() {
            walk(&p, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> RootFs {
        let a = dir.join("a");
        fs::write(&a, b"#!/bin/sh\necho a\n").expect("write");
        fs::set_permissions(&a, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut r = RootFs::default();
        r.0.insert("/usr/bin/a".into(), Entry::File { source: a, mode: 0o755 });
        r.0.insert("/bin".into(), Entry::Symlink("usr/bin".into()));
        r.0.insert("/run/ipf".into(), Entry::Dir);
        r
    }

    fn meta() -> Metadata {
        Metadata {
            version: "0.0.1".into(),
            revision: "0123456789abcdef".into(),
            source: "https://example.invalid/ipf".into(),
            created: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn same_inputs_give_the_same_archive_and_digest() {
        let dir = std::env::temp_dir().join(format!("ipf-image-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp");
        let rootfs = sample(&dir);
        let one = pack(&rootfs, &meta(), &dir.join("one.tar")).expect("pack one");
        // Different mtimes on the inputs must not matter.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(dir.join("a"))
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        let two = pack(&rootfs, &meta(), &dir.join("two.tar")).expect("pack two");
        assert_eq!(one.archive_sha256, two.archive_sha256);
        assert_eq!(one.manifest_digest, two.manifest_digest);
        assert!(one.manifest_digest.starts_with("sha256:"), "{}", one.manifest_digest);
        let mut other = meta();
        other.revision = "fedcba".into();
        let three = pack(&rootfs, &other, &dir.join("three.tar")).expect("pack three");
        assert_ne!(
            one.manifest_digest, three.manifest_digest,
            "the revision label is part of the image"
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007f)\n\tlibmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libmnl.so.0"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert_eq!(
            usr_path(Path::new("/lib64/ld-linux-x86-64.so.2")),
            PathBuf::from("/usr/lib64/ld-linux-x86-64.so.2")
        );
    }
}
