//! Destinations' `CACerts` (Knative's field): checked when a resource is loaded, so that a
//! bad PEM is a load error naming the field instead of a failed delivery later.

use herald_crds::validation::FieldError;
use herald_crds::Destination;
use herald_tls::CaCerts;

use super::Resource;

/// Every destination's `CACerts` of `resource` must hold usable PEM CA certificates.
pub fn check(resource: &mut Resource) -> Result<(), FieldError> {
    for (field, destination) in resource.destinations_mut() {
        if let Some(pem) = &destination.ca_certs {
            CaCerts::parse(pem)
                .map_err(|error| FieldError::new(format!("{field}.CACerts"), error.to_string()))?;
        }
    }
    Ok(())
}

/// A checked destination's `CACerts`.
pub fn of(destination: &Destination) -> Option<CaCerts> {
    destination
        .ca_certs
        .as_deref()
        .and_then(|pem| CaCerts::parse(pem).ok())
}
