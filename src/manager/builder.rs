//! [`ManagerBuilder`]: how the process of a [`Manager`] started with
//! [`Manager::builder`] is shaped: its environment, working directory and output.

use crate::error::Result;
use crate::spawn::{ChildConfig, child_config_methods};

use super::Manager;

/// Configures the process of a [`Manager`]; returned by [`Manager::builder`].
/// [`Manager::start`] is `Manager::builder().start()`.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let manager = multiproc::Manager::builder()
///     .env_clear()
///     .current_dir("/")
///     .stderr(multiproc::Stdio::Null)
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a manager starts only when started"]
pub struct ManagerBuilder {
    child: ChildConfig,
}

impl ManagerBuilder {
    pub(super) fn new() -> Self {
        ManagerBuilder {
            child: ChildConfig::default(),
        }
    }

    child_config_methods!("the manager's process");

    /// Starts the manager's process, `SyncManager-N`, and waits until it serves.
    ///
    /// # Errors
    ///
    /// As [`Manager::start`]; and an [`Io`](crate::ErrorKind::Io) error if the process
    /// cannot be started (a [`current_dir`](Self::current_dir) that does not exist, say).
    ///
    /// # Cancel safety
    ///
    /// As [`Manager::start`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let manager = multiproc::Manager::builder().env("LANG", "C").start().await?;
    /// manager.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<Manager> {
        Manager::start_child(self.child).await
    }
}
