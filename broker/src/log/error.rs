//! What can go wrong in a log, with the underlying error kept as the typed cause.

use std::sync::Arc;

use super::BrokerKey;

/// A log operation failed (small: the cause is boxed, results carry it on hot paths). `Unavailable`, `Corrupt` and `Storage` say what went wrong in
/// their message (which ends with the cause's text, as operators read it in logs and
/// answers) and keep the underlying error as [`std::error::Error::source`], so that code
/// decides on its type, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The write queue is full: the caller should back off and retry.
    #[error("the log is overloaded: its write queue is full")]
    Overloaded,
    /// The log cannot be reached or is shutting down.
    #[error("the log is unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Box<Cause>>,
    },
    #[error("broker {0} has no log")]
    UnknownBroker(BrokerKey),
    #[error("stored record is corrupt: {message}")]
    Corrupt {
        message: String,
        #[source]
        cause: Option<Box<Cause>>,
    },
    #[error("log storage error: {message}")]
    Storage {
        message: String,
        #[source]
        cause: Option<Box<Cause>>,
    },
    /// Another process (or a handle of this one that is still closing) holds the log's
    /// storage; two Heralds must not share a data directory.
    #[error(
        "it is in use by another process (is another Herald running with the same --data-dir?)"
    )]
    InUse,
}

/// The error underneath a [`LogError`]: the backend's or the system's own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Cause {
    /// A file or thread operation (shared: one failed write fails a whole batch).
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    /// A stored header or parked record's metadata does not (de)serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A stored record does not decode.
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    /// A blocking task of the log panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[cfg(feature = "sled")]
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// async-nats has an error type per operation; they are kept as they are.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(Box<dyn std::error::Error + Send + Sync>),
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Self {
        Cause::Io(Arc::new(error))
    }
}

impl LogError {
    /// The log cannot be used now, for a reason of its own (closed, reopening, ...).
    pub fn unavailable(message: impl Into<String>) -> Self {
        LogError::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    /// A stored record or marker is not what the log wrote.
    pub fn corrupt(message: impl Into<String>) -> Self {
        LogError::Corrupt {
            message: message.into(),
            cause: None,
        }
    }

    /// Storing or reading failed.
    pub fn storage(message: impl Into<String>) -> Self {
        LogError::Storage {
            message: message.into(),
            cause: None,
        }
    }

    /// Keeps `cause` as the source, its text ending the message (`message: cause`, or the
    /// cause's text alone when the message is empty).
    pub fn caused_by(self, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        let with = |message: String| match message.is_empty() {
            true => cause.to_string(),
            false => format!("{message}: {cause}"),
        };
        match self {
            LogError::Unavailable { message, .. } => LogError::Unavailable {
                message: with(message),
                cause: Some(Box::new(cause)),
            },
            LogError::Corrupt { message, .. } => LogError::Corrupt {
                message: with(message),
                cause: Some(Box::new(cause)),
            },
            LogError::Storage { message, .. } => LogError::Storage {
                message: with(message),
                cause: Some(Box::new(cause)),
            },
            other => other,
        }
    }

    /// The underlying error, when there is one.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            LogError::Unavailable { cause, .. }
            | LogError::Corrupt { cause, .. }
            | LogError::Storage { cause, .. } => cause.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn the_cause_ends_the_message_and_is_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let error = LogError::storage("/data/log").caused_by(io);
        assert_eq!(
            error.to_string(),
            "log storage error: /data/log: no space left"
        );
        let Some(Cause::Io(io)) = error.cause() else {
            panic!("the io error is the cause: {error:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("no space left")
        );

        let bare = LogError::unavailable("").caused_by(std::io::Error::other("refused"));
        assert_eq!(bare.to_string(), "the log is unavailable: refused");
        assert!(LogError::corrupt("bad").source().is_none());
    }
}
