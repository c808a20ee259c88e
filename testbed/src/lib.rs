//! Network namespaces, veth links and processes that are removed when their guard is dropped, also on
//! panic: shared by the root-only tests, the local lab and the benchmarks.
#![allow(
    clippy::unwrap_used,
    reason = "test bed: a failed set-up step should panic with a backtrace"
)]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

/// Ends the calling test early, saying why, unless it runs as root (network namespaces and BPF
/// need it), so a normal user's `cargo test` passes; `cargo xtask test` runs everything as root.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "skipped ({}:{}): needs root for network namespaces and BPF; `sudo -E cargo xtask test` runs it",
                file!(),
                line!()
            );
            return;
        }
    };
}

/// Panics unless running as root: namespaces and BPF need it.
pub fn require_root() {
    // SAFETY: plain syscall.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this needs root (network namespaces, BPF); run it through `sudo -E cargo xtask test`"
    );
}

/// Polls `cond` until it returns `Some` or `timeout` passes; panics with `what` on time-out.
pub fn wait_for<T>(what: &str, timeout: Duration, cond: impl FnMut() -> Option<T>) -> T {
    try_wait_for(timeout, cond).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `cond` every 20 ms until it returns `Some` or `timeout` passes.
pub fn try_wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for namespace and file names:
/// `PREFIX-PID-N`. The pid is what [`sweep_stale_labs`] reads back, so it sits between dashes (a
/// prefix may end in a digit).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every namespace and temporary directory the tests make starts with this.
const LAB_PREFIX: &str = "ipf-";

/// The pid of the process that made `name` with [`unique`], if `name` is one of ours.
pub fn owner_pid(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(3, '-');
    let (n, pid, prefix) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (prefix.starts_with(LAB_PREFIX) && digits(n) && digits(pid))
        .then(|| pid.parse().ok())
        .flatten()
        .filter(|p| *p > 0)
}

/// Whether `pid` is a running process (a zombie is not: its namespaces are nobody's any more).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses, which may itself hold spaces.
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z')
    })
}

