//! `dashboards/`: the Prometheus alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), the Grafana dashboard is well formed and its ConfigMap embeds it byte for
//! byte, and in a live lab (two agents and a Prometheus 2.42 from Debian in network namespaces) every
//! dashboard query and template variable returns data after a failover, and IpfSplitBrain fires when
//! VRRP between the nodes is cut, not before. The live test needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ipf_testbed::{Netns, Proc, Switch, TempDir, http_get, wait_for};
use ipf_tests::agent_bin;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const AGENT_PORT: u16 = 9477;
const PROM_PORT: u16 = 9090;
const NODE_A: &str = "192.0.2.1:9477";
const NODE_B: &str = "192.0.2.2:9477";

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn read(name: &str) -> String {
    let path = dashboards().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dashboards())
        .output()
        .expect("promtool (Debian package prometheus) is installed by cargo xtask setup");
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rules() -> Vec<Value> {
    let doc: Value = serde_norway::from_str(&read("ipf-alerts.yaml")).unwrap();
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"], "ipf");
    groups[0]["rules"].as_array().unwrap().clone()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("ipf-dashboard.json")).unwrap()
}

/// Every `expr` in the dashboard (panel targets and annotations), in order.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    exprs(&dashboard(), &mut out);
    out
}

/// `ipf_*` metric names an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ipf_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not part of a longer identifier.
        if !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The dashboard's template variable values for the live lab, and Grafana's interval macros.
fn substitute(expr: &str, node: &str) -> String {
    let s = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1m")
        .replace("$node", node)
        .replace("$instance", "VI_51")
        .replace("$vrid", "51");
    assert!(!s.contains('$'), "unsubstituted variable in {s}");
    s
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "rules", "ipf-alerts.yaml"]);
    promtool(&["test", "rules", "ipf-alerts.test.yaml"]);

    let names: Vec<_> = rules()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "IpfSplitBrain",
            "IpfNoMaster",
            "IpfFlapping",
            "IpfInstanceFault",
            "IpfNoAdvertsReceived",
            "IpfInvalidPackets",
            "IpfRingbufDrops"
        ]
    );
    let tests = read("ipf-alerts.test.yaml");
    for r in rules() {
        let name = r["alert"].as_str().unwrap();
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{name}: no {a}"
            );
        }
        // Each alert has a unit test in which it fires (a non-empty exp_alerts after its name).
        let fires = tests.split("alertname: ").skip(1).any(|t| {
            t.starts_with(&format!("{name}\n")) && t.lines().nth(1).is_some_and(|l| l.trim() == "exp_alerts:")
        });
        assert!(fires, "{name} has no unit test in which it fires");
    }
    let split_brain = &rules()[0];
    assert_eq!(split_brain["for"], "10s");
}

#[test]
fn dashboard_is_well_formed_and_the_configmap_embeds_it() {
    let json = read("ipf-dashboard.json");
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert!(!d["uid"].as_str().unwrap().is_empty());

    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["node", "instance", "vrid"] {
        assert_eq!(var(name)["type"], "query", "{name}");
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}", "{name}");
        assert!(
            var(name)["definition"].as_str().unwrap().starts_with("label_values("),
            "{name}"
        );
    }

    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: duplicate id");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no target");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: target without expr"
            );
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
        let pos = &p["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{title}: gridPos"
        );
    }
    for title in [
        "VRRP state",
        "Masters per VRID",
        "Master changes",
        "Advertisements sent / received",
        "Invalid packets by reason",
        "Ring-buffer drops and events",
        "Gratuitous ARP / unsolicited NA sent",
        "VIP conflicts",
        "Split brain: VIPs claimed by another node",
        "Failover events (last transition)",
        "Datapath mode",
    ] {
        assert!(panels.iter().any(|p| p["title"] == title), "no panel {title:?}");
    }

    let cm: Value = serde_norway::from_str(&read("configmap.yaml")).unwrap();
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert!(
        cm["data"]["ipf-dashboard.json"].as_str() == Some(json.as_str()),
        "configmap.yaml's data.ipf-dashboard.json differs from ipf-dashboard.json: copy the file into \
         the block scalar, indented by four spaces"
    );
}

// ---- The live lab -------------------------------------------------------------------------------

