//! `credential_process`: a command whose standard output is the
//! credentials, as JSON (`Version` 1, `AccessKeyId`, `SecretAccessKey`,
//! and `SessionToken`, `Expiration` for temporary ones).

use std::process::Stdio;
use std::time::Duration;

use super::{CredentialError, Credentials, JsonCredentials};

/// How long the command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Run `command` (through `sh -c`, as the AWS CLI does on Unix) and read
/// its answer. Its output is never logged or shown: only what is wrong
/// with it, and its standard error when it fails.
pub(crate) async fn run(name: &str, command: &str) -> Result<Credentials, CredentialError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            CredentialError::failed(name, format!("credential_process could not start: {e}"))
        })?;
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            CredentialError::failed(
                name,
                format!(
                    "credential_process gave no answer in {} s",
                    TIMEOUT.as_secs()
                ),
            )
        })?
        .map_err(|e| CredentialError::failed(name, format!("credential_process: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr: String = stderr.trim().chars().take(300).collect();
        return Err(CredentialError::failed(
            name,
            format!("credential_process exited with {}: {stderr}", out.status),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Versioned {
        #[serde(rename = "Version")]
        version: Option<i64>,
    }
    let bad = |why: String| {
        CredentialError::failed(
            name,
            format!("credential_process's output is not credentials: {why}"),
        )
    };
    let v: Versioned = serde_json::from_slice(&out.stdout).map_err(|e| bad(e.to_string()))?;
    if v.version != Some(1) {
        return Err(bad(format!("Version {:?}, expected 1", v.version)));
    }
    let creds: JsonCredentials =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(e.to_string()))?;
    creds.into_credentials(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_failures_and_bad_output() {
        let good = r#"echo '{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "very-secret", "SessionToken": "t", "Expiration": "2030-01-01T00:00:00Z"}'"#;
        let c = run("p", good).await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AK", Some("t"))
        );
        assert_eq!(c.expiry.unwrap().year(), 2030);

        let e = run("p", "echo 'sso expired' >&2; exit 3")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exited with exit status: 3") && e.contains("sso expired"),
            "{e}"
        );

        for (cmd, want) in [
            ("echo not-json", "not credentials"),
            (r#"echo '{"Version": 2}'"#, "expected 1"),
            (
                r#"echo '{"Version": 1, "AccessKeyId": "AK"}'"#,
                "no AccessKeyId or SecretAccessKey",
            ),
            (
                r#"echo '{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "very-secret", "Expiration": "soon"}'"#,
                "not a date",
            ),
        ] {
            let e = run("p", cmd).await.unwrap_err().to_string();
            assert!(e.contains(want), "{cmd}: {e}");
            assert!(!e.contains("very-secret"), "{e}");
        }
    }
}
