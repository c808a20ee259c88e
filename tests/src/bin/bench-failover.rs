//! `cargo xtask bench failover`: failover time in the lab topology, ipf-agent against keepalived on
//! the same topology in the same run. Two nodes (A priority 200, B priority 100) and a client on a
//! bridge; the client sends a UDP probe to the VIP every 250 µs and each node's responder answers
//! with its name. A trial kills A (SIGKILL, or SIGTERM for a graceful stop) and measures the time
//! until the first answer from B. Prints median, p99 and the RFC floor (Master_Down_Interval of B for
//! a kill, Skew_Time for a graceful stop). Figures only; no pass/fail.
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use ipf_testbed::{Keepalived, Netns, Proc, Switch, keepalived_conf, keepalived_instance, try_wait_for, wait_for};

const VIP: &str = "192.0.2.100";
const UDP_PORT: u16 = 9000;
/// Probe resolution: the measured time is at most this much later than the first moment B answers.
const PROBE_EVERY: Duration = Duration::from_micros(250);
/// How often the probe looks for answers (a nanosleep, so the probe thread mostly sleeps).
const PROBE_POLL: Duration = Duration::from_micros(50);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Ipf,
    Keepalived,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Kill,
    Graceful,
}

/// A UDP responder answering each datagram with the node's name.
fn udp_responder(ns: &Netns, name: &str) -> Proc {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',{UDP_PORT}))\nprint('listening',flush=True)\nwhile True:\n  d,a=s.recvfrom(64)\n  s.sendto(b'{name}',a)\n"
    );
    let mut cmd = ns.command("python3");
    cmd.arg("-c").arg(script);
    let p = Proc::spawn("udp-responder", cmd);
    wait_for("the UDP responder", Duration::from_secs(10), || {
        p.lines().iter().any(|l| l == "listening").then_some(())
    });
    p
}

struct Node {
    ns: Netns,
    priority: u8,
    agent: Option<Proc>,
    keepalived: Option<Keepalived>,
    _responder: Proc,
}

struct Bench {
    a: Node,
    b: Node,
    client: Netns,
    _switch: Switch,
    agent_bin: std::path::PathBuf,
}

impl Bench {
    fn new() -> Self {
        let switch = Switch::new("ipf-bs");
        let mk = |prefix: &str, addr: &str, port: &str, name: &'static str, priority: u8| {
            let ns = Netns::new(prefix);
            switch.attach(&ns, "eth0", &[addr], port);
            let responder = udp_responder(&ns, name);
            Node {
                ns,
                priority,
                agent: None,
                keepalived: None,
                _responder: responder,
            }
        };
        let a = mk("ipf-ba", "192.0.2.1/24", "pa", "A", 200);
        let b = mk("ipf-bb", "192.0.2.2/24", "pb", "B", 100);
        let client = Netns::new("ipf-bc");
        switch.attach(&client, "eth0", &["192.0.2.50/24"], "pc");
        Bench {
            a,
            b,
            client,
            _switch: switch,
            agent_bin: ipf_tests::agent_bin(),
        }
    }
}

fn start(node: &mut Node, imp: Impl, version: u8, interval_ms: u32, bin: &std::path::Path) {
    match imp {
        Impl::Ipf => {
            let inst = format!(
                "name=VI_51,vrid=51,priority={},version={version},interval={interval_ms},vip={VIP}/24",
                node.priority
            );
            let mut cmd = node.ns.command(bin);
            cmd.args(["run", "-i", "eth0", "--status-socket", "off", "--instance", &inst])
                .env("RUST_LOG", "warn");
            node.agent = Some(Proc::spawn("ipf-agent", cmd));
        }
        Impl::Keepalived => {
            let interval = format!("{}", f64::from(interval_ms) / 1000.0);
            let vip = format!("{VIP}/24");
            let conf = keepalived_conf(
                version,
                &[keepalived_instance("VI_51", 51, node.priority, &interval, "", &[&vip])],
            );
            node.keepalived = Some(Keepalived::start(&node.ns, &conf));
        }
    }
}

fn stop(node: &mut Node, how: Stop) {
    // Dropping a Proc SIGKILLs it.
    if let Some(mut p) = node.agent.take()
        && how == Stop::Graceful
    {
        p.signal(libc::SIGTERM);
        p.wait_exit(Duration::from_secs(5));
    }
    if let Some(mut k) = node.keepalived.take() {
        match how {
            Stop::Graceful => k.stop(),
            Stop::Kill => k.kill(),
        }
    }
}

/// Probes the VIP every [`PROBE_EVERY`] from the client; returns a receiver of (time, responder name).
fn probe(client: &Netns, stop: Arc<AtomicBool>) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    let ns_name = client.name.clone();
    std::thread::spawn(move || {
        let path = format!("/var/run/netns/{ns_name}");
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: valid namespace fd; affects only this thread.
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) },
            0
        );
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let dst: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().unwrap();
        let mut buf = [0u8; 64];
        // Short sleeps, not a spin: a busy probe would take one of this machine's two cores from the
        // agents and responders it measures. Answers are stamped within ~`PROBE_POLL` of arrival.
        let mut next_send = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_send {
                let _ = sock.send_to(b"?", dst);
                next_send += PROBE_EVERY;
            }
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                let _ = tx.send((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
            std::thread::sleep(PROBE_POLL);
        }
    });
    rx
}