/// Network namespaces on this machine (`ip netns list`).
pub fn namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the processes inside namespace `name`.
pub fn namespace_pids(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in namespace `name`, waits (up to 10 s) until they are gone, deletes it
/// and FRR's run directory for it. Returns how many processes it killed. With the processes gone
/// the namespace dies, and with it its devices and any XDP program attached to them.
fn remove_namespace(name: &str) -> usize {
    let pids = namespace_pids(name);
    for pid in &pids {
        // SAFETY: plain syscall.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    // A process not yet gone would keep the namespace, its devices and their XDP programs alive
    // after the name is deleted. A zombie has left its namespaces already; reaping is its parent's.
    let _ = try_wait_for(Duration::from_secs(10), || {
        pids.iter().all(|pid| !running(*pid)).then_some(())
    });
    let _ = Command::new("ip").args(["netns", "del", name]).status();
    let _ = std::fs::remove_dir_all(format!("/var/run/frr/{name}"));
    pids.len()
}

/// What [`sweep_stale_labs`] removed.
#[derive(Debug, Default)]
pub struct Swept {
    /// Namespaces, with the number of processes killed in each.
    pub namespaces: Vec<(String, usize)>,
    pub dirs: Vec<PathBuf>,
}

/// Removes what test binaries that died without unwinding (SIGKILL, a CI time-out, Ctrl-C during a
/// set-up) left: their namespaces with every process inside (agents with XDP attached, keepalived,
/// FRR, Prometheus) and their temporary directories. Only names made by [`unique`] whose pid no
/// longer runs: a live test binary's lab, here or in another checkout, is left alone. Each removal
/// is printed.
pub fn sweep_stale_labs() -> Swept {
    let dead = |name: &str| owner_pid(name).is_some_and(|pid| !running(pid));
    let mut swept = Swept::default();
    for name in namespaces().into_iter().filter(|n| dead(n)) {
        let killed = remove_namespace(&name);
        eprintln!("testbed: removed namespace {name} of a dead test run and the {killed} processes in it");
        swept.namespaces.push((name, killed));
    }
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if dead(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            if std::fs::remove_dir_all(&path).is_ok() {
                eprintln!("testbed: removed {} of a dead test run", path.display());
                swept.dirs.push(path);
            }
        }
    }
    swept
}

/// [`sweep_stale_labs`], once per process: before this binary's first namespace.
fn sweep_once() {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        sweep_stale_labs();
    });
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with `lo` up. Dropping it kills every process inside and deletes it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with a unique name starting with `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self::named(&unique(prefix))
    }

    /// A namespace with exactly this name; a stale one left by a killed run is removed first.
    pub fn named(name: &str) -> Self {
        require_root();
        sweep_once();
        let name = name.to_owned();
        if Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str()))
        }) {
            drop(Netns { name: name.clone() });
        }
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`, asserting success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside the namespace, asserting success; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        run(self.command(program).args(args))
    }

    /// The id of the XDP program attached to `ifname` in this namespace, as `ip -d link` shows it.
    pub fn xdp_prog_id(&self, ifname: &str) -> Option<u32> {
        let out = self.ip(&["-d", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace().skip_while(|w| *w != "prog/xdp");
        words.nth(2)?.parse().ok()
    }

    /// Whether any XDP program is attached to `ifname` in this namespace.
    pub fn has_xdp(&self, ifname: &str) -> bool {
        let out = self.ip(&["-d", "link", "show", "dev", ifname]);
        out.contains("prog/xdp") || out.contains(" xdp")
    }

    /// How the kernel runs the XDP program on `ifname`, as `ip -d link` reports it: `Some("driver")`
    /// (native), `Some("generic")` (the skb path), `None` without a program.
    pub fn xdp_attach_mode(&self, ifname: &str) -> Option<&'static str> {
        let out = self.ip(&["-j", "-d", "link", "show", "dev", ifname]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        // linux/if_link.h XDP_ATTACHED_*: 1 driver, 2 skb (generic).
        match v[0]["xdp"]["mode"].as_u64() {
            Some(1) => Some("driver"),
            Some(2) => Some("generic"),
            _ => None,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

/// Connects `a` and `b` with a veth pair named `a_if`/`b_if` and assigns addresses (CIDR strings).
/// The pair disappears with either namespace.
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            // nodad: IPv6 addresses usable at once, no 1-2 s wait.
            if addr.contains(':') {
                ns.ip(&["addr", "add", addr, "dev", ifname, "nodad"]);
            } else {
                ns.ip(&["addr", "add", addr, "dev", ifname]);
            }
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// Whether a BPF program with this id is still loaded (held by an attachment or an fd).
pub fn bpf_prog_exists(id: u32) -> bool {
    // bpf_attr for BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags.
    let attr: [u32; 3] = [id, 0, 0];
    // SAFETY: the attr buffer is valid for its size; a returned fd is closed at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(BPF_PROG_GET_FD_BY_ID),
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: our own fd.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

const BPF_PROG_GET_FD_BY_ID: i32 = 13;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) on drop, with its stdout lines collected.
pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Proc {
            child,
            lines,
            stderr,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Standard error lines so far (logs).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Lines printed so far that parse as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for exit (with a deadline); returns the exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let name = self.name.clone();
        wait_for(&format!("{name} to exit"), timeout, || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shown only when the test failed, to explain it.
        if std::thread::panicking() {
            eprintln!("---- {} (pid {}) output ----", self.name, self.child.id());
            for line in self.lines().iter().chain(self.stderr.lock().unwrap().iter()) {
                eprintln!("{line}");
            }
        }
    }
}

/// A keepalived from Debian's package running inside a namespace, VRRP process only.
pub struct Keepalived {
    pub proc: Proc,
    dir: TempDir,
}

impl Keepalived {
    pub fn start(ns: &Netns, config: &str) -> Self {
        let dir = TempDir::new("ipf-ka");
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = ns.command("keepalived");
        cmd.args(["--dont-fork", "--log-console", "--vrrp"])
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("keepalived.pid"))
            .arg("-r")
            .arg(dir.path().join("vrrp.pid"));
        Keepalived {
            proc: Proc::spawn("keepalived", cmd),
            dir,
        }
    }

    /// Rewrites the configuration and reloads (SIGHUP).
    pub fn reload(&self, config: &str) {
        std::fs::write(self.dir.path().join("keepalived.conf"), config).unwrap();
        self.proc.signal(libc::SIGHUP);
    }

    /// SIGKILL of every keepalived process (the parent alone would not do: its VRRP child is told of
    /// the parent's death and shuts down gracefully, sending priority 0).
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("vrrp.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.proc.signal(libc::SIGKILL);
        self.proc.wait_exit(Duration::from_secs(10));
    }

    /// Graceful stop: keepalived sends priority 0 and exits.
    pub fn stop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(Duration::from_secs(10));
    }
}

/// A keepalived.conf: `global_defs` with `vrrp_version` and the given `vrrp_instance` blocks.
pub fn keepalived_conf(version: u8, instances: &[String]) -> String {
    format!(
        "global_defs {{\n  router_id ipf-test\n  vrrp_version {version}\n}}\n{}",
        instances.concat()
    )
}

/// A `vrrp_instance` block on eth0 starting as BACKUP; `extra` holds further lines (authentication,
/// unicast...), `interval` is keepalived's `advert_int` in seconds.
pub fn keepalived_instance(name: &str, vrid: u8, priority: u8, interval: &str, extra: &str, vips: &[&str]) -> String {
    format!(
        "vrrp_instance {name} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  priority {priority}\n  advert_int {interval}\n{extra}\n  virtual_ipaddress {{\n    {}\n  }}\n}}\n",
        vips.join("\n    ")
    )
}

/// `ipf-agent monitor --json` (binary `agent`) inside a namespace.
pub fn spawn_monitor(ns: &Netns, agent: &Path, args: &[&str]) -> Proc {
    let mut cmd = ns.command(agent);
    cmd.arg("monitor").arg("--json").args(args);
    Proc::spawn("ipf-agent", cmd)
}

/// A dnsmasq from Debian's package in its own namespace on a switch, answering from a hosts file it
/// re-reads on SIGHUP (records changed while it runs). Nothing else: no upstream, no /etc/hosts.
pub struct Dnsmasq {
    pub proc: Proc,
    pub ns: Netns,
    /// A `resolv.conf` naming it, for the resolver under test (the host's stays untouched).
    pub resolv_conf: PathBuf,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts it at `addr` (a `/prefix` address; the bridge side is `port`) with `hosts`
    /// (`/etc/hosts` lines), and waits until it has started.
    pub fn start(switch: &Switch, addr: &str, port: &str, hosts: &str) -> Self {
        let ns = Netns::new("ipf-dns");
        switch.attach(&ns, "eth0", &[addr], port);
        let ip = addr.split('/').next().unwrap_or(addr);
        let dir = TempDir::new("ipf-dns");
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        let resolv_conf = dir.path().join("resolv.conf");
        std::fs::write(&resolv_conf, format!("nameserver {ip}\n")).unwrap();
        let mut cmd = ns.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--pid-file=",
            "--bind-interfaces",
            "--local-ttl=0",
        ])
        .arg(format!("--listen-address={ip}"))
        .arg(format!("--addn-hosts={}", dir.path().join("hosts").display()));
        let proc = Proc::spawn("dnsmasq", cmd);
        wait_for("dnsmasq to start", Duration::from_secs(10), || {
            proc.stderr_lines().iter().any(|l| l.contains("started")).then_some(())
        });
        Dnsmasq {
            proc,
            ns,
            resolv_conf,
            dir,
        }
    }

    /// Replaces the records and makes dnsmasq re-read them (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.path().join("hosts"), hosts).unwrap();
        self.proc.signal(libc::SIGHUP);
    }

    pub fn stop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(Duration::from_secs(10));
    }
}

