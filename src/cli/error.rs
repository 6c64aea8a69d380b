//! The CLI's error: what to print and the exit code it means (0 done, 1
//! failed or rolled back, 2 usage or refused). `main` reports it through
//! color-eyre, which prints the cause chain from [`std::error::Error::source`].

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

use credshift::{engine, store};

type Cause = Box<dyn Error + Send + Sync + 'static>;

/// An error at the CLI's top: the message, the exit code it means, and the
/// library error it came from (its causes are shown under the message).
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    cause: Option<Cause>,
    /// Stdout's reader went away (`credshift inventory | head -1`): not an
    /// error; `main` exits 0 without a word, as ripgrep does.
    pub closed_pipe: bool,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::with_code(2, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        CliError::with_code(1, message)
    }
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            cause: None,
            closed_pipe: false,
        }
    }

    /// Writing to stdout failed; a closed pipe is no failure.
    pub fn stdout(e: std::io::Error) -> Self {
        CliError {
            closed_pipe: e.kind() == std::io::ErrorKind::BrokenPipe,
            ..CliError::from_error(1, WritingStdout(e))
        }
    }

    /// `e`'s message with `code`; `e` stays attached for its causes.
    fn from_error(code: u8, e: impl Error + Send + Sync + 'static) -> Self {
        CliError {
            code,
            message: e.to_string(),
            cause: Some(Box::new(e)),
            closed_pipe: false,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for CliError {
    /// The first cause the message does not already say: the library's
    /// errors print their cause inside their own text (`path: Permission
    /// denied`), and a report should not say it twice.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        let mut next: Option<&(dyn Error + 'static)> = match &self.cause {
            Some(c) => Some(c.as_ref()),
            None => None,
        };
        while let Some(e) = next {
            if !self.message.contains(&e.to_string()) {
                break;
            }
            next = e.source();
        }
        next
    }
}

impl From<credshift::error::StoreError> for CliError {
    fn from(e: credshift::error::StoreError) -> Self {
        CliError::from_error(1, e)
    }
}

impl From<store::BadSpec> for CliError {
    fn from(e: store::BadSpec) -> Self {
        CliError::from_error(2, e)
    }
}

impl From<engine::EngineError> for CliError {
    fn from(e: engine::EngineError) -> Self {
        CliError::from_error(e.exit_code(), e)
    }
}

impl From<credshift::tui::LaunchError> for CliError {
    fn from(e: credshift::tui::LaunchError) -> Self {
        CliError::from_error(1, e)
    }
}

pub type CliResult = Result<ExitCode, CliError>;

#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
struct WritingStdout(#[source] std::io::Error);

#[cfg(test)]
mod tests {
    use super::*;
    use credshift::error::StoreError;

    fn chain(e: &CliError) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(c) = next {
            out.push(c.to_string());
            next = c.source();
        }
        out
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied here");
        let e = CliError::from(StoreError::io("/x/creds.json", io));
        assert_eq!(e.code, 1);
        assert_eq!(chain(&e), ["/x/creds.json: denied here"]);
    }

    #[test]
    fn a_cause_the_message_leaves_out_is_shown_under_it() {
        let io = std::io::Error::other("the disk is full");
        let e = CliError::from(credshift::tui::LaunchError::Setup(io));
        assert_eq!(e.code, 1);
        assert_eq!(
            chain(&e),
            ["cannot set up the terminal: the disk is full"],
            "LaunchError says its cause itself"
        );
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("writing the journal")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = CliError::from_error(1, Outer(std::io::Error::other("the disk is full")));
        assert_eq!(chain(&e), ["writing the journal", "the disk is full"]);
    }

    #[test]
    fn exit_codes_follow_the_error() {
        assert_eq!(CliError::usage("x").code, 2);
        assert_eq!(CliError::failed("x").code, 1);
        let bad: store::BadSpec = "nope:".parse::<store::StoreSpec>().unwrap_err();
        assert_eq!(CliError::from(bad).code, 2);
    }
}