/// Waits until the probe answers come only from `name` for a while; drains the channel.
fn wait_serving(rx: &mpsc::Receiver<(Instant, String)>, name: &str, timeout: Duration) -> bool {
    try_wait_for(timeout, || {
        let got: Vec<String> = rx.try_iter().map(|(_, n)| n).collect();
        (got.len() >= 20 && got.iter().all(|n| n == name)).then_some(())
    })
    .is_some()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn run_case(bench: &mut Bench, imp: Impl, version: u8, interval_ms: u32, how: Stop, trials: usize) {
    let interval = Duration::from_millis(u64::from(interval_ms));
    let base = if version == 2 { Duration::from_secs(1) } else { interval };
    let skew_b = base * (256 - u32::from(bench.b.priority)) / 256;
    let floor = match how {
        Stop::Kill => interval * 3 + skew_b,
        Stop::Graceful => skew_b,
    };
    let stop_flag = Arc::new(AtomicBool::new(false));
    let rx = probe(&bench.client, stop_flag.clone());
    let bin = bench.agent_bin.clone();
    start(&mut bench.b, imp, version, interval_ms, &bin);
    let mut samples = Vec::new();
    for _ in 0..trials {
        start(&mut bench.a, imp, version, interval_ms, &bin);
        if !wait_serving(&rx, "A", Duration::from_secs(30)) {
            eprintln!("  {imp:?}: A never served the VIP; trial skipped");
            stop(&mut bench.a, Stop::Kill);
            continue;
        }
        // Let A's second gratuitous-ARP burst and the adverts settle.
        std::thread::sleep(interval * 5);
        rx.try_iter().for_each(drop);
        let t0 = Instant::now();
        stop(&mut bench.a, how);
        let took = try_wait_for(Duration::from_secs(30), || {
            rx.try_iter().find(|(_, n)| n == "B").map(|(t, _)| t - t0)
        });
        match took {
            Some(d) => samples.push(d.as_secs_f64() * 1000.0),
            None => eprintln!("  {imp:?}: B never answered"),
        }
        // keepalived leaves its VIP behind after SIGKILL (ipf's lease expires): reset A for the next trial.
        let _ = bench
            .a
            .ns
            .command("ip")
            .args(["addr", "del", &format!("{VIP}/24"), "dev", "eth0"])
            .output();
        // B must be stable Master before A comes back.
        wait_serving(&rx, "B", Duration::from_secs(30));
    }
    stop(&mut bench.b, Stop::Graceful);
    stop_flag.store(true, Ordering::Relaxed);
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        println!("  {imp:<10?} v{version} {interval_ms:>5} ms {how:<8?}: no samples");
        return;
    }
    let slowest: Vec<String> = samples.iter().rev().take(3).map(|v| format!("{v:.1}")).collect();
    println!(
        "  {:<10} v{version} {interval_ms:>5} ms  {:<8}  n={:<3} median {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  floor {:>8.1} ms  (p99 - floor {:+.1} ms; slowest {})",
        format!("{imp:?}"),
        format!("{how:?}"),
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        floor.as_secs_f64() * 1000.0,
        percentile(&samples, 99.0) - floor.as_secs_f64() * 1000.0,
        slowest.join(", "),
    );
}

/// Scrapes both agents' /metrics every `every` from the client namespace until `stop` is set.
fn scraper(client: &Netns, every: Duration, stop: Arc<AtomicBool>) {
    let path = format!("/var/run/netns/{}", client.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: valid namespace fd; affects only this thread.
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) },
            0
        );
        while !stop.load(Ordering::Relaxed) {
            for node in ["192.0.2.1:9477", "192.0.2.2:9477"] {
                use std::io::{Read as _, Write as _};
                let addr: SocketAddr = node.parse().unwrap();
                if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
            }
            std::thread::sleep(every);
        }
    });
}

fn main() {
    // 60 trials at 10 ms, so the p99 is not simply the slowest trial; 20 at 1 s, where a trial takes
    // seconds. IPF_BENCH_TRIALS sets both.
    let set: Option<usize> = std::env::var("IPF_BENCH_TRIALS").ok().and_then(|t| t.parse().ok());
    let trials_at = |interval_ms: u32| set.unwrap_or(if interval_ms <= 100 { 60 } else { 20 });
    let trials = trials_at(10);
    if let Some(ms) = std::env::var("IPF_BENCH_SCRAPE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Does serving /metrics touch the election path? The same ipf cases without and with scrapes.
        let mut bench = Bench::new();
        println!("failover with and without /metrics scraped every {ms} ms ({trials} trials each)");
        for how in [Stop::Kill, Stop::Graceful] {
            println!(" not scraped:");
            run_case(&mut bench, Impl::Ipf, 3, 10, how, trials);
            let stop = Arc::new(AtomicBool::new(false));
            scraper(&bench.client, Duration::from_millis(ms), stop.clone());
            println!(" scraped every {ms} ms:");
            run_case(&mut bench, Impl::Ipf, 3, 10, how, trials);
            stop.store(true, Ordering::Relaxed);
        }
        return;
    }
    let only_fast = std::env::var("IPF_BENCH_FAST_ONLY").is_ok_and(|v| v == "1");
    let mut bench = Bench::new();
    println!(
        "failover: time from stopping the master to the client's first answer from the new one ({} trials at 10 ms, {} at 1 s)",
        trials_at(10),
        trials_at(1000)
    );
    let mut cases = vec![(3u8, 10u32)];
    if !only_fast {
        cases.extend([(3, 1000), (2, 1000)]);
    }
    for (version, interval_ms) in cases {
        for how in [Stop::Kill, Stop::Graceful] {
            for imp in [Impl::Ipf, Impl::Keepalived] {
                run_case(&mut bench, imp, version, interval_ms, how, trials_at(interval_ms));
            }
        }
    }
}
