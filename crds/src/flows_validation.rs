//! Validation of channels, subscriptions, sequences and parallels, with Knative's vocabulary
//! (`missing field(s)`, `must not set the field(s)`, `invalid value`) and the field path.

use crate::channel::{
    ChannelTemplateSpec, SubscriberSpec, IN_MEMORY_CHANNEL_API_VERSION, KAFKA_CHANNEL_API_VERSION,
};
use crate::duration::parse_iso8601;
use crate::flows::{ParallelSpec, SequenceSpec};
use crate::subscription::SubscriptionSpec;
use crate::validation::{validate_delivery, validate_destination, validate_name};
use crate::{ChannelSpec, DeliverySpec, FieldError, KafkaChannelSpec};

/// The channel kinds a `channelTemplate` may name: Herald runs both on its log.
pub fn validate_channel_template(
    path: &str,
    template: &ChannelTemplateSpec,
) -> Result<(), FieldError> {
    for (field, value) in [
        ("apiVersion", &template.api_version),
        ("kind", &template.kind),
    ] {
        if value.trim().is_empty() {
            return Err(FieldError::new(
                format!("{path}.{field}"),
                "missing field(s)",
            ));
        }
    }
    let known = match template.kind.as_str() {
        "InMemoryChannel" => template.api_version == IN_MEMORY_CHANNEL_API_VERSION,
        "KafkaChannel" => template.api_version == KAFKA_CHANNEL_API_VERSION,
        _ => false,
    };
    if !known {
        return Err(FieldError::new(
            format!("{path}.kind"),
            format!(
                "channel kind {} {} is not served by Herald: use InMemoryChannel ({IN_MEMORY_CHANNEL_API_VERSION}, on any backend) or KafkaChannel ({KAFKA_CHANNEL_API_VERSION}, on the Kafka backend)",
                template.api_version, template.kind
            ),
        ));
    }
    if template.kind == "KafkaChannel" {
        if let Some(spec) = &template.spec {
            let spec: KafkaChannelSpec = serde_json::from_value(spec.clone())
                .map_err(|e| FieldError::new(format!("{path}.spec"), e.to_string()))?;
            validate_kafka_channel_spec(&format!("{path}.spec"), &spec)?;
        }
    } else if let Some(spec) = &template.spec {
        let spec: crate::InMemoryChannelSpec = serde_json::from_value(spec.clone())
            .map_err(|e| FieldError::new(format!("{path}.spec"), e.to_string()))?;
        validate_channelable(&format!("{path}.spec"), &spec.subscribers, &spec.delivery)?;
    }
    Ok(())
}

/// What every channel kind's spec shares: no `subscribers` from users, a valid `delivery`.
pub fn validate_channelable(
    path: &str,
    subscribers: &[SubscriberSpec],
    delivery: &Option<DeliverySpec>,
) -> Result<(), FieldError> {
    if !subscribers.is_empty() {
        return Err(FieldError::new(
            format!("{path}.subscribers"),
            "must not set the field(s): Herald fills a channel's subscribers from Subscriptions; declare a Subscription instead",
        ));
    }
    if let Some(delivery) = delivery {
        validate_delivery(&format!("{path}.delivery"), delivery)?;
    }
    Ok(())
}

pub fn validate_channel_spec(spec: &ChannelSpec) -> Result<(), FieldError> {
    if let Some(template) = &spec.channel_template {
        validate_channel_template("spec.channelTemplate", template)?;
    }
    validate_channelable("spec", &spec.subscribers, &spec.delivery)
}

pub fn validate_kafka_channel_spec(path: &str, spec: &KafkaChannelSpec) -> Result<(), FieldError> {
    if spec.num_partitions.is_some_and(|n| n < 1) {
        return Err(FieldError::new(
            format!("{path}.numPartitions"),
            "invalid value: must be at least 1",
        ));
    }
    if spec.replication_factor.is_some_and(|n| n < 1) {
        return Err(FieldError::new(
            format!("{path}.replicationFactor"),
            "invalid value: must be at least 1",
        ));
    }
    if let Some(text) = &spec.retention_duration {
        parse_iso8601(text).map_err(|e| FieldError::new(format!("{path}.retentionDuration"), e))?;
    }
    validate_channelable(path, &spec.subscribers, &spec.delivery)
}

