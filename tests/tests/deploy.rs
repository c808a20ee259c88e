//! `deploy/`: every kustomization renders with `kubectl kustomize` and passes kubernetes-validate
//! --strict, the prometheus-operator kinds pass their CRD schemas, the SCC its schema, and the pod
//! spec gives the agent what it needs; a manifest with an unknown field or a missing capability
//! fails naming the field. The PrometheusRule and the dashboard ConfigMap are dashboards/'s.
//! Needs the validators `cargo xtask setup` installs; not root.
#![allow(clippy::unwrap_used, reason = "tests")]

use ipf_tests::deploy::{
    documents, find, kubernetes_validate, kustomizations, pod_policy_errors, render, to_yaml,
    validate_prometheus_operator, validate_scc, workspace,
};
use serde_json::{Value, json};

fn rendered(dir: &str) -> Vec<Value> {
    documents(&render(&workspace().join("deploy").join(dir)))
}

#[test]
fn every_kustomization_renders_and_validates_strictly() {
    let all = kustomizations();
    assert!(all.len() >= 4, "base and three overlays: {all:?}");
    for dir in all {
        let yaml = render(&dir);
        let docs = documents(&yaml);
        let name = dir.display();
        let core = kubernetes_validate(&yaml);
        assert!(core.ok, "{name}: kubernetes-validate --strict:\n{}", core.text);

        let monitoring: Vec<&Value> = docs
            .iter()
            .filter(|d| d["apiVersion"] == "monitoring.coreos.com/v1")
            .collect();
        let kinds: Vec<&str> = monitoring.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert!(
            kinds.contains(&"PodMonitor") && kinds.contains(&"PrometheusRule"),
            "{name}: {kinds:?}"
        );
        let r = validate_prometheus_operator(&monitoring);
        assert!(r.ok, "{name}: prometheus-operator schemas:\n{}", r.text);

        let sccs: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "SecurityContextConstraints")
            .collect();
        if !sccs.is_empty() {
            let r = validate_scc(&sccs);
            assert!(r.ok, "{name}: SCC schema:\n{}", r.text);
        }
        let errors = pod_policy_errors(&docs);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        println!("{name}: {} resources valid", docs.len());
    }
}

#[test]
fn openshift_overlays_carry_an_scc_and_the_rbac_to_use_it() {
    for dir in ["overlays/openshift", "overlays/ipfailover"] {
        let docs = rendered(dir);
        let scc = find(&docs, "SecurityContextConstraints");
        assert_eq!(scc["allowPrivilegedContainer"], false, "{dir}");
        let role = find(&docs, "ClusterRole");
        assert_eq!(role["rules"][0]["verbs"], json!(["use"]));
        assert_eq!(role["rules"][0]["resourceNames"], json!([scc["metadata"]["name"]]));
        let binding = find(&docs, "RoleBinding");
        let ds = find(&docs, "DaemonSet");
        assert_eq!(
            binding["subjects"][0]["name"],
            ds["spec"]["template"]["spec"]["serviceAccountName"]
        );
        assert_eq!(binding["subjects"][0]["namespace"], ds["metadata"]["namespace"]);
    }
}

#[test]
fn migration_overlays_keep_the_old_images_environment() {
    let cm = |docs: &[Value]| {
        docs.iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("ipf-config"))
            })
            .unwrap()["data"]
            .clone()
    };
    let ipfailover = rendered("overlays/ipfailover");
    let data = cm(&ipfailover);
    // The seed's Deployment's variables, unchanged (the VIPs aside: a documentation range here).
    for (k, v) in [
        ("OPENSHIFT_HA_CONFIG_NAME", "ipfailover"),
        ("OPENSHIFT_HA_VIP_GROUPS", "10"),
        ("OPENSHIFT_HA_NETWORK_INTERFACE", "ens3"),
        ("OPENSHIFT_HA_MONITOR_PORT", "30060"),
        ("OPENSHIFT_HA_IPTABLES_CHAIN", "INPUT"),
        ("OPENSHIFT_HA_PREEMPTION", "preempt_delay 300"),
        ("OPENSHIFT_HA_CHECK_SCRIPT", "/etc/keepalive/mycheckscript.sh"),
    ] {
        assert_eq!(data[k], v, "{k}");
    }
    let ds = find(&ipfailover, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"]["node-role.kubernetes.io/worker"],
        ""
    );
    let keepalived = cm(&rendered("overlays/keepalived"));
    assert!(keepalived["KEEPALIVED_VIRTUAL_IPADDRESS_1"].is_string(), "{keepalived}");
    assert!(
        keepalived.get("OPENSHIFT_HA_VIRTUAL_IPS").is_none(),
        "replaced, not merged"
    );
}

