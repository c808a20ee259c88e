//! `cargo xtask bench split-brain`: split brain in the lab topology. Two nodes (A priority 150, B
//! priority 100) and a client on a bridge, 1 s adverts; VRRP is dropped on the bridge (bridge-family
//! nft) until both nodes are Master, then let through again. Per trial it measures, for ipf-agent:
//! the time from B becoming Master until each side reports the conflict (`status --json`), and the
//! time from the path returning until the client reaches A again (a UDP probe every 2 ms); for
//! keepalived in the same
//! topology, the latter only (it has no detection). Then, with multicast VRRP dropped but unicast
//! passing, how many trials end in a split with ipf's unicast peers (learned from adverts, or
//! configured, or from DNS answered by a dnsmasq on the bridge) against multicast only. Figures only; no pass/fail. `IPF_BENCH_TRIALS` (default 5).
#![allow(clippy::unwrap_used, reason = "benchmark binary")]

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use ipf_testbed::{
    Dnsmasq, Keepalived, Netns, Proc, Switch, TempDir, fetch_name, keepalived_conf, keepalived_instance,
    spawn_responder, wait_for,
};
use serde_json::Value;

const VIP: &str = "192.0.2.100";
const PORT: u16 = 8080;
const T: Duration = Duration::from_secs(30);
const UDP_PORT: u16 = 9000;
/// Resolution of the heal time: the client sends a datagram to the VIP this often.
const PROBE_EVERY: Duration = Duration::from_millis(2);

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