fn agent(ns: &Netns, priority: u8) -> Proc {
    let mut cmd = ns.command(agent_bin());
    cmd.args(["run", "-i", "eth0", "--status-socket", "off"]);
    // A check that passes (the agent's own metrics port), so the check series exist.
    cmd.args(["--check", "name=metrics_port,tcp=9477,interval=1"]);
    cmd.args([
        "--instance",
        &format!("name=VI_51,vrid=51,priority={priority},interval=100,vip=192.0.2.100/24,track=metrics_port"),
    ]);
    Proc::spawn("ipf-agent", cmd)
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// The agent's own view of its state (from its /metrics), if it answers.
fn agent_state(ns: &Netns) -> Option<f64> {
    let (_, body) = http_get(ns, localhost(), AGENT_PORT, "/metrics").filter(|(s, _)| *s == 200)?;
    body.lines()
        .find(|l| l.starts_with("ipf_vrrp_state{") && l.contains("instance=\"VI_51\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus API call from inside its namespace: the `data` of a successful answer.
fn api(prom: &Netns, path: &str) -> Option<Value> {
    let (status, body) = http_get(prom, localhost(), PROM_PORT, path)?;
    let v: Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["status"] == "success").then(|| v["data"].clone())
}

/// An instant query's result vector (None if Prometheus does not answer or rejects it).
fn query(prom: &Netns, q: &str) -> Option<Vec<Value>> {
    let data = api(prom, &format!("/api/v1/query?query={}", urlencode(q)))?;
    data["result"].as_array().cloned()
}

/// `ipf_vrrp_state` per node as Prometheus last scraped it.
fn states(prom: &Netns) -> Vec<(String, String)> {
    let mut v: Vec<_> = query(prom, "ipf_vrrp_state{job=\"ipf\"}")
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"].as_str().unwrap_or_default().to_owned(),
                s["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn wait_states(prom: &Netns, what: &str, want: &[(&str, &str)]) {
    wait_for(what, T, || {
        let got = states(prom);
        (got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>() == want).then_some(())
    });
}

/// Active alerts named `name` (pending or firing).
fn alerts(prom: &Netns, name: &str) -> Option<Vec<Value>> {
    let data = api(prom, "/api/v1/alerts")?;
    Some(
        data["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .cloned()
            .collect(),
    )
}

/// Waits until the `ipf` rule group has been evaluated again after now, twice (so what Prometheus
/// stored before this call has been seen by a rule evaluation).
fn wait_rule_evaluations(prom: &Netns) {
    let last = || api(prom, "/api/v1/rules").and_then(|d| d["groups"][0]["lastEvaluation"].as_str().map(str::to_owned));
    for _ in 0..2 {
        let before = wait_for("the rules to be loaded", T, last);
        wait_for("a rule evaluation", T, || last().filter(|l| *l != before));
    }
}

fn prometheus_config(dir: &Path) -> PathBuf {
    // IpfSplitBrain waits 10 s before firing; the lab checks the expression and labels, not the delay.
    let rules = read("ipf-alerts.yaml");
    assert_eq!(rules.matches("for: 10s").count(), 1);
    let rules_path = dir.join("ipf-alerts.yaml");
    std::fs::write(&rules_path, rules.replace("for: 10s", "for: 0s")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: ipf\n    static_configs:\n      - targets: [\"{NODE_A}\", \"{NODE_B}\"]\n",
        rules_path.display()
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn dashboard_queries_and_split_brain_alert_in_a_live_lab() {
    ipf_testbed::skip_unless_root!();
    let switch = Switch::new("ipf-ds");
    let a_ns = Netns::new("ipf-da");
    let b_ns = Netns::new("ipf-db");
    let p_ns = Netns::new("ipf-dp");
    switch.attach(&a_ns, "eth0", &["192.0.2.1/24"], "pa");
    switch.attach(&b_ns, "eth0", &["192.0.2.2/24"], "pb");
    switch.attach(&p_ns, "eth0", &["192.0.2.3/24"], "pp");
    let dir = TempDir::new("ipf-dst");
    let config = prometheus_config(dir.path());
    let tsdb = dir.path().join("tsdb");

    let mut a = agent(&a_ns, 150);
    let _b = agent(&b_ns, 100);
    let mut cmd = p_ns.command("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{PROM_PORT}"))
        .current_dir(dir.path());
    let _prom = Proc::spawn("prometheus", cmd);

    wait_for("Prometheus to scrape both agents", T, || {
        query(&p_ns, "up{job=\"ipf\"} == 1").filter(|r| r.len() == 2)
    });
    wait_states(
        &p_ns,
        "Prometheus to see A master, B backup",
        &[(NODE_A, "2"), (NODE_B, "1")],
    );

    // The agent's `instance` label is stored as `exported_instance`, as the rules and the dashboard
    // assume; and every series they use is one the agent exports.
    let state = query(&p_ns, "ipf_vrrp_state").unwrap();
    assert!(
        state.iter().all(|s| s["metric"]["exported_instance"] == "VI_51"),
        "{state:?}"
    );
    let exported: BTreeSet<String> = wait_for("the agents' series", T, || {
        let names = api(&p_ns, "/api/v1/label/__name__/values")?;
        let names: BTreeSet<String> = names
            .as_array()?
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        // The per-instance received counters appear with the first scrape after the datapath counts.
        names.contains("ipf_vrrp_adverts_received_total").then_some(names)
    });
    let mut used = BTreeSet::new();
    for e in dashboard_exprs() {
        used.extend(metric_names(&e));
    }
    for r in rules() {
        used.extend(metric_names(r["expr"].as_str().unwrap()));
    }
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by the agent: {unknown:?}");

    // A scripted failover: A stops gracefully, B takes over.
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(T).success(), "A exits 0 on SIGTERM");
    wait_for("B to become master", T, || {
        (agent_state(&b_ns) == Some(2.0)).then_some(())
    });
    wait_for("Prometheus to see B master", T, || {
        query(&p_ns, &format!("ipf_vrrp_state{{instance=\"{NODE_B}\"}} == 2")).filter(|r| !r.is_empty())
    });
    // A couple more scrapes of B as master.
    let scrapes = format!("count_over_time(up{{instance=\"{NODE_B}\"}}[1m])");
    let before: f64 = query(&p_ns, &scrapes).unwrap()[0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_for("two more scrapes of B", T, || {
        let now: f64 = query(&p_ns, &scrapes)?.first()?["value"][1].as_str()?.parse().ok()?;
        (now >= before + 2.0).then_some(())
    });

    // Every dashboard query, with the variables set to B, VI_51 and VRID 51, returns data.
    let mut failed = Vec::new();
    for e in dashboard_exprs() {
        let q = substitute(&e, NODE_B);
        match query(&p_ns, &q) {
            Some(r) if !r.is_empty() => {}
            other => failed.push(format!("{q}\n  -> {other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "dashboard queries without data:\n{}",
        failed.join("\n")
    );
    // And so do the template variables' label_values(SELECTOR, LABEL) queries.
    for v in dashboard()["templating"]["list"].as_array().unwrap() {
        let Some(def) = v["definition"].as_str().filter(|d| d.starts_with("label_values(")) else {
            continue;
        };
        let inner = substitute(def, ".*");
        let inner = inner
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap();
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let series = api(&p_ns, &format!("/api/v1/series?match[]={}", urlencode(selector))).unwrap();
        assert!(
            series
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s[label.trim()].as_str().is_some_and(|l| !l.is_empty())),
            "variable {}: no value for {def}",
            v["name"]
        );
    }

    // Split brain: A back (it preempts), then VRRP cut on the switch. Not firing before, firing after.
    let _a = agent(&a_ns, 150);
    wait_states(
        &p_ns,
        "Prometheus to see A master again, B backup",
        &[(NODE_A, "2"), (NODE_B, "1")],
    );
    wait_rule_evaluations(&p_ns);
    assert_eq!(
        alerts(&p_ns, "IpfSplitBrain").unwrap(),
        Vec::<Value>::new(),
        "IpfSplitBrain with one master"
    );
    let s = &switch.ns;
    s.exec("nft", &["add", "table", "bridge", "ipf_test"]);
    s.exec(
        "nft",
        &["add chain bridge ipf_test forward { type filter hook forward priority 0 ; }"],
    );
    s.exec("nft", &["add rule bridge ipf_test forward ip protocol 112 drop"]);
    wait_for("both nodes master", T, || {
        (agent_state(&a_ns) == Some(2.0) && agent_state(&b_ns) == Some(2.0)).then_some(())
    });
    let firing = wait_for("IpfSplitBrain to fire", T, || {
        alerts(&p_ns, "IpfSplitBrain").filter(|a| a.iter().any(|a| a["state"] == "firing"))
    });
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["labels"]["vrid"], "51");
    assert_eq!(firing[0]["labels"]["severity"], "critical");
    assert_eq!(
        firing[0]["value"].as_str().map(|v| v.parse::<f64>().unwrap()),
        Some(2.0)
    );
    assert!(
        firing[0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("2 masters for VRID 51"),
        "{firing:?}"
    );
}
