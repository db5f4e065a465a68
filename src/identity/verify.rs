//! Authentication at ingress (Knative's `Verifier.VerifyRequest`): with sender identity on,
//! a request to a broker or channel needs `Authorization: Bearer <JWT>` signed by Herald's
//! issuer or a trusted one, unexpired, whose `aud` holds the stream's audience; else 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use herald_broker::access::{AccessDenied, Authenticator, Caller};
use herald_broker::BrokerKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::issuer::Issuer;
use super::naming;
use super::remote_keys::RemoteIssuer;

/// A longer `Authorization` value is refused unread (Kubernetes tokens are about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Verified tokens remembered, so a producer's next event costs a lookup, not a signature
/// check; when full, expired ones go, and if none had, all.
pub const MAX_VERIFIED_TOKENS: usize = 4096;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

/// One key that may sign tokens, with the issuer it speaks for.
#[derive(Clone)]
pub struct TrustedKey {
    pub issuer: String,
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The claims the ingress reads.
#[derive(Deserialize)]
struct Verified {
    sub: String,
    iss: String,
    exp: u64,
}

/// Herald's keys and the trusted issuers' (refreshed by [`super::trusted`]).
#[derive(Default)]
pub struct KeySet {
    own: Vec<TrustedKey>,
    external: RwLock<Arc<Vec<TrustedKey>>>,
}

impl KeySet {
    /// The keys of Herald's own issuer.
    pub fn of_issuer(issuer: &Issuer) -> Self {
        let own = issuer
            .keys()
            .public_keys()
            .filter_map(|public| {
                Some(TrustedKey {
                    issuer: issuer.url().to_owned(),
                    kid: Some(public.kid.clone()),
                    algorithm: Algorithm::ES256,
                    key: public.decoding_key()?,
                })
            })
            .collect();
        Self {
            own,
            external: RwLock::default(),
        }
    }

    /// Replaces the keys of one trusted issuer.
    pub fn set_external(&self, issuer: &str, keys: Vec<TrustedKey>) {
        if let Ok(mut external) = self.external.write() {
            let mut next: Vec<TrustedKey> = external
                .iter()
                .filter(|k| k.issuer != issuer)
                .cloned()
                .collect();
            next.extend(keys);
            *external = Arc::new(next);
        }
    }

    /// Whether any key has this `kid`.
    pub fn knows(&self, kid: &str) -> bool {
        let external = self.external.read().map(|e| e.clone()).unwrap_or_default();
        self.own
            .iter()
            .chain(external.iter())
            .any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that may have signed a token with this `kid` (all, without one).
    fn candidates(&self, kid: Option<&str>) -> Vec<TrustedKey> {
        let external = self.external.read().map(|e| e.clone()).unwrap_or_default();
        self.own
            .iter()
            .chain(external.iter())
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .collect()
    }
}

/// What a verified token allows until it expires.
#[derive(Clone)]
struct Remembered {
    caller: Caller,
    audience: String,
    exp: u64,
}

/// The ingress's authenticator.
pub struct Verifier {
    keys: Arc<KeySet>,
    verified: Mutex<HashMap<String, Remembered>>,
    /// Issuers whose keys are fetched again when a token names a `kid` not known yet.
    remotes: Vec<Arc<RemoteIssuer>>,
}

impl Verifier {
    pub fn new(keys: Arc<KeySet>) -> Self {
        Self {
            keys,
            verified: Mutex::default(),
            remotes: Vec::new(),
        }
    }

    /// Also fetches `remote`'s keys again (rate-limited) on a token with an unknown `kid`.
    pub fn with_remote(mut self, remote: Arc<RemoteIssuer>) -> Self {
        self.remotes.push(remote);
        self
    }