/// A bridge in its own namespace, the lab's and tests' shared segment.
pub struct Switch {
    pub ns: Netns,
}

impl Switch {
    pub fn new(prefix: &str) -> Self {
        Self::with(Netns::new(prefix))
    }

    /// A switch in a namespace with exactly this name (the lab's).
    pub fn named(name: &str) -> Self {
        Self::with(Netns::named(name))
    }

    fn with(ns: Netns) -> Self {
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        // A switch forwards frames without running the host's iptables. Bridge netfilter (on in
        // every namespace where the kernel has it) would pass each frame through this namespace's
        // IP hooks, and a veth charges that to the process that sent the frame: up to a quarter
        // of an agent's measured CPU. The tests' nft `bridge` tables do not depend on it.
        in_netns(&ns, || {
            for table in ["iptables", "ip6tables", "arptables"] {
                let path = format!("/proc/sys/net/bridge/bridge-nf-call-{table}");
                if std::path::Path::new(&path).exists() {
                    std::fs::write(&path, "0").unwrap_or_else(|e| panic!("writing 0 to {path}: {e}"));
                }
            }
        });
        Switch { ns }
    }

    /// Plugs `node` in: its `ifname` gets `addrs`, the bridge side is called `port` (unique per switch).
    pub fn attach(&self, node: &Netns, ifname: &str, addrs: &[&str], port: &str) {
        veth(node, ifname, addrs, &self.ns, port, &[]);
        self.ns.ip(&["link", "set", port, "master", "br0"]);
    }
}

