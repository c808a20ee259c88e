//! The manifests of `deploy/` as the tests see them: rendered by `kubectl kustomize`, checked by real
//! validators (kubernetes-validate, the prometheus-operator CRD schemas, a schema of the SCC), and the
//! pod spec read from the rendered DaemonSet, never from a copy.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// Where `cargo xtask setup` installs the validators (xtask/src/setup.rs TOOLS_DIR).
pub const TOOLS_DIR: &str = "/var/lib/ipf-tools";
/// The Kubernetes version the manifests are validated for (the oldest with every field they use).
pub const KUBERNETES_VERSION: &str = "1.33.0";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Every kustomization: the base and each overlay.
pub fn kustomizations() -> Vec<PathBuf> {
    let deploy = workspace().join("deploy");
    let mut out = vec![deploy.join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    overlays.sort();
    out.extend(overlays);
    out
}

/// `kubectl kustomize DIR`.
pub fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl (installed with this machine; see `cargo xtask setup`): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a YAML stream as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

pub fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

pub fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"))
}

/// Result of one validator run: success and its report.
pub struct Report {
    pub ok: bool,
    pub text: String,
}

impl Report {
    /// A finished tool's verdict and everything it printed.
    fn of(out: &std::process::Output) -> Self {
        Report {
            ok: out.status.success(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Report {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (installed by `cargo xtask setup`)"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Report::of(&out)
}

/// kubernetes-validate --strict for the core kinds (CRDs are only warned about by it).
pub fn kubernetes_validate(yaml: &str) -> Report {
    let dir = ipf_testbed::TempDir::new("ipf-kv");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(format!("{TOOLS_DIR}/venv/bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate (installed by `cargo xtask setup`): {e}"));
    Report::of(&out)
}

/// The prometheus-operator kinds against the CRD schemas of @kubernetes-models/prometheus-operator.
pub fn validate_prometheus_operator(docs: &[&Value]) -> Report {
    let mut cmd = Command::new("node");
    cmd.arg(workspace().join("tests/deploy/validate-crds.mjs")).arg(format!(
        "{TOOLS_DIR}/npm/node_modules/@kubernetes-models/prometheus-operator"
    ));
    run_with_stdin(cmd, &serde_json::to_string(docs).unwrap())
}

/// SecurityContextConstraints against tests/deploy/scc.schema.json.
pub fn validate_scc(docs: &[&Value]) -> Report {
    let mut cmd = Command::new(format!("{TOOLS_DIR}/venv/bin/python"));
    cmd.arg(workspace().join("tests/deploy/validate-json-schema.py"))
        .arg(workspace().join("tests/deploy/scc.schema.json"));
    run_with_stdin(cmd, &serde_json::to_string(docs).unwrap())
}

/// What the agent needs from its pod, checked on the rendered DaemonSet (and the SCC, if any); each
/// problem names the field.
pub fn pod_policy_errors(docs: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let ds = find(docs, "DaemonSet");
    let spec = &ds["spec"];
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    let field = "spec.template.spec.containers[0].securityContext";
    let added: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for cap in ["NET_ADMIN", "NET_RAW", "BPF"] {
        if !added.contains(&cap) {
            errors.push(format!("{field}.capabilities.add: {cap} missing"));
        }
    }
    if !sc["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "ALL"))
    {
        errors.push(format!("{field}.capabilities.drop: ALL missing"));
    }
    if sc["privileged"] == true {
        errors.push(format!("{field}.privileged: must not be true"));
    }
    if sc["readOnlyRootFilesystem"] != true {
        errors.push(format!("{field}.readOnlyRootFilesystem: must be true"));
    }
    if pod["hostNetwork"] != true {
        errors.push("spec.template.spec.hostNetwork: must be true".into());
    }
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        if c[probe]["httpGet"]["path"] != path {
            errors.push(format!(
                "spec.template.spec.containers[0].{probe}.httpGet.path: must be {path}"
            ));
        }
    }
    let ru = &spec["updateStrategy"]["rollingUpdate"];
    if ru["maxUnavailable"] != 1 {
        errors.push("spec.updateStrategy.rollingUpdate.maxUnavailable: must be 1".into());
    }
    if ru["maxSurge"] != 0 {
        errors.push("spec.updateStrategy.rollingUpdate.maxSurge: must be 0".into());
    }
    // Master_Down_Interval at 1 s adverts: 3 s + skew (< 1 s).
    if spec["minReadySeconds"].as_u64().unwrap_or(0) < 4 {
        errors.push("spec.minReadySeconds: must cover a Master_Down_Interval (at least 4)".into());
    }
    if pod["priorityClassName"] != "system-node-critical" {
        errors.push("spec.template.spec.priorityClassName: must be system-node-critical".into());
    }
    let env: Vec<&str> = c["env"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    for var in ["NODE_NAME", "NODE_IP"] {
        if !env.contains(&var) {
            errors.push(format!("spec.template.spec.containers[0].env: {var} missing"));
        }
    }
    if let Some(scc) = docs.iter().find(|d| d["kind"] == "SecurityContextConstraints") {
        let allowed: Vec<&str> = scc["allowedCapabilities"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for cap in &added {
            if !allowed.contains(cap) {
                errors.push(format!(
                    "SecurityContextConstraints.allowedCapabilities: {cap} missing (the pod adds it)"
                ));
            }
        }
        let seccomp = sc["seccompProfile"]["type"].as_str().unwrap_or("RuntimeDefault");
        let wanted = match seccomp {
            "Unconfined" => "unconfined",
            "RuntimeDefault" => "runtime/default",
            _ => "localhost/*",
        };
        let profiles: Vec<&str> = scc["seccompProfiles"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !profiles.iter().any(|p| *p == wanted || *p == "*") {
            errors.push(format!(
                "SecurityContextConstraints.seccompProfiles: {wanted} missing (the pod uses {seccomp})"
            ));
        }
        let se = pod["securityContext"]["seLinuxOptions"]["type"].as_str();
        if se != Some("spc_t") || scc["seLinuxContext"]["seLinuxOptions"]["type"] != "spc_t" {
            errors.push("spec.template.spec.securityContext.seLinuxOptions.type: spc_t in the pod and the SCC".into());
        }
    }
    errors
}