/// The channel kinds a Subscription's `spec.channel` may name.
pub const SUBSCRIBABLE: [(&str, &str); 3] = [
    ("Channel", IN_MEMORY_CHANNEL_API_VERSION),
    ("InMemoryChannel", IN_MEMORY_CHANNEL_API_VERSION),
    ("KafkaChannel", KAFKA_CHANNEL_API_VERSION),
];

pub fn validate_subscription_spec(spec: &SubscriptionSpec) -> Result<(), FieldError> {
    let channel = &spec.channel;
    if channel.name.is_empty() {
        return Err(FieldError::new(
            "spec.channel",
            "missing field(s): a channel reference is required",
        ));
    }
    if !SUBSCRIBABLE
        .iter()
        .any(|(kind, api)| channel.kind == *kind && channel.api_version == *api)
    {
        return Err(FieldError::new(
            "spec.channel",
            format!(
                "invalid value: {} {} is not a channel Herald serves: use Channel or InMemoryChannel ({IN_MEMORY_CHANNEL_API_VERSION}) or KafkaChannel ({KAFKA_CHANNEL_API_VERSION})",
                channel.api_version, channel.kind
            ),
        ));
    }
    validate_name("spec.channel.name", &channel.name)?;
    if channel.namespace.is_some() {
        return Err(FieldError::new(
            "spec.channel.namespace",
            "must not set the field(s): a Subscription's channel is in its own namespace (cross-namespace links are off)",
        ));
    }
    match &spec.subscriber {
        None => return Err(FieldError::new("spec.subscriber", "missing field(s)")),
        Some(subscriber) => validate_destination("spec.subscriber", subscriber)?,
    }
    if let Some(reply) = &spec.reply {
        validate_destination("spec.reply", reply)?;
    }
    if let Some(delivery) = &spec.delivery {
        validate_delivery("spec.delivery", delivery)?;
    }
    Ok(())
}

pub fn validate_sequence_spec(spec: &SequenceSpec) -> Result<(), FieldError> {
    if spec.steps.is_empty() {
        return Err(FieldError::new("spec.steps", "missing field(s)"));
    }
    for (i, step) in spec.steps.iter().enumerate() {
        let path = format!("spec.steps[{i}]");
        validate_destination(&path, &step.destination())
            .map_err(|e| FieldError::new(&path, format!("invalid value: {}", e.message)))?;
        if let Some(delivery) = &step.delivery {
            validate_delivery(&format!("{path}.delivery"), delivery)?;
        }
    }
    if let Some(template) = &spec.channel_template {
        validate_channel_template("spec.channelTemplate", template)?;
    }
    if let Some(reply) = &spec.reply {
        validate_destination("spec.reply", reply)?;
    }
    Ok(())
}

