//! What goes wrong at the command level, and the exit code each means
//! (docs/cli.md, "Exit codes"): 1 the pipeline failed, 2 invalid input,
//! 3 infrastructure or internal.
//!
//! Every subcommand returns `Result<(), Error>`; `cli::main` renders the
//! error as a diagnostic with no place in a file, through the one renderer
//! and in the `--diagnostics` format, and exits with its code. Some errors
//! are reported before they are returned (a check's diagnostics, a failed
//! run's summary): they only carry the exit code.

use std::path::PathBuf;

use crate::cli::exit;
use crate::diagnostic::Diag;
use crate::release::apply::ApiError;
use crate::run::RunError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The command line asks for what the pipeline does not have, or names
    /// no pipeline (exit 2).
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },
    /// A file named on the command line cannot be read (exit 2).
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        help: Option<&'static str>,
        #[source]
        source: std::io::Error,
    },
    /// The input has errors, already reported as diagnostics (exit 2).
    #[error("the pipeline has errors")]
    Invalid,
    /// The run could not begin: a stage the backend cannot run (exit 2),
    /// or a backend that cannot open the run (exit 3).
    #[error("{0}")]
    Run(RunError),
    /// Already reported (exit 1): the pipeline ran and failed, `fmt
    /// --check` found a file to format, `release diff` found a change, or
    /// the language server was told to exit before it was shut down.
    #[error("failed")]
    Failed,
    /// A stage failed because the engine or the cluster stopped answering,
    /// already reported in the run's summary (exit 3).
    #[error("a component the run needs stopped answering")]
    Unavailable,
    /// The Docker engine does not answer (exit 3).
    #[error(transparent)]
    Engine(#[from] crate::run::docker::Unreachable),
    /// The Kubernetes API does not answer (exit 3), or a release, a
    /// rollback or a diff failed (exit 1).
    #[error(transparent)]
    Kubernetes(#[from] ApiError),
    /// Writing a file or standard output, reading standard input, or
    /// starting the runtime failed (exit 3).
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// slipway itself failed (exit 3).
    #[error("{0}")]
    Internal(String),
    /// Stopped by Ctrl-C or SIGTERM (exit 130), already reported.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn usage(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Failed | Error::Kubernetes(ApiError::Failed { .. }) => exit::FAILED,
            Error::Usage { .. } | Error::Read { .. } | Error::Invalid => exit::INVALID,
            Error::Run(e) => e.exit_code(),
            Error::Unavailable
            | Error::Engine(_)
            | Error::Kubernetes(ApiError::Unreachable { .. })
            | Error::Io { .. }
            | Error::Internal(_) => exit::INTERNAL,
            Error::Cancelled => exit::CANCELLED,
        }
    }

    /// The error as a user reads it, with the code `slipway::usage`; `None`
    /// when it was reported before it was returned.
    pub(crate) fn diag(&self) -> Option<Diag> {
        let help = match self {
            Error::Invalid | Error::Failed | Error::Unavailable | Error::Cancelled => return None,
            Error::Usage { help, .. } => help.clone(),
            Error::Read { help, .. } => help.map(str::to_string),
            Error::Run(_)
            | Error::Engine(_)
            | Error::Kubernetes(_)
            | Error::Io { .. }
            | Error::Internal(_) => None,
        };
        let diag = Diag::usage(self.to_string());
        Some(match help {
            Some(h) => diag.help(h),
            None => diag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind_of_error() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(Error::Failed.exit_code(), 1);
        assert_eq!(Error::usage("unknown stage `x`", "help").exit_code(), 2);
        assert_eq!(
            Error::Read {
                path: "a".into(),
                help: None,
                source: io()
            }
            .exit_code(),
            2
        );
        assert_eq!(Error::Run(RunError::Unsupported("x".into())).exit_code(), 2);
        assert_eq!(Error::Run(RunError::Open("x".into())).exit_code(), 3);
        assert_eq!(
            Error::Kubernetes(ApiError::failed("no release `x`")).exit_code(),
            1
        );
        assert_eq!(
            Error::Kubernetes(ApiError::unreachable("down", io())).exit_code(),
            3
        );
        assert_eq!(
            Error::Io {
                action: "write `a`".into(),
                source: io()
            }
            .exit_code(),
            3
        );
        assert_eq!(Error::Cancelled.exit_code(), 130);
    }

    #[test]
    fn reported_errors_are_not_shown_again() {
        for e in [
            Error::Invalid,
            Error::Failed,
            Error::Unavailable,
            Error::Cancelled,
        ] {
            assert!(e.diag().is_none(), "{e}");
        }
    }

    #[test]
    fn errors_are_shown_with_their_help_and_keep_their_source() {
        let e = Error::Read {
            path: "secrets.env".into(),
            help: Some("pass a file of NAME=VALUE lines"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let d = e.diag().expect("shown");
        assert_eq!(d.code.as_str(), "slipway::usage");
        assert!(d.span().is_none());
        assert_eq!(d.message, "cannot read `secrets.env`: entity not found");
        assert_eq!(d.help.as_deref(), Some("pass a file of NAME=VALUE lines"));
        assert!(std::error::Error::source(&e).is_some());

        let e = Error::Kubernetes(ApiError::unreachable(
            "the Kubernetes API does not answer",
            std::io::Error::other("refused"),
        ));
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "refused");
    }
}