#[test]
fn alert_rules_and_dashboard_are_dashboards_own() {
    let docs = rendered("base");
    let rule = find(&docs, "PrometheusRule");
    let alerts: Value =
        serde_norway::from_str(&std::fs::read_to_string(workspace().join("dashboards/ipf-alerts.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        rule["spec"], alerts,
        "deploy/base/prometheusrule.yaml's spec must be dashboards/ipf-alerts.yaml"
    );
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "ipf-dashboard")
        .unwrap();
    let source: Value =
        serde_norway::from_str(&std::fs::read_to_string(workspace().join("dashboards/configmap.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        cm["data"], source["data"],
        "deploy/base/grafana-dashboard.yaml must be dashboards/configmap.yaml"
    );
    let json_text = std::fs::read_to_string(workspace().join("dashboards/ipf-dashboard.json")).unwrap();
    let a: Value = serde_json::from_str(&json_text).unwrap();
    let b: Value = serde_json::from_str(cm["data"]["ipf-dashboard.json"].as_str().unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn an_unknown_field_fails_validation_naming_it() {
    let mut docs = rendered("base");
    let ds = docs.iter_mut().find(|d| d["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilites"] = json!({"add": ["NET_RAW"]});
    let r = kubernetes_validate(&to_yaml(&docs));
    assert!(!r.ok, "an unknown field passed:\n{}", r.text);
    assert!(
        r.text.contains("capabilites"),
        "the report names the field:\n{}",
        r.text
    );

    let mut docs = rendered("overlays/openshift");
    let scc = docs
        .iter_mut()
        .find(|d| d["kind"] == "SecurityContextConstraints")
        .unwrap();
    scc["allowHostNetworking"] = json!(true);
    let sccs: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "SecurityContextConstraints")
        .collect();
    let r = validate_scc(&sccs);
    assert!(!r.ok && r.text.contains("allowHostNetworking"), "{}", r.text);

    // CRD schemas check types (unknown fields are pruned by the API server, as for every CRD).
    let mut docs = rendered("base");
    let pm = docs.iter_mut().find(|d| d["kind"] == "PodMonitor").unwrap();
    pm["spec"]["podMetricsEndpoints"] = json!({"port": "metrics"});
    let monitoring: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "PodMonitor").collect();
    let r = validate_prometheus_operator(&monitoring);
    assert!(!r.ok && r.text.contains("podMetricsEndpoints"), "{}", r.text);
}

#[test]
fn a_missing_capability_fails_naming_the_field() {
    let mut docs = rendered("overlays/openshift");
    let ds = docs.iter_mut().find(|d| d["kind"] == "DaemonSet").unwrap();
    let add = &mut ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"];
    add.as_array_mut().unwrap().retain(|c| c != "NET_RAW");
    let errors = pod_policy_errors(&docs);
    assert_eq!(
        errors,
        vec!["spec.template.spec.containers[0].securityContext.capabilities.add: NET_RAW missing".to_owned()]
    );

    // The SCC must allow what the pod adds.
    let mut docs = rendered("overlays/openshift");
    let scc = docs
        .iter_mut()
        .find(|d| d["kind"] == "SecurityContextConstraints")
        .unwrap();
    scc["allowedCapabilities"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c != "BPF");
    let errors = pod_policy_errors(&docs);
    assert_eq!(
        errors,
        vec!["SecurityContextConstraints.allowedCapabilities: BPF missing (the pod adds it)".to_owned()]
    );
}
