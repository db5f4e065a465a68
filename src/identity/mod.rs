//! Sender identity (Knative's `authentication-oidc`): who a sender is, the tokens it carries
//! and how the ingress checks them.

pub mod naming;
