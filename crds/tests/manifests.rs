//! `crds/manifests/` must be exactly what the types generate. After changing a type, run
//! `cargo run -- crds --out crds/manifests` and commit the result.

use std::path::Path;

#[test]
fn committed_manifests_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut expected_files = Vec::new();
    for crd in herald_crds::manifests::all() {
        let name = herald_crds::manifests::file_name(&crd);
        let generated = herald_crds::manifests::to_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|_| {
            panic!("crds/manifests/{name} is missing: run `cargo run -- crds --out crds/manifests`")
        });
        assert!(
            committed == generated,
            "crds/manifests/{name} differs from the types: run `cargo run -- crds --out crds/manifests`"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "stale files in crds/manifests");
}

/// Kubernetes accepts only structural schemas: no `$ref` anywhere (checked against a real
/// kube-apiserver 1.34 once by hand; the controller issue adds that test to CI).
#[test]
fn schemas_have_no_refs() {
    for crd in herald_crds::manifests::all() {
        let yaml = herald_crds::manifests::to_yaml(&crd).unwrap();
        assert!(!yaml.contains("$ref"), "{:?} uses $ref", crd.metadata.name);
    }
}

/// Client-side `kubectl apply` keeps the whole object in an annotation, which Kubernetes
/// caps at 256 KiB: every CRD must fit (a full PodTemplateSpec schema would not).
#[test]
fn crds_fit_a_client_side_kubectl_apply() {
    for crd in herald_crds::manifests::all() {
        let size = serde_json::to_vec(&crd).unwrap().len();
        assert!(size < 200 * 1024, "{:?} is {size} bytes", crd.metadata.name);
    }
}

#[test]
fn crds_have_knative_names_status_and_columns() {
    let crds = herald_crds::manifests::all();
    let names: Vec<&str> = crds
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "brokers.eventing.knative.dev",
            "triggers.eventing.knative.dev",
            "eventtypes.eventing.knative.dev",
            "pingsources.sources.knative.dev",
            "containersources.sources.knative.dev",
            "kafkasources.sources.knative.dev",
            "apiserversources.sources.knative.dev",
            "sinkbindings.sources.knative.dev",
            "webhooksources.sources.herald.dev",
            "natssources.sources.herald.dev",
            "channels.messaging.knative.dev",
            "inmemorychannels.messaging.knative.dev",
            "kafkachannels.messaging.knative.dev",
            "subscriptions.messaging.knative.dev",
            "sequences.flows.knative.dev",
            "parallels.flows.knative.dev",
            "eventtransforms.eventing.knative.dev",
            "requestreplies.eventing.knative.dev",
            "eventpolicies.eventing.knative.dev",
        ]
    );
    for crd in &crds {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{:?} has a status subresource",
            crd.metadata.name
        );
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(
            columns.iter().any(|c| c.name == "Ready"),
            "{:?}",
            crd.metadata.name
        );
        assert_eq!(crd.spec.scope, "Namespaced");
    }
    let trigger = &crds[1].spec.versions[0];
    let schema = serde_json::to_value(trigger.schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        required.contains(&"broker") && required.contains(&"subscriber"),
        "{spec}"
    );
}
