//! The admin API key: generation, the key file next to the database, constant-time checks.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

/// A new random API key: 256 bits from the OS CSPRNG, base64url (43 characters), never
/// starting with `-` (one draw in 64 would, and `--api-key -xyz` then reads as a flag).
///
/// # Errors
///
/// The OS random number generator failed.
pub(crate) fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    loop {
        getrandom::fill(&mut bytes).context("the OS random number generator failed")?;
        // The first character is the top six bits of the first byte; 62 is `-`.
        if bytes[0] >> 2 != 62 {
            return Ok(URL_SAFE_NO_PAD.encode(bytes));
        }
    }
}

/// Where the key in use came from (for the start-up banner).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `--api-key`, `TESSERA_API_KEY` or the config file.
    Configured,
    /// Read from an existing key file.
    File,
    /// Generated now and saved to the key file.
    GeneratedSaved,
    /// Generated now and kept in memory only (no file location for this store).
    GeneratedEphemeral,
}

/// The key to use: the configured one, else the one in `file`, else a new one (saved to
/// `file` with mode 0600 when there is a file location).
///
/// # Errors
///
/// An unreadable or too-short key file, or a key file that cannot be written.
pub(crate) fn resolve(
    configured: Option<String>,
    file: Option<&Path>,
) -> anyhow::Result<(String, KeySource)> {
    if let Some(key) = configured {
        return Ok((key, KeySource::Configured));
    }
    let Some(file) = file else {
        return Ok((generate()?, KeySource::GeneratedEphemeral));
    };
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let key = text.trim().to_owned();
            crate::config::check_api_key(&key)
                .with_context(|| format!("bad API key file {}", file.display()))?;
            Ok((key, KeySource::File))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = generate()?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .with_context(|| format!("cannot create the API key file {}", file.display()))?;
            writeln!(out, "{key}")
                .with_context(|| format!("cannot write the API key file {}", file.display()))?;
            Ok((key, KeySource::GeneratedSaved))
        }
        Err(error) => {
            bail!("cannot read the API key file {}: {error}", file.display())
        }
    }
}

/// Constant-time comparison of a presented key with the configured one.
pub(crate) fn matches(presented: &str, expected: &str) -> bool {
    // Lengths are not secret (the minimum is public); contents are compared in constant time.
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate().unwrap());
        assert!(crate::config::check_api_key(&a).is_ok());
    }

    #[test]
    fn generated_keys_never_start_with_a_dash() {
        // Without the redraw, about 31 of 2,000 keys would.
        assert!((0..2000).all(|_| !generate().unwrap().starts_with('-')));
    }

    #[test]
    fn a_generated_key_is_saved_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.db.api-key");
        let (key, source) = resolve(None, Some(&file)).unwrap();
        assert_eq!(source, KeySource::GeneratedSaved);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, source) = resolve(None, Some(&file)).unwrap();
        assert_eq!((again.as_str(), source), (key.as_str(), KeySource::File));
    }

    #[test]
    fn comparison() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abd", "abc"));
        assert!(!matches("ab", "abc"));
    }
}