/// Runs `f` on a thread inside the namespace (network namespaces are per thread) and returns its
/// result; a panic in `f` is resumed here.
pub fn in_netns<R: Send>(ns: &Netns, f: impl FnOnce() -> R + Send) -> R {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: valid namespace fd; setns changes only this thread, which ends after `f`.
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A tiny HTTP service in `ns` on `port` (IPv4 and IPv6) whose body is `name`: who served the VIP.
pub fn spawn_responder(ns: &Netns, port: u16, name: &str) -> Proc {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',{port}))\ns.listen(64)\nprint('listening',flush=True)\nwhile True:\n  c,_=s.accept()\n  try:\n    c.settimeout(1)\n    c.recv(4096)\n    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: {len}\\r\\n\\r\\n{name}\\n')\n  except OSError:\n    pass\n  c.close()\n",
        len = name.len() + 1
    );
    let mut cmd = ns.command("python3");
    cmd.arg("-c").arg(script);
    let p = Proc::spawn("responder", cmd);
    wait_for("the responder to listen", Duration::from_secs(10), || {
        p.lines().iter().any(|l| l == "listening").then_some(())
    });
    p
}

/// From inside `ns`, GETs `http://addr:port{path}` (HTTP/1.0); returns the status and the body.
pub fn http_get(ns: &Netns, addr: std::net::IpAddr, port: u16, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    in_netns(ns, move || {
        use std::io::{Read as _, Write as _};
        let target = std::net::SocketAddr::new(addr, port);
        let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_millis(50)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    })
}

/// From inside `client`, GETs `http://addr:port/` and returns the body (the serving node's name).
pub fn fetch_name(client: &Netns, addr: std::net::IpAddr, port: u16) -> Option<String> {
    match http_get(client, addr, port, "/")? {
        (200, body) => Some(body.trim().to_owned()),
        _ => None,
    }
}

