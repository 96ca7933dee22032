//! Resolving ccws's settings from flags, the standard AWS environment
//! variables and shared config files, and ccws's own variables.
//!
//! Precedence: command-line flag, then environment, then the AWS profile
//! (`~/.aws/credentials`, `~/.aws/config`), then defaults. Secrets are read
//! only from the environment and the credentials file, never from flags.

use std::collections::HashMap;
use std::path::PathBuf;

use std::sync::Arc;

use crate::s3::credential::{default_chain, profile::ProfileError, Profiles};
use crate::s3::{Cached, ConfigError, CredentialError, Encryption, S3Config};

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
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// The KMS key for `aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// The storage class of every object written.
    pub storage_class: Option<String>,
}

/// Why settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The shared config files could not be used (a file unreadable, a
    /// profile asked for that is not there).
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The credential providers could not be set up.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
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
/// from (see [`crate::s3::credential::CREDENTIAL_VARS`]). `ccws run` removes
/// them from the agent's environment (unless `--pass-aws-env`). Not listed:
/// where the store is (`AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL*`,
/// `AWS_CA_BUNDLE`, `AWS_EC2_METADATA_*`, `CCWS_*`), which grants no access by
/// itself.
pub use crate::s3::credential::CREDENTIAL_VARS;

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

    let profiles = Profiles::load(env, o.profile.clone())?;
    let from_profile = |k: &str| profiles.get(k);
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
        .or_else(|| profiles.s3_endpoint());
    let path_style = match (o.path_style, get("CCWS_PATH_STYLE")) {
        (Some(p), _) => p,
        (None, Some(v)) => parse_bool("CCWS_PATH_STYLE", &v)?,
        // Custom endpoints (MinIO and most on-prem stores) want path style.
        (None, None) => custom_endpoint.is_some(),
    };
    let endpoint = custom_endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    // Credentials are fetched when first needed, and again before they expire.
    let chain = default_chain(env, profiles, &region)?;
    let mut b = S3Config::builder(endpoint, region, bucket, "", "")
        .credentials(Arc::new(Cached::new(Arc::new(chain))))
        .path_style(path_style);
    let kms_key = o
        .sse_kms_key_id
        .clone()
        .or_else(|| get("CCWS_SSE_KMS_KEY_ID"));
    match o.sse.clone().or_else(|| get("CCWS_SSE")) {
        Some(sse) => {
            let e = Encryption::parse(&sse, kms_key).map_err(|reason| SettingsError::BadValue {
                name: "CCWS_SSE (--sse)".into(),
                value: sse.clone(),
                reason,
            })?;
            b = b.encryption(e);
        }
        None if kms_key.is_some() => {
            return Err(SettingsError::BadValue {
                name: "CCWS_SSE_KMS_KEY_ID (--sse-kms-key-id)".into(),
                value: kms_key.unwrap_or_default(),
                reason: "a KMS key needs CCWS_SSE=aws:kms (--sse aws:kms)".into(),
            })
        }
        None => {}
    }
    match get("CCWS_CHECKSUMS").as_deref() {
        None | Some("true") => {}
        Some("false") => b = b.checksums(false),
        Some("verify") => b = b.verify_checksums(true),
        Some(v) => {
            return Err(SettingsError::BadValue {
                name: "CCWS_CHECKSUMS".into(),
                value: v.into(),
                reason: "expected true, false or verify".into(),
            })
        }
    }
    if let Some(class) = o
        .storage_class
        .clone()
        .or_else(|| get("CCWS_STORAGE_CLASS"))
    {
        b = b.storage_class(class);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::Credentials;
    use std::path::Path;

    /// The credentials `c` signs with, fetched as a request would.
    fn fetch(c: &S3Config) -> Result<Credentials, CredentialError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(c.credentials.as_ref().expect("a provider").get())
    }

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
        assert_eq!(fetch(&c).unwrap().session_token.as_deref(), Some("tok"));
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
        assert_eq!(fetch(&c).unwrap().access_key_id, "W");
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
            ("AWS_EC2_METADATA_DISABLED", "true"),
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
            let StoreSettings::S3(c) = resolve_store(&Overrides::default(), &e).unwrap() else {
                panic!()
            };
            assert!(fetch(&c).is_ok(), "{source:?}");
            e.retain(|k, _| !CREDENTIAL_VARS.contains(&k.as_str()));
            let StoreSettings::S3(c) = resolve_store(&Overrides::default(), &e).unwrap() else {
                panic!()
            };
            let err = fetch(&c).unwrap_err();
            assert!(
                matches!(err, CredentialError::NoneFound { .. }),
                "{source:?}: {err}"
            );
        }
    }

    #[test]
    fn missing_credentials_and_bad_values_are_clear() {
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "b-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let StoreSettings::S3(c) = resolve_store(&Overrides::default(), &e).unwrap() else {
            panic!()
        };
        let err = fetch(&c).unwrap_err().to_string();
        // Every source says why it gave nothing.
        for said in [
            "no AWS credentials were found",
            "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not both set",
            "web identity: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not both set",
            "profile default: not in /nonexistent/.aws/credentials or /nonexistent/.aws/config",
            "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI not set",
            "instance metadata: AWS_EC2_METADATA_DISABLED is true",
        ] {
            assert!(err.contains(said), "{said}: {err}");
        }
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

    #[test]
    fn encryption_and_storage_class_from_flags_or_variables() {
        let base = [
            ("HOME", "/nonexistent"),
            ("CCWS_BUCKET", "b-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut e = env(&base);
            e.extend(env(extra));
            e
        };
        let e = with(&[
            ("CCWS_SSE", "aws:kms"),
            ("CCWS_SSE_KMS_KEY_ID", "alias/agents"),
            ("CCWS_STORAGE_CLASS", "STANDARD_IA"),
        ]);
        let StoreSettings::S3(c) = resolve_store(&Overrides::default(), &e).unwrap() else {
            panic!()
        };
        assert_eq!(
            c.encryption,
            Some(Encryption::Kms {
                key_id: Some("alias/agents".into())
            })
        );
        assert_eq!(c.storage_class.as_deref(), Some("STANDARD_IA"));
        let o = Overrides {
            sse: Some("AES256".into()),
            ..Default::default()
        };
        let StoreSettings::S3(c) = resolve_store(&o, &with(&[])).unwrap() else {
            panic!()
        };
        assert_eq!(c.encryption, Some(Encryption::Aes256));
        for (extra, says) in [
            (&[("CCWS_SSE", "aes")][..], "not AES256 or aws:kms"),
            (
                &[("CCWS_SSE_KMS_KEY_ID", "k")][..],
                "needs CCWS_SSE=aws:kms",
            ),
        ] {
            let err = resolve_store(&Overrides::default(), &with(extra))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn checksums_are_sent_and_checked_only_when_asked() {
        let with = |v: Option<&str>| {
            let mut e = env(&[
                ("HOME", "/nonexistent"),
                ("CCWS_BUCKET", "b-1"),
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
            ]);
            if let Some(v) = v {
                e.insert("CCWS_CHECKSUMS".into(), v.into());
            }
            match resolve_store(&Overrides::default(), &e) {
                Ok(StoreSettings::S3(c)) => Ok((c.checksums, c.verify_checksums)),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(with(None), Ok((true, false)));
        assert_eq!(with(Some("")), Ok((true, false)), "set but empty is unset");
        assert_eq!(with(Some("verify")), Ok((true, true)));
        assert_eq!(with(Some("true")), Ok((true, false)));
        assert_eq!(with(Some("false")), Ok((false, false)));
        let e = with(Some("yes")).unwrap_err();
        assert!(e.contains("expected true, false or verify"), "{e}");
    }
}
