//! The shared config and credentials files (`~/.aws/config`,
//! `~/.aws/credentials`, or `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`)
//! and the credentials a profile names: static keys, `credential_process`,
//! or `role_arn` assumed with `source_profile` (chained) or
//! `credential_source`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    container, imds, process, sso, sts, CredentialError, CredentialProvider, Credentials,
    EnvProvider,
};

type Ini = HashMap<String, HashMap<String, String>>;

/// The profiles of the shared files, and which one is in use. `Debug`
/// shows the files and the profiles' names, never a value.
#[derive(Clone)]
pub struct Profiles {
    name: String,
    explicit: bool,
    credentials: Ini,
    config: Ini,
    credentials_file: PathBuf,
    config_file: PathBuf,
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sections = |ini: &Ini| {
            let mut names: Vec<&String> = ini.keys().collect();
            names.sort();
            names.into_iter().cloned().collect::<Vec<_>>()
        };
        f.debug_struct("Profiles")
            .field("name", &self.name)
            .field("explicit", &self.explicit)
            .field("credentials_file", &self.credentials_file)
            .field("credentials_sections", &sections(&self.credentials))
            .field("config_file", &self.config_file)
            .field("config_sections", &sections(&self.config))
            .finish()
    }
}

/// Why the shared files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A file could not be read.
    #[error("reading the AWS credentials/config file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The profile asked for is in neither file.
    #[error("AWS profile {profile:?} not found in {} or {} (pass --profile or set AWS_PROFILE to an existing profile)", credentials_file.display(), config_file.display())]
    NoProfile {
        /// The profile.
        profile: String,
        /// The credentials file.
        credentials_file: PathBuf,
        /// The config file.
        config_file: PathBuf,
    },
}

impl Profiles {
    /// Read the files `env` names (or the defaults under `HOME`); the
    /// profile is `profile`, else `AWS_PROFILE`, else `default`. A profile
    /// asked for by name must exist.
    pub fn load(
        env: &HashMap<String, String>,
        profile: Option<String>,
    ) -> Result<Profiles, ProfileError> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let home = super::home_dir(env);
        let file = |var: &str, name: &str| {
            get(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config_file = file("AWS_CONFIG_FILE", "config");
        // With no home directory and no file named, there is nothing to
        // read (never `./.aws`); the name shown says why.
        let read = |f: &Option<PathBuf>| f.as_deref().map(read_ini).transpose();
        let shown = |f: Option<PathBuf>, name: &str| {
            f.unwrap_or_else(|| PathBuf::from(format!("~/.aws/{name} (no home directory)")))
        };
        let explicit = profile.is_some() || get("AWS_PROFILE").is_some();
        let name = profile
            .or_else(|| get("AWS_PROFILE"))
            .unwrap_or_else(|| "default".into());
        let p = Profiles {
            credentials: read(&credentials_file)?.unwrap_or_default(),
            config: read(&config_file)?.unwrap_or_default(),
            name,
            explicit,
            credentials_file: shown(credentials_file, "credentials"),
            config_file: shown(config_file, "config"),
        };
        if p.explicit && !p.exists(&p.name) {
            return Err(ProfileError::NoProfile {
                profile: p.name.clone(),
                credentials_file: p.credentials_file.clone(),
                config_file: p.config_file.clone(),
            });
        }
        Ok(p)
    }

    /// The profile in use.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn config_section(&self, profile: &str) -> Option<&HashMap<String, String>> {
        let key = if profile == "default" {
            "default".to_owned()
        } else {
            format!("profile {profile}")
        };
        self.config.get(&key).or_else(|| self.config.get(profile))
    }

    fn exists(&self, profile: &str) -> bool {
        self.credentials.contains_key(profile) || self.config_section(profile).is_some()
    }

    /// `key` of `profile`: the credentials file first, then the config file.
    fn value(&self, profile: &str, key: &str) -> Option<String> {
        self.credentials
            .get(profile)
            .and_then(|s| s.get(key))
            .or_else(|| self.config_section(profile).and_then(|s| s.get(key)))
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// `key` of the profile in use (e.g. `region`).
    pub fn get(&self, key: &str) -> Option<String> {
        self.value(&self.name, key)
    }

    /// The profile's S3 endpoint: its `endpoint_url`, or the one its
    /// `services` section gives S3.
    pub fn s3_endpoint(&self) -> Option<String> {
        if let Some(services) = self.get("services") {
            let section = self.config.get(&format!("services {services}"));
            if let Some(url) = section.and_then(|s| s.get("s3.endpoint_url")) {
                return Some(url.clone());
            }
        }
        self.get("endpoint_url")
    }
}

/// Read an AWS-style INI file; a missing file is empty.
fn read_ini(path: &Path) -> Result<Ini, ProfileError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_ini(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(source) => Err(ProfileError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Sections of `key = value` lines; an indented line under `name =` with
/// no value is that key's sub-setting, kept as `name.key` (how the config
/// file nests `s3 =` / `  endpoint_url = ...`).
fn parse_ini(text: &str) -> Ini {
    let mut out = Ini::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
            parent = None;
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            let indented = raw.starts_with([' ', '\t']);
            let key = match (&parent, indented) {
                (Some(p), true) => format!("{p}.{k}"),
                _ => {
                    parent = v.is_empty().then(|| k.clone());
                    k
                }
            };
            out.entry(s.clone()).or_default().insert(key, v);
        }
    }
    out
}

/// The credentials the profile in use names.
pub(crate) struct ProfileProvider {
    profiles: Profiles,
    sts: sts::Endpoint,
    http: reqwest::Client,
    env: HashMap<String, String>,
}

impl fmt::Debug for ProfileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the environment: it holds the secrets of other sources.
        f.debug_struct("ProfileProvider")
            .field("profiles", &self.profiles)
            .field("sts", &self.sts)
            .finish_non_exhaustive()
    }
}

