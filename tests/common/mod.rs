//! Helpers shared by the integration tests.

use std::time::Duration;

/// The longest any single wait in a test may take before the test fails as hung.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: std::future::IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out: a wait in this test took longer than common::LIMIT")
}
