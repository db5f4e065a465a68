//! `herald filter test`: which element of a trigger's filters decides for one event.
#![allow(clippy::print_stdout, reason = "the CLI's output")]

use std::io::Read;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use herald_broker::json;
use herald_triggers::filter::{compile, Verdict};

use crate::cli::FilterTestArgs;
use crate::config::{parse_documents, Resource};

pub fn run(args: FilterTestArgs) -> anyhow::Result<ExitCode> {
    let origin = args.trigger.display().to_string();
    let text =
        std::fs::read_to_string(&args.trigger).with_context(|| format!("cannot read {origin}"))?;
    let trigger = parse_documents(&origin, &text)?
        .into_iter()
        .find_map(|loaded| match loaded.resource {
            Resource::Trigger(trigger) => Some(trigger),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{origin}: no Trigger in the file"))?;
    let name = trigger.metadata.name.clone().unwrap_or_default();
    let filter =
        compile(&trigger.spec).map_err(|e| anyhow!("{origin}: Trigger {name}: field {e}"))?;

    let mut event_text = Vec::new();
    if args.event == "-" {
        std::io::stdin()
            .read_to_end(&mut event_text)
            .context("cannot read the event from standard input")?;
    } else {
        event_text =
            std::fs::read(&args.event).with_context(|| format!("cannot read {}", args.event))?;
    }
    let event = json::parse_event(&event_text).map_err(|e| anyhow!("invalid event: {e}"))?;
    event
        .validate()
        .map_err(|e| anyhow!("invalid event: {e}"))?;

    let decision = filter.explain(&event);
    let verdict = match decision.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::NoFilter => "PASS (nothing filtered)",
    };
    println!("{verdict}: trigger {name}, event {}", event.id());
    println!("decided by {}: {}", decision.path, decision.reason);
    Ok(if decision.verdict == Verdict::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
