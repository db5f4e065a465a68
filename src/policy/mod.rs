//! EventPolicy authorization (Knative's `eventing.knative.dev/v1alpha1` EventPolicy): which
//! policies apply to which addressable (`apply`), the subjects a policy's `from` names
//! (`subject`), the ingress decision compiled once per control-plane change (`decide`), and
//! the status of policies and of the addressables they apply to (`status`).

pub mod apply;
pub mod decide;
pub mod in_process;
pub mod status;
pub mod subject;

pub use decide::{Authorizer, Denied};
pub use in_process::InProcessAccess;

/// What decides for an addressable no EventPolicy applies to (Knative's
/// `default-authorization-mode`), when OIDC authentication is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultMode {
    AllowAll,
    DenyAll,
    /// A subject of the addressable's namespace (`system:serviceaccount:{ns}:...`).
    #[default]
    AllowSameNamespace,
}

impl DefaultMode {
    pub const NAMES: [&'static str; 3] = ["allow-all", "deny-all", "allow-same-namespace"];

    pub fn name(self) -> &'static str {
        match self {
            DefaultMode::AllowAll => "allow-all",
            DefaultMode::DenyAll => "deny-all",
            DefaultMode::AllowSameNamespace => "allow-same-namespace",
        }
    }
}

impl std::str::FromStr for DefaultMode {
    type Err = String;

    /// Case-insensitive, as Knative's config-features values.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "allow-all" => Ok(DefaultMode::AllowAll),
            "deny-all" => Ok(DefaultMode::DenyAll),
            "allow-same-namespace" => Ok(DefaultMode::AllowSameNamespace),
            _ => Err(format!(
                "{text:?} is not one of {}",
                DefaultMode::NAMES.join(", ")
            )),
        }
    }
}

/// The flags EventPolicies depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// Whether ingress authenticates senders (OIDC). Off: no policy is enforced and a
    /// broker behaves as without policies; policies report `AuthenticationEnabled=False`.
    pub authentication: bool,
    pub default_mode: DefaultMode,
}

#[cfg(test)]
mod tests;
