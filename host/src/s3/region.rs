//! Which region a bucket is in, and where its endpoint is: the configured
//! region until the server names another (a 301 redirect with
//! `x-amz-bucket-region`, or a 400 `AuthorizationHeaderMalformed` saying
//! what it expected), then that one for the rest of the process.

use std::sync::Mutex;

use reqwest::header::HeaderMap;
use tracing::warn;

use super::error::S3Error;
use super::request::header_str;

/// The region requests are signed for and the endpoint's authority.
#[derive(Debug)]
pub(crate) struct BucketRegion {
    configured: String,
    /// `host[:port]` of the configured endpoint.
    authority: String,
    /// The region a server named, and its endpoint's authority when ours
    /// was AWS's default endpoint for the configured region.
    learned: Mutex<Option<(String, Option<String>)>>,
}

impl BucketRegion {
    pub(crate) fn new(configured: String, authority: String) -> Self {
        BucketRegion {
            configured,
            authority,
            learned: Mutex::new(None),
        }
    }

    fn learned(&self) -> std::sync::MutexGuard<'_, Option<(String, Option<String>)>> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The region to sign for.
    pub(crate) fn region(&self) -> String {
        self.learned()
            .as_ref()
            .map_or_else(|| self.configured.clone(), |(r, _)| r.clone())
    }

    /// `host[:port]` to send to.
    pub(crate) fn authority(&self) -> String {
        self.learned()
            .as_ref()
            .and_then(|(_, a)| a.clone())
            .unwrap_or_else(|| self.authority.clone())
    }

    /// Use `region` from now on; on AWS's default endpoint for the
    /// configured region, that region's endpoint too. Whether anything
    /// changed (a redirect to the region already in use is not followed).
    pub(crate) fn learn(&self, bucket: &str, region: &str) -> bool {
        if region.is_empty() || region == self.region() {
            return false;
        }
        let aws_default = format!("s3.{}.amazonaws.com", self.configured);
        let authority =
            (self.authority == aws_default).then(|| format!("s3.{region}.amazonaws.com"));
        warn!(bucket, region, "s3: the bucket is in another region; using it from now on (set AWS_REGION to skip the redirect)");
        *self.learned() = Some((region.to_owned(), authority));
        true
    }
}

/// The region `e` says the bucket is in, if it is a redirect that names
/// one or an `AuthorizationHeaderMalformed` that says what it expected.
pub(crate) fn named_by(e: &S3Error) -> Option<String> {
    match e {
        S3Error::Redirect {
            region: Some(r), ..
        } => Some(r.clone()),
        S3Error::Auth { code, message, .. } if code == "AuthorizationHeaderMalformed" => {
            expected_region(message)
        }
        _ => None,
    }
}

/// A redirect answer (never followed: see [`S3Error::Redirect`]) as an error naming the
/// bucket's region when the server tells it.
pub(crate) fn redirect_error(status: u16, bucket: &str, h: &HeaderMap) -> Option<S3Error> {
    matches!(status, 301 | 302 | 307 | 308).then(|| S3Error::Redirect {
        status,
        bucket: bucket.to_string(),
        region: header_str(h, "x-amz-bucket-region").map(str::to_string),
    })
}

/// The region an `AuthorizationHeaderMalformed` message says it expected
/// ("the region 'us-east-1' is wrong; expecting 'eu-west-1'").
pub(crate) fn expected_region(message: &str) -> Option<String> {
    let rest = message.split("expecting '").nth(1)?;
    let region = rest.split('\'').next()?;
    (!region.is_empty() && region.len() < 64).then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learned_region_is_used_and_moves_aws_s_default_endpoint_only() {
        let aws = BucketRegion::new("us-east-1".into(), "s3.us-east-1.amazonaws.com".into());
        assert!(
            !aws.learn("b", "us-east-1"),
            "the region in use: nothing to learn"
        );
        assert!(aws.learn("b", "eu-west-1"));
        assert_eq!(aws.region(), "eu-west-1");
        assert_eq!(aws.authority(), "s3.eu-west-1.amazonaws.com");
        assert!(!aws.learn("b", "eu-west-1"));

        // Another endpoint (a store of one's own) stays where it is.
        let own = BucketRegion::new("us-east-1".into(), "127.0.0.1:9000".into());
        assert!(own.learn("b", "eu-west-1"));
        assert_eq!(own.region(), "eu-west-1");
        assert_eq!(own.authority(), "127.0.0.1:9000");
        assert!(!own.learn("b", ""));
    }

    #[test]
    fn the_expected_region_is_read_from_s3s_message() {
        assert_eq!(
            expected_region("The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(expected_region("malformed"), None);
    }

    #[test]
    fn redirects_name_the_bucket_region() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-bucket-region", "eu-west-1".parse().unwrap());
        for status in [301, 307] {
            let e = redirect_error(status, "my-bucket", &h).unwrap();
            assert!(
                matches!(&e, S3Error::Redirect { region: Some(r), .. } if r == "eu-west-1"),
                "{e:?}"
            );
            assert!(!e.is_retryable());
            let msg = e.to_string();
            for part in [
                &format!("HTTP {status}"),
                "\"my-bucket\"",
                "another region (x-amz-bucket-region: eu-west-1)",
                "endpoint is wrong",
            ] {
                assert!(msg.contains(part), "{part:?} missing: {msg}");
            }
        }
        let e = redirect_error(301, "b", &HeaderMap::new()).unwrap();
        assert!(
            e.to_string().contains("another region or the endpoint"),
            "{e}"
        );
        for status in [200, 304, 403, 404] {
            assert!(redirect_error(status, "b", &h).is_none(), "{status}");
        }
    }
}
