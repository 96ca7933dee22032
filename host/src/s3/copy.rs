//! `CopyObject`: a server-side copy within the bucket, no bytes through ccws.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;

use super::client::{check_key, header_str, Request, S3Client};
use super::error::xml_fields;
use super::{ObjectMeta, S3Error};

/// What `x-amz-copy-source` leaves unescaped: S3's unreserved characters and `/`.
const SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

impl S3Client {
    /// Copy the object `src` to `dest` in the same bucket (`CopyObject`);
    /// a missing `src` is [`S3Error::NotFound`].
    pub async fn copy(&self, src: &str, dest: &str) -> Result<ObjectMeta, S3Error> {
        check_key(src)?;
        check_key(dest)?;
        let source = format!(
            "/{}/{}",
            self.config().bucket,
            utf8_percent_encode(src, SOURCE)
        );
        let req = Request::new(Method::PUT, Some(dest))
            .header("x-amz-copy-source", &source)
            .object_write(&self.inner.cfg);
        let (headers, body) = self.send_buffered(&req).await.map_err(|e| match e {
            // The missing object is the source, not the destination.
            S3Error::NotFound { .. } => S3Error::NotFound { key: src.into() },
            e => e,
        })?;
        // A copy can fail after its 200 status: the error is then the body.
        let fields = xml_fields(&body, &["ETag", "Code", "Message"]).map_err(|message| {
            S3Error::InvalidResponse {
                op: format!("CopyObject {src:?} -> {dest:?}"),
                message,
            }
        })?;
        if fields.root.as_deref() == Some("Error") {
            let code = fields.get("Code").unwrap_or("Error");
            return Err(S3Error::InvalidResponse {
                op: format!("CopyObject {src:?} -> {dest:?}"),
                message: format!("{code}: {}", fields.get("Message").unwrap_or("")),
            });
        }
        let etag = fields
            .get("ETag")
            .or_else(|| header_str(&headers, "etag"))
            .map(str::to_owned);
        Ok(ObjectMeta {
            key: dest.into(),
            size: 0,
            etag,
            last_modified: None,
        })
    }
}