impl ProfileProvider {
    pub(crate) fn new(
        profiles: Profiles,
        sts: sts::Endpoint,
        http: reqwest::Client,
        env: HashMap<String, String>,
    ) -> Self {
        ProfileProvider {
            profiles,
            sts,
            http,
            env,
        }
    }

    /// The credentials of `profile`; `seen` guards against a
    /// `source_profile` loop.
    fn resolve<'a>(
        &'a self,
        profile: &'a str,
        seen: Vec<String>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Credentials, CredentialError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let p = &self.profiles;
            let name = format!("profile {profile}");
            let v = |k: &str| p.value(profile, k);
            if let (Some(role), Some(token_file)) = (v("role_arn"), v("web_identity_token_file")) {
                // A role to assume with a web identity token (as IRSA's
                // variables, in a profile).
                let provider = sts::WebIdentity {
                    token_file: Some(token_file.into()),
                    role_arn: Some(role),
                    session_name: v("role_session_name"),
                    sts: self.sts.clone(),
                    http: self.http.clone(),
                };
                return provider.credentials().await.map_err(|e| match e {
                    CredentialError::Failed { message, .. } => {
                        CredentialError::failed(&name, message)
                    }
                    e => e,
                });
            }
            if let Some(role) = v("role_arn") {
                // A role to assume with a profile's keys or another source's.
                let source = match (v("source_profile"), v("credential_source")) {
                    (Some(src), _) if src == profile => {
                        // A profile may name itself: its own static keys.
                        self.static_keys(profile).ok_or_else(|| {
                            CredentialError::failed(
                                &name,
                                "source_profile is itself but it has no keys",
                            )
                        })?
                    }
                    (Some(src), _) => {
                        if seen.contains(&src) {
                            return Err(CredentialError::failed(
                                &name,
                                format!("source_profile loop: {} -> {src}", seen.join(" -> ")),
                            ));
                        }
                        if !p.exists(&src) {
                            return Err(CredentialError::failed(
                                &name,
                                format!("source_profile {src:?} does not exist"),
                            ));
                        }
                        let mut seen = seen.clone();
                        seen.push(src.clone());
                        self.resolve(&src, seen).await?
                    }
                    (None, Some(cs)) => self.credential_source(&name, &cs).await?,
                    (None, None) => {
                        return Err(CredentialError::failed(
                            &name,
                            "role_arn needs source_profile or credential_source",
                        ))
                    }
                };
                let options: HashMap<String, String> =
                    ["role_session_name", "external_id", "duration_seconds"]
                        .iter()
                        .filter_map(|k| v(k).map(|val| (k.to_string(), val)))
                        .collect();
                return sts::assume_role(&name, &self.http, &self.sts, &source, &role, &options)
                    .await;
            }
            // The rest in the order of the SDKs' profile provider: SSO,
            // then `credential_process`, then static keys.
            if v("sso_session").is_some() || v("sso_start_url").is_some() {
                let sso = self
                    .sso_profile(profile)
                    .map_err(|why| CredentialError::failed(&name, why))?;
                return sso::credentials(&name, profile, &sso, &self.env, &self.http).await;
            }
            if let Some(command) = v("credential_process") {
                return process::run(&name, &command).await;
            }
            if let Some(c) = self.static_keys(profile) {
                return Ok(c);
            }
            if !p.exists(profile) {
                return Err(CredentialError::NotConfigured(format!(
                    "not in {} or {}",
                    p.credentials_file.display(),
                    p.config_file.display()
                )));
            }
            Err(CredentialError::NotConfigured(
                "no aws_access_key_id, credential_process or role_arn".into(),
            ))
        })
    }

    /// What an SSO profile names: through its `[sso-session NAME]`
    /// section, or (legacy) in the profile itself.
    fn sso_profile(&self, profile: &str) -> Result<sso::SsoProfile, String> {
        let v = |k: &str| self.profiles.value(profile, k);
        let session = v("sso_session");
        let from_session = |k: &str| {
            session.as_ref().and_then(|s| {
                self.profiles
                    .config
                    .get(&format!("sso-session {s}"))
                    .and_then(|sec| sec.get(k))
                    .cloned()
            })
        };
        let need = |k: &str, found: Option<String>| {
            found.ok_or_else(|| format!("the SSO profile has no {k}"))
        };
        Ok(sso::SsoProfile {
            start_url: need(
                "sso_start_url",
                from_session("sso_start_url").or_else(|| v("sso_start_url")),
            )?,
            region: need(
                "sso_region",
                from_session("sso_region").or_else(|| v("sso_region")),
            )?,
            account_id: need("sso_account_id", v("sso_account_id"))?,
            role_name: need("sso_role_name", v("sso_role_name"))?,
            session,
        })
    }

    fn static_keys(&self, profile: &str) -> Option<Credentials> {
        let v = |k: &str| self.profiles.value(profile, k);
        match (v("aws_access_key_id"), v("aws_secret_access_key")) {
            (Some(a), Some(s)) => Some(Credentials {
                session_token: v("aws_session_token"),
                ..Credentials::new(a, s)
            }),
            _ => None,
        }
    }

    async fn credential_source(
        &self,
        name: &str,
        source: &str,
    ) -> Result<Credentials, CredentialError> {
        let provider: Arc<dyn CredentialProvider> = match source {
            "Environment" => Arc::new(EnvProvider::from_env(&self.env)),
            "Ec2InstanceMetadata" => Arc::new(imds::Imds::from_env(&self.env, self.http.clone())),
            "EcsContainer" => Arc::new(container::Container::from_env(&self.env, self.http.clone())),
            other => {
                return Err(CredentialError::failed(
                    name,
                    format!("credential_source {other:?} is not Environment, Ec2InstanceMetadata or EcsContainer"),
                ))
            }
        };
        provider.credentials().await.map_err(|e| match e {
            CredentialError::NotConfigured(why) => {
                CredentialError::failed(name, format!("credential_source {source}: {why}"))
            }
            e => e,
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for ProfileProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
        let name = self.profiles.name.clone();
        let result = self.resolve(&name, vec![name.clone()]).await;
        match result {
            // A profile asked for by name that names no credentials is a
            // mistake to report, not a reason to try the next source.
            Err(CredentialError::NotConfigured(why)) if self.profiles.explicit => {
                Err(CredentialError::failed(&format!("profile {name}"), why))
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(credentials: &str, config: &str, name: &str) -> Profiles {
        Profiles {
            name: name.into(),
            explicit: false,
            credentials: parse_ini(credentials),
            config: parse_ini(config),
            credentials_file: "c".into(),
            config_file: "f".into(),
        }
    }

    #[test]
    fn ini_sections_values_and_nested_settings() {
        let p = profiles(
            "[default]\naws_access_key_id = A\n",
            "[profile dev]\nregion = eu-west-1\nservices = local\n\n[services local]\ns3 =\n  endpoint_url = http://127.0.0.1:9000\nsts =\n  endpoint_url = http://127.0.0.1:9001\n",
            "dev",
        );
        assert_eq!(p.get("region").as_deref(), Some("eu-west-1"));
        assert_eq!(p.s3_endpoint().as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            p.value("default", "aws_access_key_id").as_deref(),
            Some("A")
        );
    }

    #[tokio::test]
    async fn static_keys_process_loops_and_sso() {
        let http = reqwest::Client::new();
        let sts = sts::Endpoint {
            url: "http://127.0.0.1:9".into(),
            region: "us-east-1".into(),
        };
        let provider =
            |p: Profiles| ProfileProvider::new(p, sts.clone(), http.clone(), HashMap::new());

        let c = provider(profiles(
            "[k]\naws_access_key_id=A\naws_secret_access_key=S\naws_session_token=T\n",
            "",
            "k",
        ))
        .credentials()
        .await
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("A", Some("T"))
        );

        let c = provider(profiles(
            "",
            "[profile p]\ncredential_process = echo '{\"Version\":1,\"AccessKeyId\":\"P\",\"SecretAccessKey\":\"S\"}'\n",
            "p",
        ))
        .credentials()
        .await
        .unwrap();
        assert_eq!(c.access_key_id, "P");

        // As in the SDKs, `credential_process` comes before static keys.
        let c = provider(profiles(
            "[both]\naws_access_key_id=A\naws_secret_access_key=S\n",
            "[profile both]\ncredential_process = echo '{\"Version\":1,\"AccessKeyId\":\"P\",\"SecretAccessKey\":\"S\"}'\n",
            "both",
        ))
        .credentials()
        .await
        .unwrap();
        assert_eq!(c.access_key_id, "P");

        let e = provider(profiles(
            "",
            "[profile a]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = b\n[profile b]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n",
            "a",
        ))
        .credentials()
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("source_profile loop: a -> b"), "{e}");

        let e = provider(profiles("", "[profile s]\nsso_session = corp\n", "s"))
            .credentials()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the SSO profile has no sso_start_url"), "{e}");

        let e = provider(profiles("", "", "default"))
            .credentials()
            .await
            .unwrap_err();
        assert!(matches!(e, CredentialError::NotConfigured(_)), "{e}");
    }
}
