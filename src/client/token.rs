//! `herald token`: a token from Herald's issuer, printed alone on a line.

use reqwest::Method;
use serde_json::{json, Value};

use super::{Api, ClientError};
use crate::cli::TokenArgs;

pub async fn token(args: TokenArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let subject = match (&args.subject, &args.service_account) {
        (Some(subject), _) => subject.clone(),
        (None, Some(account)) => service_account_subject(account)?,
        (None, None) => {
            return Err(ClientError::Usage(
                "give --subject or --service-account".into(),
            ))
        }
    };
    let audience = match (&args.audience, &args.broker) {
        (Some(audience), _) => audience.clone(),
        (None, Some(broker)) => crate::identity::naming::stream_audience(
            &herald_broker::BrokerKey::new(&api.namespace, broker),
        ),
        (None, None) => {
            return Err(ClientError::Usage("give --audience or --broker".into()));
        }
    };
    let mut request = json!({ "subject": subject, "audience": audience });
    if let Some(seconds) = args.expiration_seconds {
        request["expirationSeconds"] = json!(seconds);
    }
    let answer = api
        .call_json(Method::POST, crate::api::oidc::TOKEN_PATH, &request)
        .await?;
    let token = answer
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Other("the answer holds no token".into()))?;
    println!("{token}");
    Ok(())
}

/// The subject of `--service-account NAMESPACE/NAME`.
pub(super) fn service_account_subject(account: &str) -> Result<String, ClientError> {
    let (namespace, name) = account
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "--service-account {account:?}: expected NAMESPACE/NAME"
            ))
        })?;
    Ok(crate::identity::naming::subject(namespace, name))
}
