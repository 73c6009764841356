//! One error type for the whole core; the R glue turns it into an R condition.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A user-supplied argument is unusable. `arg` is the name the user knows it by.
    #[error("`{arg}`: {message}")]
    InvalidArgument { arg: String, message: String },
    /// Training produced a non-finite loss; `epoch` is 1-based.
    #[error("training diverged: non-finite loss at epoch {epoch} ({detail})")]
    NonFinite { epoch: usize, detail: String },
    /// The user interrupted a long computation.
    #[error("interrupted by the user")]
    Interrupted,
    /// The requested compute device is not available in this build or on this machine.
    #[error("device `{0}` is not available: {1}")]
    Device(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file or serialized model is malformed.
    #[error("{0}")]
    Format(String),
}

impl Error {
    pub fn invalid(arg: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            arg: arg.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
