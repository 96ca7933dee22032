//! Workspace and session ids: they become paths and object keys, so only a
//! safe alphabet is accepted, before any I/O happens.

use super::WorkspaceError;

/// Check an id: `[A-Za-z0-9._-]`, 1 to 128 characters, not `.` or `..`.
pub fn validate(kind: &'static str, id: &str) -> Result<(), WorkspaceError> {
    let bad = |reason: &str| WorkspaceError::InvalidId {
        kind,
        id: id.escape_debug().to_string(),
        reason: reason.to_owned(),
    };
    if id.is_empty() || id.len() > 128 {
        return Err(bad("must be 1 to 128 characters"));
    }
    if id == "." || id == ".." {
        return Err(bad("must not be '.' or '..'"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!(
            "character {c:?} is not allowed (use A-Z, a-z, 0-9, '.', '_', '-')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_the_safe_alphabet() {
        for id in ["a", "ws_1", "S.e-s_s.1", &"x".repeat(128), "..a", "a.."] {
            validate("session", id).unwrap();
        }
    }

    #[test]
    fn rejects_everything_else() {
        for id in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "ü",
            "a\0",
            "../x",
            &"x".repeat(129),
            "a\\b",
        ] {
            let err = validate("session", id).unwrap_err().to_string();
            assert!(err.contains("session id"), "{err}");
        }
    }
}