/// Addresses on `ifname` in `ns` (`ip -j addr`), as strings without prefix.
pub fn addresses(ns: &Netns, ifname: &str) -> Vec<String> {
    let out = ns.ip(&["-j", "addr", "show", "dev", ifname]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().map(str::to_owned))
        .collect()
}

/// FRR's zebra and vrrpd (Debian package) in a namespace, running one VRRPv3 IPv4 instance on a
/// macvlan with the virtual MAC, as FRR requires; FRR's Backup state is `protodown on` of that macvlan.
pub struct Frr {
    // Processes first: they die before the run directory goes.
    _vrrpd: Proc,
    _zebra: Proc,
    run_dir: PathBuf,
    _dir: TempDir,
    pub macvlan: String,
}

impl Frr {
    /// Starts FRR in `ns` on `parent` for `vrid` with `vip` (CIDR).
    pub fn start(ns: &Netns, parent: &str, vrid: u8, priority: u8, interval_ms: u32, vip: &str) -> Self {
        let macvlan = format!("vrrp4-{vrid}");
        let vmac = format!("00:00:5e:00:01:{vrid:02x}");
        ns.ip(&[
            "link", "add", &macvlan, "link", parent, "type", "macvlan", "mode", "bridge",
        ]);
        ns.ip(&["link", "set", &macvlan, "address", &vmac]);
        ns.ip(&["addr", "add", vip, "dev", &macvlan]);
        ns.ip(&["link", "set", &macvlan, "up"]);
        // The VIP is a local address of the whole namespace: without arp_ignore the parent answers
        // ARP for it with its own MAC while vrrpd is Backup (the macvlan protodown), and draws a
        // client's traffic away from the real Master.
        ns.exec("sysctl", &["-qw", &format!("net.ipv4.conf.{parent}.arp_ignore=1")]);
        let dir = TempDir::new("ipf-frr");
        let addr = vip.split('/').next().unwrap_or(vip);
        std::fs::write(dir.path().join("zebra.conf"), "hostname ipf-test\n").unwrap();
        std::fs::write(
            dir.path().join("vrrpd.conf"),
            format!(
                "hostname ipf-test\ninterface {parent}\n vrrp {vrid} version 3\n vrrp {vrid} priority {priority}\n vrrp {vrid} advertisement-interval {interval_ms}\n vrrp {vrid} ip {addr}\n"
            ),
        )
        .unwrap();
        // FRR drops privileges to the frr user: its files and its per-pathspace run directory must be
        // writable by it.
        let run_dir = PathBuf::from(format!("/var/run/frr/{}", ns.name));
        std::fs::create_dir_all(&run_dir).unwrap();
        for p in [dir.path(), run_dir.as_path()] {
            run(Command::new("chown").args(["-R", "frr:frr"]).arg(p));
        }
        let daemon = |name: &str| {
            let mut cmd = ns.command(format!("/usr/lib/frr/{name}"));
            cmd.args(["-N", &ns.name, "--log", "stdout"])
                .arg("-f")
                .arg(dir.path().join(format!("{name}.conf")))
                .arg("-i")
                .arg(dir.path().join(format!("{name}.pid")));
            Proc::spawn(name, cmd)
        };
        let zebra = daemon("zebra");
        wait_for("zebra to start", Duration::from_secs(10), || {
            zebra.lines().iter().any(|l| l.contains("starting")).then_some(())
        });
        let vrrpd = daemon("vrrpd");
        Frr {
            _vrrpd: vrrpd,
            _zebra: zebra,
            run_dir,
            _dir: dir,
            macvlan,
        }
    }

    /// How many times vrrpd has become Master (its macvlan carries the VIP, up, from the start until
    /// vrrpd first sets it protodown: only its log tells a Master from that).
    pub fn became_master(&self) -> usize {
        self._vrrpd.lines().iter().filter(|l| l.contains("-> Master")).count()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // Stop the daemons before their run directory goes (fields drop after this body).
        for p in [&mut self._vrrpd, &mut self._zebra] {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
