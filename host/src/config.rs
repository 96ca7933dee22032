//! Resolving ccws's settings from flags, the standard AWS environment
//! variables and shared config files, and ccws's own variables.
//!
//! Precedence: command-line flag, then environment, then the AWS profile
//! (`~/.aws/credentials`, `~/.aws/config`), then defaults. Secrets are read
//! only from the environment and the credentials file, never from flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::s3::{ConfigError, S3Config};

/// Where objects are kept.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// An S3 bucket.
    S3(Box<S3Config>),
    /// The built-in local store at this directory.
    Local(PathBuf),
}

/// Values given on the command line (none of them secret).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Bucket name.
    pub bucket: Option<String>,
    /// Endpoint URL.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// AWS profile name.
    pub profile: Option<String>,
    /// Force path-style (true) or virtual-hosted style (false).
    pub path_style: Option<bool>,
    /// Local store directory (used when no bucket is configured).
    pub local_store: Option<PathBuf>,
}

/// Why settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A bucket is configured but no credentials were found.
    #[error("bucket {bucket:?} is configured but no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in {}", credentials_file.display())]
    NoCredentials {
        /// The bucket.
        bucket: String,
        /// Where a profile was looked for.
        credentials_file: PathBuf,
    },
    /// A named profile does not exist.
    #[error("AWS profile {profile:?} not found in {} or {} (pass --profile or set AWS_PROFILE to an existing profile)", credentials_file.display(), config_file.display())]
    NoProfile {
        /// The profile.
        profile: String,
        /// The credentials file.
        credentials_file: PathBuf,
        /// The config file.
        config_file: PathBuf,
    },
    /// A value does not parse.
    #[error("{name}={value:?}: {reason}")]
    BadValue {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A shared config file could not be read.
    #[error("reading the AWS credentials/config file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The S3 configuration is invalid.
    #[error(transparent)]
    S3(#[from] ConfigError),
}

/// The environment `main` took at start-up (see [`capture_env`]).
static CAPTURED: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();

/// Take the process environment for [`process_env`] and wipe the
/// [`CREDENTIAL_VARS`] from the process's own, so that from here on the
/// credentials live only in ccws's memory (see `harden::take_environment`).
/// Call it first thing in `main`, while no other thread runs.
pub fn capture_env() {
    let env = crate::harden::take_environment(CREDENTIAL_VARS);
    let _ = CAPTURED.set(env);
}

/// The process environment as a map (so resolution is testable): the one
/// [`capture_env`] took, or the current one.
pub fn process_env() -> HashMap<String, String> {
    match CAPTURED.get() {
        Some(env) => env.clone(),
        None => std::env::vars().collect(),
    }
}

/// The environment variables [`resolve_store`] takes the store's credentials
/// from: the keys themselves, and the profile and files they are read from.
/// `ccws run` removes them from the agent's environment (unless
/// `--pass-aws-env`). Not listed: where the store is (`AWS_REGION`,
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL*`, `AWS_CA_BUNDLE`, `CCWS_*`),
/// which grants no access by itself.
pub const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

/// Resolve where objects are kept.
pub fn resolve_store(
    o: &Overrides,
    env: &HashMap<String, String>,
) -> Result<StoreSettings, SettingsError> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let Some(bucket) = o.bucket.clone().or_else(|| get("CCWS_BUCKET")) else {
        let dir = o
            .local_store
            .clone()
            .or_else(|| get("CCWS_LOCAL_STORE").map(PathBuf::from))
            .unwrap_or_else(|| default_state_dir(env).join("store"));
        return Ok(StoreSettings::Local(dir));
    };

    let home = get("HOME").map(PathBuf::from).unwrap_or_default();
    let credentials_file = get("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config_file = get("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/config"));
    let profile_name = o
        .profile
        .clone()
        .or_else(|| get("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let explicit_profile = o.profile.is_some() || get("AWS_PROFILE").is_some();
    let creds = read_ini(&credentials_file)?;
    let conf = read_ini(&config_file)?;
    let cred_section = creds.get(&profile_name);
    let conf_key = if profile_name == "default" {
        "default".to_string()
    } else {
        format!("profile {profile_name}")
    };
    let conf_section = conf.get(&conf_key).or_else(|| conf.get(&profile_name));
    if explicit_profile && cred_section.is_none() && conf_section.is_none() {
        return Err(SettingsError::NoProfile {
            profile: profile_name,
            credentials_file,
            config_file,
        });
    }
    let from_profile = |k: &str| {
        cred_section
            .and_then(|s| s.get(k))
            .or_else(|| conf_section.and_then(|s| s.get(k)))
            .cloned()
    };

    let (access, secret, token) = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(a), Some(s)) => (a, s, get("AWS_SESSION_TOKEN")),
        _ => match (
            from_profile("aws_access_key_id"),
            from_profile("aws_secret_access_key"),
        ) {
            (Some(a), Some(s)) => (a, s, from_profile("aws_session_token")),
            _ => {
                return Err(SettingsError::NoCredentials {
                    bucket,
                    credentials_file,
                })
            }
        },
    };
    let region = o
        .region
        .clone()
        .or_else(|| get("AWS_REGION"))
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .or_else(|| from_profile("region"))
        .unwrap_or_else(|| "us-east-1".into());
    let custom_endpoint = o
        .endpoint
        .clone()
        .or_else(|| get("AWS_ENDPOINT_URL_S3"))
        .or_else(|| get("AWS_ENDPOINT_URL"))
        .or_else(|| from_profile("endpoint_url"));
    let path_style = match (o.path_style, get("CCWS_PATH_STYLE")) {
        (Some(p), _) => p,
        (None, Some(v)) => parse_bool("CCWS_PATH_STYLE", &v)?,
        // Custom endpoints (MinIO and most on-prem stores) want path style.
        (None, None) => custom_endpoint.is_some(),
    };
    let endpoint = custom_endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    let mut b = S3Config::builder(endpoint, region, bucket, access, secret).path_style(path_style);
    if let Some(t) = token {
        b = b.session_token(t);
    }
    if let Some(ca) = get("AWS_CA_BUNDLE") {
        b = b.ca_bundle(ca);
    }
    Ok(StoreSettings::S3(Box::new(b.build()?)))
}

/// ccws's durable state directory: `$CCWS_STATE_DIR`, else
/// `$XDG_DATA_HOME/ccws`, else `~/.local/share/ccws`.
pub fn default_state_dir(env: &HashMap<String, String>) -> PathBuf {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    get("CCWS_STATE_DIR")
        .or_else(|| get("XDG_DATA_HOME").map(|d| d.join("ccws")))
        .or_else(|| get("HOME").map(|h| h.join(".local/share/ccws")))
        .unwrap_or_else(|| std::env::temp_dir().join("ccws-state"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, SettingsError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingsError::BadValue {
            name: name.into(),
            value: v.into(),
            reason: "expected true or false".into(),
        }),
    }
}

type Ini = HashMap<String, HashMap<String, String>>;

/// Read an AWS-style INI file; a missing file is empty.
fn read_ini(path: &Path) -> Result<Ini, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ini::new()),
        Err(source) => {
            return Err(SettingsError::File {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(parse_ini(&text))
}

fn parse_ini(text: &str) -> Ini {
    let mut out = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_bucket_means_the_local_store() {
        let e = env(&[("HOME", "/home/u")]);
        match resolve_store(&Overrides::default(), &e).unwrap() {
            StoreSettings::Local(p) => assert_eq!(p, Path::new("/home/u/.local/share/ccws/store")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_credentials_and_endpoint() {
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "my-bucket"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]);
        let StoreSettings::S3(c) = resolve_store(&Overrides::default(), &e).unwrap() else {
            panic!()
        };
        assert_eq!(c.bucket, "my-bucket");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint, "http://127.0.0.1:9000");
        assert!(c.path_style, "custom endpoints default to path style");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("tok\""),
            "{shown}"
        );
    }

    #[test]
    fn profile_files_and_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config"),
            "[profile work]\nregion = ap-south-1\n",
        )
        .unwrap();
        let e = env(&[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("credentials").to_str().unwrap(),
            ),
            (
                "AWS_CONFIG_FILE",
                dir.path().join("config").to_str().unwrap(),
            ),
            ("AWS_PROFILE", "work"),
        ]);
        let o = Overrides {
            bucket: Some("b-1".into()),
            ..Default::default()
        };
        let StoreSettings::S3(c) = resolve_store(&o, &e).unwrap() else {
            panic!()
        };
        assert_eq!(c.access_key_id, "W");
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.endpoint, "https://s3.ap-south-1.amazonaws.com");
        assert!(!c.path_style);
        let o = Overrides {
            bucket: Some("b-1".into()),
            region: Some("us-west-2".into()),
            profile: Some("nope".into()),
            ..Default::default()
        };
        let err = resolve_store(&o, &e).unwrap_err().to_string();
        assert!(err.contains("profile \"nope\" not found"), "{err}");
        assert!(err.contains("pass --profile or set AWS_PROFILE"), "{err}");
        // An unreadable credentials file says which file it was reading.
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", dir.path().to_str().unwrap()),
            ("AWS_PROFILE", "work"),
        ]);
        let o = Overrides {
            bucket: Some("b-1".into()),
            ..Default::default()
        };
        let err = resolve_store(&o, &e).unwrap_err().to_string();
        assert!(
            err.contains("reading the AWS credentials/config file"),
            "{err}"
        );
    }

    #[test]
    fn without_the_credential_vars_no_credentials_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        let conf = dir.path().join("conf");
        std::fs::write(
            &creds,
            "[p]\naws_access_key_id = P\naws_secret_access_key = PS\n",
        )
        .unwrap();
        std::fs::write(
            &conf,
            "[profile q]\naws_access_key_id = Q\naws_secret_access_key = QS\n",
        )
        .unwrap();
        let (creds, conf) = (creds.to_str().unwrap(), conf.to_str().unwrap());
        let base = [
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "b-1"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ];
        let sources: [&[(&str, &str)]; 3] = [
            &[
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
                ("AWS_SESSION_TOKEN", "t"),
            ],
            &[("AWS_PROFILE", "p"), ("AWS_SHARED_CREDENTIALS_FILE", creds)],
            &[("AWS_PROFILE", "q"), ("AWS_CONFIG_FILE", conf)],
        ];
        for source in sources {
            let mut e = env(&base);
            e.extend(env(source));
            assert!(
                resolve_store(&Overrides::default(), &e).is_ok(),
                "{source:?}"
            );
            e.retain(|k, _| !CREDENTIAL_VARS.contains(&k.as_str()));
            let err = resolve_store(&Overrides::default(), &e).unwrap_err();
            assert!(
                matches!(err, SettingsError::NoCredentials { .. }),
                "{source:?}: {err}"
            );
        }
    }

    #[test]
    fn missing_credentials_and_bad_values_are_clear() {
        let e = env(&[("HOME", "/nonexistent"), ("CCWS_BUCKET", "b-1")]);
        let err = resolve_store(&Overrides::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no credentials"), "{err}");
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "b-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
            ("CCWS_PATH_STYLE", "maybe"),
        ]);
        let err = resolve_store(&Overrides::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CCWS_PATH_STYLE"), "{err}");
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "Bad_Bucket"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ]);
        assert!(resolve_store(&Overrides::default(), &e).is_err());
    }
}
