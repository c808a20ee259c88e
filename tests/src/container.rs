//! The image run by podman (with runc) exactly as the rendered DaemonSet says: capabilities, seccomp,
//! read-only root, environment (ConfigMap and downward API), args, volumes, probes and grace period,
//! joined to a node's network namespace as `hostNetwork` does.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::deploy::{documents, find, render, workspace};

/// The pod spec's parts that podman reproduces.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `Unconfined`, `RuntimeDefault` or `Localhost`.
    pub seccomp: String,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    pub run_as_user: Option<u64>,
    /// Environment from `envFrom` ConfigMaps, then `env` values; downward-API variables by field path.
    pub env: BTreeMap<String, String>,
    pub field_env: BTreeMap<String, String>,
    pub args: Vec<String>,
    /// mountPath → `hostPath` path or `emptyDir`.
    pub mounts: Vec<(String, Mount)>,
    /// (path, port) of the startup, readiness and liveness probes.
    pub startup: (String, u16),
    pub readiness: (String, u16),
    pub liveness: (String, u16),
    pub grace: Duration,
    pub min_ready: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    HostPath(String),
    EmptyDir,
}

impl PodSpec {
    /// Reads the DaemonSet of `deploy/<dir>` as `kubectl kustomize` renders it.
    pub fn rendered(dir: &str) -> Self {
        let docs = documents(&render(&workspace().join("deploy").join(dir)));
        Self::from_docs(&docs)
    }

    pub fn from_docs(docs: &[Value]) -> Self {
        let ds = find(docs, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let mut env = BTreeMap::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let name = from["configMapRef"]["name"].as_str().expect("envFrom configMapRef");
            let cm = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("ConfigMap {name} is not in the rendered manifests"));
            for (k, v) in cm["data"].as_object().into_iter().flatten() {
                env.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        let mut field_env = BTreeMap::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            if let Some(v) = e["value"].as_str() {
                env.insert(name, v.to_owned());
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                field_env.insert(name, path.to_owned());
            } else {
                panic!("env {name}: only value and fieldRef are reproduced");
            }
        }
        let ports: BTreeMap<String, u16> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    p["containerPort"].as_u64().unwrap_or_default() as u16,
                )
            })
            .collect();
        let probe = |name: &str| -> (String, u16) {
            let get = &c[name]["httpGet"];
            let port = match &get["port"] {
                Value::String(s) => *ports.get(s).unwrap_or_else(|| panic!("{name}: no port {s}")),
                v => v.as_u64().expect("probe port") as u16,
            };
            (get["path"].as_str().expect("probe path").to_owned(), port)
        };
        let volumes: BTreeMap<String, Mount> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let name = v["name"].as_str()?.to_owned();
                if let Some(p) = v["hostPath"]["path"].as_str() {
                    Some((name, Mount::HostPath(p.to_owned())))
                } else if v.get("emptyDir").is_some() {
                    Some((name, Mount::EmptyDir))
                } else {
                    None // configMap volumes of the overlays: not part of the base's pod
                }
            })
            .collect();
        let mounts = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let v = volumes.get(m["name"].as_str()?)?;
                Some((m["mountPath"].as_str()?.to_owned(), v.clone()))
            })
            .collect();
        PodSpec {
            cap_add: strings(&sc["capabilities"]["add"]),
            cap_drop: strings(&sc["capabilities"]["drop"]),
            seccomp: sc["seccompProfile"]["type"]
                .as_str()
                .or(pod["securityContext"]["seccompProfile"]["type"].as_str())
                .unwrap_or("RuntimeDefault")
                .to_owned(),
            read_only_root: sc["readOnlyRootFilesystem"] == true,
            no_new_privileges: sc["allowPrivilegeEscalation"] == false,
            run_as_user: sc["runAsUser"].as_u64(),
            env,
            field_env,
            args: strings(&c["args"]),
            mounts,
            startup: probe("startupProbe"),
            readiness: probe("readinessProbe"),
            liveness: probe("livenessProbe"),
            grace: Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30)),
            min_ready: Duration::from_secs(ds["spec"]["minReadySeconds"].as_u64().unwrap_or(0)),
        }
    }

    /// `$(VAR)` in args, as the kubelet expands them from the container's environment.
    pub fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
        let mut out = arg.to_owned();
        for (k, v) in env {
            out = out.replace(&format!("$({k})"), v);
        }
        out
    }
}

/// What the kubelet would know about the node, for the downward API.
pub struct Node<'a> {
    pub name: &'a str,
    pub ip: &'a str,
    /// The network namespace standing for the node's host network.
    pub netns: &'a str,
    /// The node's directory standing for `/` of hostPath volumes.
    pub host_root: &'a Path,
}

/// A podman container, removed (with `podman rm -f`) when dropped.
pub struct Container {
    pub name: String,
}

