//! What the control plane's unit tests share: a runtime on the in-memory log, and desired
//! states from YAML.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed step is a failed test"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_broker::log::memory::MemoryLog;
use herald_broker::log::routed::RoutedLog;
use herald_broker::{BrokerRegistry, EventLog, Ingress, IngressConfig};
use herald_sources::secrets::LocalSecrets;
use herald_sources::webhook::WebhookRegistry;
use herald_triggers::attempt::Sender;
use herald_triggers::process::Deps;

use super::Runtime;
use crate::apiserver_source::KubeAccess;
pub use crate::config::testing::{desired, trigger, BROKER};
use crate::source_kinds::SourceContext;

/// Where the test runtime says its ingress listens (nothing does: no test sends to it).
pub const INGRESS: &str = "http://127.0.0.1:9";

/// A runtime whose every broker is kept in `log`.
pub fn runtime(log: Arc<MemoryLog>) -> Runtime {
    let log: Arc<dyn EventLog> = log;
    let routes = Arc::new(RoutedLog::new(
        "memory",
        HashMap::from([("memory".to_owned(), log)]),
    ));
    let log: Arc<dyn EventLog> = routes.clone();
    let ingress = Arc::new(Ingress::new(
        log.clone(),
        Arc::new(BrokerRegistry::default()),
        IngressConfig::default(),
    ));
    let deps = Deps {
        sender: Sender::new(1 << 20, 16).unwrap(),
        log,
        ingress,
        tokens: None,
    };
    Runtime::new(
        routes,
        deps,
        INGRESS.to_owned(),
        8,
        Duration::from_millis(100),
        SourceContext {
            webhooks: Arc::new(WebhookRegistry::default()),
            retries: 0,
            backoff: Duration::from_millis(1),
            kube: Arc::new(KubeAccess::from_kubeconfig(None)),
            secrets: Arc::new(LocalSecrets::new(None)),
            sink_clients: Arc::new(herald_tls::Clients::new(
                Arc::new(herald_tls::TrustBundles::load(Vec::new()).unwrap()),
                Box::new(|builder| builder),
            )),
            token_dir: None,
        },
        1 << 20,
    )
}
