//! Herald's data plane entry: CloudEvents over HTTP in, a durable log per broker.

pub mod access;
pub mod binding;
pub mod catalog;
pub mod event;
#[cfg(feature = "testing")]
pub mod fuzz;
pub mod header_text;
pub mod ingress;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka_binding;
pub mod log;
pub mod record;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
pub mod type_labels;

pub use access::{AccessDenied, AccessRequest, Authenticator, Authorizer, Caller, IngressAccess};
pub use event::{AttrValue, CloudEvent, InvalidEvent};
pub use ingress::{BrokerRegistry, Ingress, IngressConfig, IngressError};
pub use log::{BrokerKey, EventLog, LogConsumer, LogError, LogRecord, RecordId, StartFrom};
pub use record::Record;
