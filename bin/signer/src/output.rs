//! Data to stdout (text or JSON Lines), diagnostics to stderr.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

/// Where command results and diagnostics go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text output, or JSON Lines when `json`.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints one result: `{"type": kind, "data": data}` in JSON mode, `text` otherwise.
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub fn record(&self, kind: &str, data: Value, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", json!({ "type": kind, "data": data }))?;
        } else {
            writeln!(stdout, "{text}")?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// Writes bytes to stdout as they are (man page, completions).
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub fn raw(&self, bytes: &[u8]) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()?;
        Ok(())
    }

    /// Prints a progress note or warning to stderr.
    pub fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}
