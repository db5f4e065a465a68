//! Fuzz target `config_yaml` (see `herald_broker::fuzz`): config files as `herald serve
//! --config` reads them. No input panics, overflows a worker's stack or takes long; every
//! resource that loads reads back the same from the text the resource store writes, as the
//! store reads it.

use herald_broker::fuzz::{inputs, run};

use super::{build_desired, parse_documents, parse_json_document};

const YAML_TOKENS: &[&str] = &[
    "\n---\n",
    "apiVersion: eventing.knative.dev/v1\n",
    "kind: Trigger\n",
    "kind: Broker\n",
    "metadata: {name: x}\n",
    "spec:\n  ",
    "  - ",
    ": ",
    "? ",
    "!!str ",
    "!!binary ",
    "|\n  ",
    ">-\n  ",
    "&x ",
    "*x",
    "<<: *x\n",
    "{not: ",
    "{all: [",
    "cesql: ",
    "jsonpath: ",
    "retry: ",
    "backoffDelay: PT",
    "timeout: ",
    "deadLetterSink: ",
    "uri: ",
    "ref: ",
    "broker: ",
    "subscriber: ",
    "filters: [",
    "exact: {",
    "~",
    ".nan",
    "0x1F",
    "0o17",
    "1_000",
    "\u{feff}",
    "%YAML 1.2\n",
];

#[test]
fn fuzz_config_yaml() {
    run("config_yaml", inputs("config_yaml", YAML_TOKENS), |input| {
        // Config files are read as UTF-8; other bytes are a read error before parsing.
        let Ok(text) = std::str::from_utf8(input) else {
            return Ok(());
        };
        let Ok(loaded) = parse_documents("fuzz.yaml", text) else {
            return Ok(());
        };
        let _ = build_desired(loaded.clone(), &crate::config::RefMap::default());
        for resource in loaded.iter().map(|l| &l.resource) {
            let json = resource.to_json();
            let again = parse_json_document("again.json", &super::json_document(resource))
                .map_err(|e| format!("{json} does not load again: {e}"))?;
            let again = Some(again.resource.to_json());
            if again.as_ref() != Some(&json) {
                return Err(format!("{json} loads again as {again:?}"));
            }
        }
        Ok(())
    });
}
