//! What the command reports when it does not succeed: a [`Problem`] (stable code, target,
//! message, as the library's errors carry them) and the exit code that says whose fault it is.

use std::{fmt, io};

use apim_sas::{Error, ErrorKind};

/// An error as the command reports it: the library's own, or one about the command's input
/// (flags, files, stdin) that only the command can see.
#[derive(Debug)]
pub(crate) enum Problem {
    /// An error from the library, reported as it is.
    Library(Error),
    /// An error about the invocation.
    Command {
        kind: ErrorKind,
        target: &'static str,
        message: String,
    },
}

impl Problem {
    /// A problem the command found itself. `target` names the field or flag at fault
    /// (`key`, `expiry`, `token`, `secretName`, …).
    pub(crate) fn new(kind: ErrorKind, target: &'static str, message: impl Into<String>) -> Self {
        Problem::Command {
            kind,
            target,
            message: message.into(),
        }
    }

    /// The stable code, e.g. `InvalidKeyFile`.
    pub(crate) fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Problem::Library(err) => err.kind(),
            Problem::Command { kind, .. } => *kind,
        }
    }

    pub(crate) fn target(&self) -> &'static str {
        match self {
            Problem::Library(err) => err.target(),
            Problem::Command { target, .. } => target,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Problem::Library(err) => err.message(),
            Problem::Command { message, .. } => message,
        }
    }

    /// The same problem, its message prefixed with where it happened (`key file k.json: …`).
    pub(crate) fn context(self, prefix: impl fmt::Display) -> Problem {
        let message = format!("{prefix}: {}", self.message());
        Problem::new(self.kind(), self.target(), message)
    }
}

impl From<Error> for Problem {
    fn from(err: Error) -> Problem {
        Problem::Library(err)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

/// A command that did not succeed, and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) problem: Problem,
    pub(crate) exit: u8,
}

impl Failure {
    /// The invocation is the problem (usage, key files, flag values, mint refusals): exit 2.
    pub(crate) fn usage(problem: impl Into<Problem>) -> Failure {
        Failure {
            problem: problem.into(),
            exit: 2,
        }
    }

    /// The token is the problem (it fails to parse or verify): exit 1.
    pub(crate) fn token(problem: impl Into<Problem>) -> Failure {
        Failure {
            problem: problem.into(),
            exit: 1,
        }
    }

    /// A problem with the invocation the command found itself: exit 2.
    pub(crate) fn invocation(
        kind: ErrorKind,
        target: &'static str,
        message: impl Into<String>,
    ) -> Failure {
        Failure::usage(Problem::new(kind, target, message))
    }

    /// What writing the command's output came to. A closed pipe (`| head -1`) is no failure:
    /// the reader has what it wanted, and the command ends as it would have. Any other error (a
    /// full disk behind `> secret.yaml`) is exit 2, so that no script goes on with a truncated
    /// file.
    pub(crate) fn wrote(result: io::Result<()>) -> Result<(), Failure> {
        match result {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::invocation(
                ErrorKind::InvalidArgument,
                "output",
                format!("writing to stdout: {e}"),
            )),
            _ => Ok(()),
        }
    }
}
