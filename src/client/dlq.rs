//! `herald dlq list|show|redrive|purge --trigger NAME`.

use reqwest::Method;
use serde_json::{json, Value};

use super::{print_structured, table, text, Api, ClientError};
use crate::cli::{DlqIdsArgs, DlqListArgs, Output};
use crate::kinds::TRIGGER;

fn base(api: &Api, trigger: &str) -> String {
    format!(
        "{}/deadletters",
        TRIGGER.object_path(&api.namespace, trigger)
    )
}

pub async fn list(args: DlqListArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let list = api.call(Method::GET, &base(&api, &args.trigger)).await?;
    if args.output != Output::Table {
        return print_structured(args.output, &list);
    }
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        eprintln!(
            "No parked events for trigger {}/{}.",
            api.namespace, args.trigger
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            vec![
                text(item, "/id").to_owned(),
                text(item, "/event/id").to_owned(),
                text(item, "/event/type").to_owned(),
                item.pointer("/failure/attempts")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                item.pointer("/failure/lastStatus")
                    .filter(|v| !v.is_null())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                text(item, "/failure/parkedAt").to_owned(),
                text(item, "/failure/lastError").chars().take(60).collect(),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "EVENT",
            "TYPE",
            "ATTEMPTS",
            "STATUS",
            "PARKED",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(())
}

fn ids_or_all(args: &DlqIdsArgs) -> Result<Value, ClientError> {
    match (args.all, args.ids.is_empty()) {
        (true, _) => Ok(json!({"all": true})),
        (false, false) => Ok(json!({"ids": args.ids})),
        (false, true) => Err(ClientError::Usage(
            "name parked event ids (see `herald dlq list`) or pass --all".into(),
        )),
    }
}

pub async fn show(args: DlqIdsArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    if args.ids.is_empty() {
        return Err(ClientError::Usage(
            "name the parked event ids to show".into(),
        ));
    }
    for id in &args.ids {
        let item = api
            .call(Method::GET, &format!("{}/{id}", base(&api, &args.trigger)))
            .await?;
        let output = match args.output {
            Output::Table => Output::Yaml,
            other => other,
        };
        print_structured(output, &item)?;
    }
    Ok(())
}

pub async fn redrive(args: DlqIdsArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let body = ids_or_all(&args)?;
    let report = api
        .call_json(
            Method::POST,
            &format!("{}/redrive", base(&api, &args.trigger)),
            &body,
        )
        .await?;
    if args.output != Output::Table {
        return print_structured(args.output, &report);
    }
    let count = |key: &str| listed(&report, key);
    println!(
        "delivered {}, dead-lettered {}, parked again {}, not found {}",
        count("delivered"),
        count("deadLettered"),
        count("parked"),
        count("notFound")
    );
    if count("parked") + count("notFound") > 0 {
        return Err(ClientError::Other(
            "some events were not redriven (see above)".into(),
        ));
    }
    Ok(())
}

pub async fn purge(args: DlqIdsArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let query = if ids_or_all(&args)?["all"] == true {
        "all=true".to_owned()
    } else {
        format!("ids={}", args.ids.join(","))
    };
    let report = api
        .call(
            Method::DELETE,
            &format!("{}?{query}", base(&api, &args.trigger)),
        )
        .await?;
    if args.output != Output::Table {
        return print_structured(args.output, &report);
    }
    let count = |key: &str| listed(&report, key);
    println!(
        "purged {}, not found {}",
        count("purged"),
        count("notFound")
    );
    if count("notFound") > 0 {
        return Err(ClientError::Other("some events were not found".into()));
    }
    Ok(())
}

/// How many ids a redrive or purge answer lists under `key`.
fn listed(report: &Value, key: &str) -> usize {
    report
        .get(key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}