/// Whether podman can run here (the tests skip with a message otherwise).
pub fn podman_available() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// Loads the image archive into podman's storage as `localhost/ipf-agent:<tag>`; removed on drop.
pub struct LoadedImage {
    pub reference: String,
}

impl LoadedImage {
    pub fn load(archive: &Path, tag: &str) -> Self {
        let reference = format!("localhost/ipf-agent:{tag}");
        let out = Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("containers-storage:{reference}"))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        LoadedImage { reference }
    }
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.reference]);
    }
}

/// Options a test changes on top of the manifest.
#[derive(Default, Clone)]
pub struct Overrides {
    /// Environment values replacing the ConfigMap's (the test's VIPs and interface).
    pub env: BTreeMap<String, String>,
    /// Run under the runtime's default seccomp profile instead of the manifest's.
    pub runtime_default_seccomp: bool,
}

impl Container {
    /// `podman run -d` of `image` with exactly `spec`'s privileges, environment, args and mounts, in
    /// `node`'s network namespace.
    pub fn run(name: &str, image: &str, spec: &PodSpec, node: &Node, o: &Overrides) -> Self {
        let _ = podman(&["rm", "-f", name]);
        let mut env = spec.env.clone();
        env.extend(o.env.clone());
        for (var, path) in &spec.field_env {
            let value = match path.as_str() {
                "spec.nodeName" => node.name,
                "status.hostIP" | "status.podIP" => node.ip,
                other => panic!("downward API field {other} is not reproduced"),
            };
            env.insert(var.clone(), value.to_owned());
        }
        let mut cmd = Command::new("podman");
        cmd.args(["run", "-d", "--name", name, "--runtime", "runc"])
            .arg(format!("--network=ns:/run/netns/{}", node.netns))
            // This VM lacks CAP_SYS_RESOURCE for podman's default limits.
            .args(["--ulimit", "nofile=10000:10000", "--ulimit", "nproc=1000:1000"])
            .arg(format!("--stop-timeout={}", spec.grace.as_secs()))
            // No restarts: a crash must show as an exited container, not be hidden.
            .arg("--restart=no");
        for c in &spec.cap_drop {
            cmd.arg(format!("--cap-drop={c}"));
        }
        for c in &spec.cap_add {
            cmd.arg(format!("--cap-add={c}"));
        }
        match (o.runtime_default_seccomp, spec.seccomp.as_str()) {
            (true, _) | (false, "RuntimeDefault") => {}
            (false, "Unconfined") => {
                cmd.arg("--security-opt=seccomp=unconfined");
            }
            (false, other) => panic!("seccompProfile {other} is not reproduced"),
        }
        if spec.no_new_privileges {
            cmd.arg("--security-opt=no-new-privileges");
        }
        if spec.read_only_root {
            // Only what the manifest mounts is writable (podman would add tmpfs on /run, /tmp).
            cmd.args(["--read-only", "--read-only-tmpfs=false"]);
        }
        if let Some(uid) = spec.run_as_user {
            cmd.arg(format!("--user={uid}"));
        }
        for (path, m) in &spec.mounts {
            match m {
                Mount::EmptyDir => {
                    cmd.arg(format!("--tmpfs={path}"));
                }
                Mount::HostPath(host) => {
                    let dir: PathBuf = node.host_root.join(host.trim_start_matches('/'));
                    std::fs::create_dir_all(&dir).expect("hostPath directory");
                    cmd.arg(format!("--volume={}:{path}", dir.display()));
                }
            }
        }
        for (k, v) in &env {
            cmd.arg(format!("--env={k}={v}"));
        }
        cmd.arg(image);
        for a in &spec.args {
            cmd.arg(PodSpec::expand(a, &env));
        }
        let out = cmd.output().expect("podman run");
        assert!(
            out.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container { name: name.to_owned() }
    }

    /// `podman logs` (the agent logs to stderr).
    pub fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// (running, exit code, restart count) from `podman inspect`.
    pub fn state(&self) -> (bool, i64, u64) {
        let out = podman(&["inspect", "--format", "json", &self.name]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let s = &v[0]["State"];
        (
            s["Running"] == true,
            s["ExitCode"].as_i64().unwrap_or(-1),
            v[0]["RestartCount"].as_u64().unwrap_or(0),
        )
    }

    /// `podman kill` (SIGKILL).
    pub fn kill(&self) {
        let out = podman(&["kill", &self.name]);
        assert!(
            out.status.success(),
            "podman kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `podman stop` with the container's stop timeout (the grace period); returns how long it took.
    pub fn stop(&self) -> Duration {
        let start = std::time::Instant::now();
        let out = podman(&["stop", &self.name]);
        assert!(
            out.status.success(),
            "podman stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        start.elapsed()
    }

    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- container {} logs ----\n{}", self.name, self.logs());
        }
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}