/// From `client`, probes the VIP every [`PROBE_EVERY`] and returns when `name` first answers (time
/// since `from`), or `None` after `limit`.
fn first_answer(client: &Netns, name: &str, from: Instant, limit: Duration) -> Option<Duration> {
    ipf_testbed::in_netns(client, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(PROBE_EVERY)).unwrap();
        let target = std::net::SocketAddr::new(VIP.parse().unwrap(), UDP_PORT);
        let mut buf = [0u8; 64];
        while from.elapsed() < limit {
            let _ = s.send_to(b"?", target);
            let sent = Instant::now();
            while sent.elapsed() < PROBE_EVERY {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) if &buf[..n] == name.as_bytes() => return Some(from.elapsed()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        None
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    MulticastOnly,
    Learned,
    Configured,
    /// From DNS (dnsmasq on the bridge), learning off.
    Dns,
}

struct Lab {
    switch: Switch,
    nodes: [Netns; 2],
    client: Netns,
    _http: Vec<Proc>,
    dir: TempDir,
    bin: PathBuf,
    dns: Dnsmasq,
}

impl Lab {
    fn new() -> Self {
        let switch = Switch::new("ipf-bsbs");
        let mut http = Vec::new();
        let mk = |i: usize, http: &mut Vec<Proc>| {
            let ns = Netns::new(&format!("ipf-bsb{i}"));
            switch.attach(&ns, "eth0", &[&format!("192.0.2.{}/24", i + 1)], &format!("p{i}"));
            http.push(spawn_responder(&ns, PORT, ["A", "B"][i]));
            http.push(udp_responder(&ns, ["A", "B"][i]));
            ns
        };
        let nodes = [mk(0, &mut http), mk(1, &mut http)];
        let client = Netns::new("ipf-bsbc");
        switch.attach(&client, "eth0", &["192.0.2.10/24"], "pc");
        let dns = Dnsmasq::start(
            &switch,
            "192.0.2.53/24",
            "pd",
            "192.0.2.1 ipf.test\n192.0.2.2 ipf.test\n",
        );
        Lab {
            switch,
            nodes,
            client,
            _http: http,
            dir: TempDir::new("ipf-bsb"),
            bin: ipf_tests::agent_bin(),
            dns,
        }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.sock"))
    }

    fn ipf(&self, i: usize, peers: Peers) -> Proc {
        let priority = [150, 100][i];
        let mut inst = format!("name=VI_1,vrid=51,priority={priority},version=3,interval=1000,vip={VIP}/24");
        if peers == Peers::Configured {
            inst.push_str(",peer=192.0.2.1,peer=192.0.2.2");
        }
        let mut cmd = self.nodes[i].command(&self.bin);
        cmd.args(["run", "-i", "eth0", "--status-socket"])
            .arg(self.socket(i))
            .args(["--instance", &inst, "--learn-peers"])
            .arg(if matches!(peers, Peers::MulticastOnly | Peers::Dns) {
                "false"
            } else {
                "true"
            })
            .env("RUST_LOG", "warn");
        if peers == Peers::Dns {
            cmd.args([
                "--peers-dns",
                "ipf.test",
                "--peers-dns-interval-secs",
                "1",
                "--resolv-conf",
            ])
            .arg(&self.dns.resolv_conf);
        }
        Proc::spawn("ipf-agent", cmd)
    }

    fn keepalived(&self, i: usize) -> Keepalived {
        let vip = format!("{VIP}/24");
        let conf = keepalived_conf(3, &[keepalived_instance("VI_1", 51, [150, 100][i], "1", "", &[&vip])]);
        Keepalived::start(&self.nodes[i], &conf)
    }

    fn status(&self, i: usize) -> Value {
        let out = self.nodes[i]
            .command(&self.bin)
            .args(["status", "--json", "--socket"])
            .arg(self.socket(i))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.get(0).cloned())
            .unwrap_or(Value::Null)
    }

    fn holds(&self, i: usize) -> bool {
        ipf_testbed::addresses(&self.nodes[i], "eth0").iter().any(|a| a == VIP)
    }

    fn serves(&self) -> Option<String> {
        fetch_name(&self.client, VIP.parse::<IpAddr>().unwrap(), PORT)
    }

    fn block(&self, multicast_only: bool) {
        let s = &self.switch.ns;
        s.exec("nft", &["add", "table", "bridge", "ipf_bench"]);
        s.exec(
            "nft",
            &["add chain bridge ipf_bench forward { type filter hook forward priority 0 ; }"],
        );
        let rule = if multicast_only {
            "add rule bridge ipf_bench forward ip daddr 224.0.0.18 ip protocol 112 drop"
        } else {
            "add rule bridge ipf_bench forward ip protocol 112 drop"
        };
        s.exec("nft", &[rule]);
    }

    fn unblock(&self) {
        self.switch.ns.exec("nft", &["delete", "table", "bridge", "ipf_bench"]);
    }
}

/// One split and heal with ipf: (detect on A, detect on B, client back on A), in seconds.
fn ipf_trial(lab: &Lab) -> (f64, f64, f64) {
    let (_a, _b) = (lab.ipf(0, Peers::MulticastOnly), lab.ipf(1, Peers::MulticastOnly));
    let state = |i: usize| lab.status(i)["state"].as_str().unwrap_or_default().to_owned();
    wait_for("A master, B backup", T, || {
        (state(0) == "MASTER" && state(1) == "BACKUP").then_some(())
    });
    wait_for("the client on A", T, || {
        (lab.serves().as_deref() == Some("A")).then_some(())
    });
    lab.block(false);
    let since = |i: usize| lab.status(i)["conflicts"][0]["since"].as_f64();
    let (sa, sb) = wait_for("both to report", T, || Some((since(0)?, since(1)?)));
    let b_master = lab.status(1)["last_transition"].as_f64().unwrap();
    wait_for("the client on B", T, || {
        (lab.serves().as_deref() == Some("B")).then_some(())
    });
    let lifted = Instant::now();
    lab.unblock();
    let back = first_answer(&lab.client, "A", lifted, T).expect("the client back on A");
    wait_for("B backup", T, || (state(1) == "BACKUP").then_some(()));
    (sa - b_master, sb - b_master, back.as_secs_f64())
}

/// The same split and heal with keepalived: client back on A after the path returns, in seconds.
fn keepalived_trial(lab: &Lab) -> f64 {
    let (_a, _b) = (lab.keepalived(0), lab.keepalived(1));
    wait_for("A to hold the VIP", T, || (lab.holds(0) && !lab.holds(1)).then_some(()));
    wait_for("the client on A", T, || {
        (lab.serves().as_deref() == Some("A")).then_some(())
    });
    lab.block(false);
    wait_for("B to hold the VIP too", T, || lab.holds(1).then_some(()));
    wait_for("the client on B", T, || {
        (lab.serves().as_deref() == Some("B")).then_some(())
    });
    let lifted = Instant::now();
    lab.unblock();
    // keepalived may leave the client on B until its ARP entry ages out: give it 60 s.
    let back = first_answer(&lab.client, "A", lifted, Duration::from_secs(60));
    back.map_or(f64::INFINITY, |d| d.as_secs_f64())
}

/// Multicast VRRP dropped for twice Master_Down_Interval: whether B became Master.
fn multicast_blocked_trial(lab: &Lab, peers: Peers) -> bool {
    // B first, so with learning each node has heard the other as Master.
    let _b = lab.ipf(1, peers);
    let state = |i: usize| lab.status(i)["state"].as_str().unwrap_or_default().to_owned();
    wait_for("B master", T, || (state(1) == "MASTER").then_some(()));
    let _a = lab.ipf(0, peers);
    wait_for("A master, B backup", T, || {
        (state(0) == "MASTER" && state(1) == "BACKUP").then_some(())
    });
    // Learning takes B's next advert at A, which happens before B yields.
    std::thread::sleep(Duration::from_millis(500));
    lab.block(true);
    let until = Instant::now() + Duration::from_secs(8);
    let mut split = false;
    while Instant::now() < until && !split {
        split = state(1) == "MASTER";
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.unblock();
    split
}

fn stats(name: &str, xs: &[f64]) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let ms = |x: f64| x * 1000.0;
    println!(
        "  {name:<56} median {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    ipf_testbed::require_root();
    let trials: usize = std::env::var("IPF_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let lab = Lab::new();
    println!(
        "split brain, 1 s adverts, {trials} trials each (load before: {})",
        load()
    );
    let (mut da, mut db, mut heal) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..trials {
        let (a, b, h) = ipf_trial(&lab);
        da.push(a);
        db.push(b);
        heal.push(h);
    }
    let ka: Vec<f64> = (0..trials).map(|_| keepalived_trial(&lab)).collect();
    println!("VRRP dropped between the nodes (multicast only), then let through:");
    stats("ipf: old master detects, after the second master", &da);
    stats("ipf: new master detects, after becoming master", &db);
    stats("ipf: client back on the survivor, after the path", &heal);
    stats("keepalived: client back on the survivor, after the path", &ka);
    println!("multicast VRRP dropped, unicast passing (twice Master_Down_Interval): trials that split");
    for (name, peers) in [
        ("ipf, multicast only", Peers::MulticastOnly),
        ("ipf, unicast peers learned from adverts", Peers::Learned),
        ("ipf, unicast peers configured", Peers::Configured),
        ("ipf, unicast peers from DNS (learning off)", Peers::Dns),
    ] {
        let splits = (0..trials).filter(|_| multicast_blocked_trial(&lab, peers)).count();
        println!("  {name:<56} {splits} of {trials}");
    }
    println!("(load after: {})", load());
}
