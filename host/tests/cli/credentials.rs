//! `ccws` signing with credentials from a profile's `credential_process`
//! and from instance metadata, against s3s-fs (which verifies SigV4); and
//! what the agent of `ccws run` never sees.

use crate::awsfake::{self, AwsFake};
use crate::s3s::S3sServer;
use crate::Machine;

fn store_env(server: &S3sServer) -> Vec<(&'static str, String)> {
    vec![
        ("CCWS_BUCKET", server.bucket.clone()),
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_with_a_credential_process_or_instance_metadata() {
    // s3s-fs and the fake are served here; ccws runs as a child process.
    let server = S3sServer::start().await;
    let m = Machine::new();
    let src = m.path("src.txt");
    std::fs::write(&src, "signed by a provider").unwrap();
    let config = m.path("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile tool]\ncredential_process = printf '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\"}}'\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    let out = m
        .cmd()
        .envs(store_env(&server))
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "tool")
        .args(["put", src.to_str().unwrap(), "via/process"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let imds = AwsFake::start(awsfake::imds(
        "role",
        (server.access_key.clone(), server.secret_key.clone()),
        time::Duration::hours(6),
    ))
    .await;
    let out = m
        .cmd()
        .envs(store_env(&server))
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
        .args(["get", "via/process", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"signed by a provider");
    assert!(imds.count("/latest/api/token") >= 1);
}

#[test]
fn the_agent_never_sees_what_credentials_come_from() {
    let m = Machine::new();
    let vars = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_SECRET_ACCESS_KEY",
    ];
    let mut c = m.cmd();
    for v in vars {
        c.env(v, "value-the-agent-must-not-see");
    }
    let out = c
        .args(["run", "-w", "w", "-s", "s", "--", "env"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(!seen.contains("value-the-agent-must-not-see"), "{seen}");
}

#[test]
fn with_home_unset_the_shared_files_are_never_read_from_the_working_directory() {
    let m = Machine::new();
    // A profile in ./.aws, where a HOME-less process would look if it
    // joined an empty home with `.aws/credentials`.
    let cwd = m.path("cwd");
    std::fs::create_dir_all(cwd.join(".aws")).unwrap();
    std::fs::write(
        cwd.join(".aws/credentials"),
        "[here]\naws_access_key_id = AKIAHERE\naws_secret_access_key = here-secret\n",
    )
    .unwrap();
    let out = m
        .cmd()
        .env_remove("HOME")
        .current_dir(&cwd)
        .env("CCWS_BUCKET", "b")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .args(["--profile", "here", "ls"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The password database's home directory is used instead: an absolute path.
    assert!(
        stderr.contains("AWS profile \"here\" not found in /"),
        "{stderr}"
    );
}
