//! SigV4 conformance: the official AWS test vectors that apply to S3 (see
//! `host/tests/data/sigv4/README.md` for which and why), and a differential property test
//! against the `aws-sigv4` crate configured for S3.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::sigv4::{
    amz_date, encode_path, encode_query_component, sha256_hex, SignableRequest, Signer,
};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4")
}

struct Vector {
    method: String,
    raw_path: String,
    raw_query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parses `request.txt`: request line (the path may contain spaces), headers with obsolete
/// line folding (continuation lines start with whitespace), blank line, body.
fn parse_request(text: &str) -> Vector {
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], text.as_bytes()[i + 2..].to_vec()),
        None => (text, Vec::new()),
    };
    let mut lines = head.lines();
    let first = lines.next().unwrap();
    let (method, rest) = first.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap();
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line);
        } else {
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.to_string(), v.to_string()));
        }
    }
    Vector {
        method: method.to_string(),
        raw_path,
        raw_query,
        headers,
        body,
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8().unwrap().into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        .trim_end_matches('\n')
        .to_string()
}

#[test]
fn official_vectors_that_apply_to_s3() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 31, "expected the 31 applicable vectors");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let ctx: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
        let req = parse_request(&read(dir, "request.txt"));
        let creds = &ctx["credentials"];
        let token = creds["token"].as_str().map(str::to_string);
        let omit_token = ctx["omit_session_token"].as_bool().unwrap_or(false);
        assert!(
            !omit_token,
            "{name}: token-after-signing vectors do not apply"
        );
        let signer = Signer::new(
            creds["access_key_id"].as_str().unwrap(),
            creds["secret_access_key"].as_str().unwrap(),
            token.clone(),
            ctx["region"].as_str().unwrap(),
            ctx["service"].as_str().unwrap(),
        );
        let t = OffsetDateTime::parse(ctx["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
        // S3 rule: the canonical URI is the decoded path encoded exactly once.
        let canonical_uri = encode_path(&decode(&req.raw_path));
        let query: Vec<(String, String)> = req
            .raw_query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        let payload_hash = sha256_hex(&req.body);
        let mut headers = req.headers.clone();
        headers.push(("X-Amz-Date".into(), amz_date(t)));
        if let Some(tok) = &token {
            headers.push(("X-Amz-Security-Token".into(), tok.clone()));
        }
        if ctx["sign_body"].as_bool().unwrap_or(false) {
            headers.push(("X-Amz-Content-Sha256".into(), payload_hash.clone()));
        }
        let parts = signer.sign(
            &SignableRequest {
                method: &req.method,
                canonical_uri: &canonical_uri,
                query: &query,
                headers: &headers,
                payload_hash: &payload_hash,
            },
            t,
        );
        assert_eq!(
            parts.canonical_request,
            read(dir, "header-canonical-request.txt"),
            "{name}: canonical request"
        );
        assert_eq!(
            parts.string_to_sign,
            read(dir, "header-string-to-sign.txt"),
            "{name}: string to sign"
        );
        assert_eq!(
            parts.signature,
            read(dir, "header-signature.txt"),
            "{name}: signature"
        );
    }
}

/// Signs with the `aws-sigv4` crate, S3 settings; returns the `authorization` header.
fn aws_reference(
    creds: (&str, &str, Option<&str>),
    region: &str,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    payload: &[u8],
    t: OffsetDateTime,
) -> String {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest as AwsReq,
        SigningSettings, UriPathNormalizationMode,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let identity: Identity = Credentials::new(
        creds.0,
        creds.1,
        creds.2.map(str::to_string),
        None,
        "proptest",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(t.into())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let req = AwsReq::new(
        method,
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(payload),
    )
    .unwrap();
    let (instructions, _sig) = sign(req, &params).unwrap().into_parts();
    let (hdrs, _) = instructions.into_parts();
    hdrs.iter()
        .find(|h| h.name().eq_ignore_ascii_case("authorization"))
        .map(|h| h.value().to_string())
        .unwrap()
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        "[a-zA-Z0-9 +~=%&!*'()$,;:@?#\\[\\]^`{}|<>\"_.üé€😀ሴ-]{1,10}"
            .prop_filter("no dot segments", |s| s != "." && s != ".."),
        1..4,
    )
    .prop_map(|segs| segs.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn matches_aws_sigv4_crate_with_s3_settings(
        ak in "[A-Z0-9]{16,20}",
        sk in "[A-Za-z0-9/+]{20,40}",
        token in proptest::option::of("[A-Za-z0-9/+=]{16,64}"),
        region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
        method in prop::sample::select(vec!["GET", "PUT", "POST", "DELETE", "HEAD"]),
        host in "[a-z][a-z0-9-]{2,10}(\\.[a-z0-9]{2,8}){0,2}",
        port in proptest::option::of(1024u16..65535),
        path_style in any::<bool>(),
        key in key_strategy(),
        query in prop::collection::vec(
            ("[a-zA-Z0-9 +~=%&/_.ü-]{1,8}", "[a-zA-Z0-9 +~=%&/_.ü-]{0,8}"), 0..4),
        headers in prop::collection::vec(
            (prop::sample::select(vec![
                "x-amz-meta-a", "x-amz-meta-b", "content-type", "range", "if-match",
                "if-none-match", "content-md5", "x-amz-meta-long-name-0"]),
             "[!-~]([ !-~]{0,20}[!-~])?"),
            0..5),
        payload in prop::collection::vec(any::<u8>(), 0..300),
        secs in 946_684_800i64..4_102_444_800,
    ) {
        let t = OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let headers: Vec<(String, String)> =
            headers.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        let authority = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        let (host_hdr, path) = if path_style {
            (authority.clone(), format!("/bucket/{}", encode_path(&key)))
        } else {
            (format!("bucket.{authority}"), format!("/{}", encode_path(&key)))
        };
        // The query as the client puts it on the wire.
        let mut wire = String::new();
        for (i, (k, v)) in query.iter().enumerate() {
            wire.push(if i == 0 { '?' } else { '&' });
            wire.push_str(&encode_query_component(k));
            if !v.is_empty() {
                wire.push('=');
                wire.push_str(&encode_query_component(v));
            }
        }
        let uri = format!("https://{host_hdr}{path}{wire}");
        let signer = Signer::new(ak.clone(), sk.clone(), token.clone(), region.clone(), "s3");
        let payload_hash = sha256_hex(&payload);
        let ours = signer.sign_s3(method, &host_hdr, &path, &query, &headers, &payload_hash, t);
        let ours_auth = &ours.iter().find(|(n, _)| *n == "authorization").unwrap().1;

        let theirs = aws_reference(
            (&ak, &sk, token.as_deref()), &region, method, &uri, &headers, &payload, t);
        prop_assert_eq!(ours_auth, &theirs);
    }
}