pub fn validate_parallel_spec(spec: &ParallelSpec) -> Result<(), FieldError> {
    if spec.branches.is_empty() {
        return Err(FieldError::new("spec.branches", "missing field(s)"));
    }
    for (i, branch) in spec.branches.iter().enumerate() {
        let invalid = |path: String| {
            move |e: FieldError| FieldError::new(&path, format!("invalid value: {}", e.message))
        };
        if let Some(filter) = &branch.filter {
            let path = format!("spec.branches[{i}].filter");
            validate_destination(&path, filter).map_err(invalid(path.clone()))?;
        }
        let path = format!("spec.branches[{i}].subscriber");
        validate_destination(&path, &branch.subscriber).map_err(invalid(path.clone()))?;
        if let Some(reply) = &branch.reply {
            let path = format!("spec.branches[{i}].reply");
            validate_destination(&path, reply).map_err(invalid(path.clone()))?;
        }
        // Knative does not check a branch's delivery; Herald does (bad input changes nothing).
        if let Some(delivery) = &branch.delivery {
            validate_delivery(&format!("spec.branches[{i}].delivery"), delivery)?;
        }
    }
    if let Some(template) = &spec.channel_template {
        validate_channel_template("spec.channelTemplate", template)?;
    }
    if let Some(reply) = &spec.reply {
        validate_destination("spec.reply", reply)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{ParallelBranch, SequenceStep};
    use crate::{Destination, KReference};

    fn uri(u: &str) -> Destination {
        Destination {
            uri: Some(u.into()),
            ..Destination::default()
        }
    }

    #[test]
    fn templates_name_a_served_channel_kind() {
        assert!(validate_channel_template("t", &ChannelTemplateSpec::in_memory()).is_ok());
        let kafka = ChannelTemplateSpec {
            api_version: KAFKA_CHANNEL_API_VERSION.into(),
            kind: "KafkaChannel".into(),
            spec: Some(serde_json::json!({"numPartitions": 3})),
        };
        assert!(validate_channel_template("t", &kafka).is_ok());
        let nats = ChannelTemplateSpec {
            api_version: "messaging.knative.dev/v1alpha1".into(),
            kind: "NatsJetStreamChannel".into(),
            spec: None,
        };
        let error = validate_channel_template("spec.channelTemplate", &nats).unwrap_err();
        assert_eq!(error.path, "spec.channelTemplate.kind");
        assert!(error.message.contains("NatsJetStreamChannel"), "{error}");
        let bad_spec = ChannelTemplateSpec {
            spec: Some(serde_json::json!({"numPartitions": 0})),
            ..kafka
        };
        assert_eq!(
            validate_channel_template("t", &bad_spec).unwrap_err().path,
            "t.spec.numPartitions"
        );
        let missing = ChannelTemplateSpec::default();
        assert_eq!(
            validate_channel_template("t", &missing)
                .unwrap_err()
                .message,
            "missing field(s)"
        );
    }

    #[test]
    fn subscriptions_need_a_served_channel_and_a_subscriber() {
        let channel = KReference {
            api_version: IN_MEMORY_CHANNEL_API_VERSION.into(),
            kind: "InMemoryChannel".into(),
            name: "c".into(),
            namespace: None,
        };
        let good = SubscriptionSpec {
            channel: channel.clone(),
            subscriber: Some(uri("http://h/")),
            ..SubscriptionSpec::default()
        };
        assert!(validate_subscription_spec(&good).is_ok());
        let cases = [
            (
                SubscriptionSpec {
                    subscriber: None,
                    ..good.clone()
                },
                "spec.subscriber",
            ),
            (
                SubscriptionSpec {
                    channel: KReference {
                        kind: "Broker".into(),
                        ..channel.clone()
                    },
                    ..good.clone()
                },
                "spec.channel",
            ),
            (
                SubscriptionSpec {
                    channel: KReference {
                        namespace: Some("other".into()),
                        ..channel.clone()
                    },
                    ..good.clone()
                },
                "spec.channel.namespace",
            ),
            (
                SubscriptionSpec {
                    reply: Some(uri("nope")),
                    ..good.clone()
                },
                "spec.reply.uri",
            ),
        ];
        for (spec, path) in cases {
            assert_eq!(validate_subscription_spec(&spec).unwrap_err().path, path);
        }
    }

    #[test]
    fn sequences_and_parallels_name_the_bad_element() {
        let empty = SequenceSpec::default();
        assert_eq!(
            validate_sequence_spec(&empty).unwrap_err().path,
            "spec.steps"
        );
        let bad_step = SequenceSpec {
            steps: vec![
                SequenceStep {
                    destination: uri("http://a/"),
                    delivery: None,
                },
                SequenceStep::default(),
            ],
            ..SequenceSpec::default()
        };
        let error = validate_sequence_spec(&bad_step).unwrap_err();
        assert_eq!(error.path, "spec.steps[1]");
        assert!(error.message.starts_with("invalid value"), "{error}");
        assert_eq!(
            validate_parallel_spec(&ParallelSpec::default())
                .unwrap_err()
                .path,
            "spec.branches"
        );
        let bad_filter = ParallelSpec {
            branches: vec![ParallelBranch {
                filter: Some(uri("ftp://x")),
                subscriber: uri("http://s/"),
                ..ParallelBranch::default()
            }],
            ..ParallelSpec::default()
        };
        assert_eq!(
            validate_parallel_spec(&bad_filter).unwrap_err().path,
            "spec.branches[0].filter"
        );
    }
}