    /// [`Verifier::verify`], after fetching the remote issuers' keys again when the token
    /// names a `kid` no key has (a key rotated in, or keys not fetched yet).
    pub async fn verify_fetching(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Caller, AccessDenied> {
        let unknown_kid = |keys: &KeySet| {
            jsonwebtoken::decode_header(token)
                .ok()
                .and_then(|header| header.kid)
                .is_some_and(|kid| !keys.knows(&kid))
        };
        if self.remotes.is_empty() || !unknown_kid(&self.keys) {
            return self.verify(token, audience);
        }
        // Only the issuers the token may be from are asked (the `iss` is not verified yet:
        // it picks whom to ask, nothing more).
        let iss = unverified_issuer(token);
        let asked: Vec<&Arc<RemoteIssuer>> = self
            .remotes
            .iter()
            .filter(|remote| iss.as_deref().is_some_and(|iss| remote.may_speak_for(iss)))
            .collect();
        for remote in &asked {
            remote.refresh_if_due().await;
        }
        let verified = self.verify(token, audience);
        if verified.is_err() && unknown_kid(&self.keys) {
            // Still unknown: say why when the issuer could not be reached.
            if let (Some(iss), Some(error)) = (
                &iss,
                asked
                    .iter()
                    .filter(|remote| iss.as_deref().is_some_and(|i| remote.names(i)))
                    .find_map(|remote| remote.last_error()),
            ) {
                return Err(AccessDenied::invalid_token(format!(
                    "the keys of trusted issuer {iss} are not available: {error}"
                )));
            }
        }
        verified
    }

    /// Checks `token` for `audience`: the caller, or why not.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Caller, AccessDenied> {
        let now = now();
        if let Some(known) = self.remembered(token, audience, now) {
            return Ok(known);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AccessDenied::invalid_token("the bearer token is not a JWT"))?;
        let candidates = self.keys.candidates(header.kid.as_deref());
        if candidates.is_empty() {
            return Err(AccessDenied::invalid_token(
                "the token is not signed by a trusted issuer",
            ));
        }
        let mut last = AccessDenied::invalid_token("the token is not signed by a trusted issuer");
        for candidate in candidates.iter().filter(|k| k.algorithm == header.alg) {
            let mut validation = Validation::new(candidate.algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_audience(&[audience]);
            validation.set_issuer(&[&candidate.issuer]);
            validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
            match jsonwebtoken::decode::<Verified>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let caller = Caller {
                        subject: data.claims.sub,
                        issuer: data.claims.iss,
                    };
                    self.remember(token, audience, &caller, data.claims.exp, now);
                    return Ok(caller);
                }
                Err(error) => {
                    last = describe(error.kind(), audience);
                    // A good signature with bad claims is final; a bad signature may be
                    // another key's.
                    if !matches!(error.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn remembered(&self, token: &str, audience: &str, now: u64) -> Option<Caller> {
        let verified = self.verified.lock().ok()?;
        let known = verified.get(token)?;
        (known.audience == audience && known.exp > now).then(|| known.caller.clone())
    }

    fn remember(&self, token: &str, audience: &str, caller: &Caller, exp: u64, now: u64) {
        let Ok(mut verified) = self.verified.lock() else {
            return;
        };
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.retain(|_, known| known.exp > now);
            if verified.len() >= MAX_VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(
            token.to_owned(),
            Remembered {
                caller: caller.clone(),
                audience: audience.to_owned(),
                exp,
            },
        );
    }
}

#[async_trait::async_trait]
impl Authenticator for Verifier {
    async fn authenticate(
        &self,
        broker: &BrokerKey,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, AccessDenied> {
        let token = bearer(headers)?;
        self.verify_fetching(token, &naming::stream_audience(broker))
            .await
            .map(Some)
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Result<&str, AccessDenied> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(AccessDenied::missing_token());
    };
    if value.len() > MAX_TOKEN_BYTES {
        return Err(AccessDenied::invalid_token(format!(
            "the Authorization header is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let value = value
        .to_str()
        .map_err(|_| AccessDenied::invalid_token("the Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AccessDenied::Unauthenticated {
            error: "invalid_request",
            description: "the Authorization header must be 'Bearer <token>'".into(),
        }),
    }
}

/// The `iss` claim of a token not verified yet: only to pick the trusted issuer whose keys
/// to fetch, never to trust (the token's length is bounded by [`MAX_TOKEN_BYTES`]).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    #[derive(Deserialize)]
    struct Issued {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Issued>(&bytes).ok().map(|i| i.iss)
}

fn describe(kind: &ErrorKind, audience: &str) -> AccessDenied {
    AccessDenied::invalid_token(match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".to_owned(),
        ErrorKind::InvalidAudience => format!("the token's audience does not include {audience}"),
        ErrorKind::InvalidIssuer => "the token's issuer is not trusted".to_owned(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        other => format!("the token is invalid ({other:?})"),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::KeyRing;
    use std::time::Duration;

    fn open_issuer(dir: &std::path::Path) -> Issuer {
        Issuer::new("http://herald", KeyRing::load_or_create(dir).unwrap())
    }

    #[test]
    fn own_tokens_verify_for_their_audience_only() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = open_issuer(dir.path());
        let verifier = Verifier::new(Arc::new(KeySet::of_issuer(&issuer)));
        let aud = "eventing.knative.dev/broker/ns/b";
        let token = issuer
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        let caller = verifier.verify(&token.token, aud).unwrap();
        assert_eq!(caller.subject, "system:serviceaccount:ns:sa");
        assert_eq!(caller.issuer, "http://herald");
        // Remembered, and still for that audience only.
        assert!(verifier.verify(&token.token, aud).is_ok());
        let wrong = verifier.verify(&token.token, "eventing.knative.dev/broker/ns/other");
        assert!(
            matches!(
                wrong,
                Err(AccessDenied::Unauthenticated {
                    error: "invalid_token",
                    ..
                })
            ),
            "{wrong:?}"
        );

        // Another issuer's key: refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other = open_issuer(other_dir.path());
        let forged = other
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&forged.token, aud).is_err());
        assert!(verifier.verify("not-a-jwt", aud).is_err());
    }
}
