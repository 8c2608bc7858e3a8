//! Helpers shared by the HTTP backends.

use std::future::Future;
use std::time::Duration;

use crate::ChainError;

/// Checks a configured base URL and returns it without a trailing slash.
///
/// Credentials in a URL would end up in logs and error messages, so they are refused.
pub(crate) fn check_base_url(what: &str, url: &str) -> Result<String, ChainError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| ChainError::Config {
            reason: format!("{what} url must start with http:// or https://"),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ChainError::Config {
            reason: format!("{what} url has no host"),
        });
    }
    if authority.contains('@') {
        return Err(ChainError::Config {
            reason: format!(
                "{what} url must not contain credentials; use a cookie or password file"
            ),
        });
    }
    Ok(url.to_owned())
}

/// Runs `call`, turning an overrun of `after` into [`ChainError::Timeout`].
pub(crate) async fn bounded<T>(
    backend: &'static str,
    after: Duration,
    call: impl Future<Output = Result<T, ChainError>>,
) -> Result<T, ChainError> {
    tokio::time::timeout(after, call)
        .await
        .map_err(|_| ChainError::Timeout { backend, after })?
}

/// Whether an HTTP status means "try again later" rather than "you asked wrongly".
pub(crate) fn status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}
