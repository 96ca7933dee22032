//! `ListObjectsV2` (page by page, with continuation tokens) and
//! `DeleteObjects` (in batches of at most [`MAX_DELETE_BATCH`] keys).

use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use quick_xml::events::Event;
use quick_xml::Reader;
use reqwest::Method;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::client::{check_key, Request, S3Client};
use super::error::parse_error_xml;
use super::{ObjectMeta, S3Error};

/// The most keys one `ListObjectsV2` page holds, and S3's default.
pub const MAX_LIST_PAGE: u32 = 1000;

/// The most keys one `DeleteObjects` request may name.
pub const MAX_DELETE_BATCH: usize = 1000;

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects, in key order (byte order of their UTF-8).
    pub objects: Vec<ObjectMeta>,
    /// Where the next page starts (pass it back), or `None` on the last page.
    pub next: Option<String>,
}

/// A key a `DeleteObjects` request could not delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: String,
    /// The server's error code and message.
    pub reason: String,
}

impl S3Client {
    /// One page of `ListObjectsV2`: at most `max_keys` (1 to
    /// [`MAX_LIST_PAGE`]) objects whose keys start with `prefix`, after the
    /// page that handed out `token`.
    ///
    /// Keys come back as the server wrote them in its XML (no
    /// `encoding-type=url`: some servers echo it without encoding the keys,
    /// and a key holding `%` would then be decoded into another key).
    pub async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        let max_keys = max_keys.clamp(1, MAX_LIST_PAGE);
        let mut req = Request::new(Method::GET, None)
            .query("list-type", "2")
            .query("max-keys", &max_keys.to_string());
        if !prefix.is_empty() {
            req = req.query("prefix", prefix);
        }
        if let Some(t) = token {
            req = req.query("continuation-token", t);
        }
        let (_, body) = self.send_buffered(&req).await?;
        let op = format!("ListObjectsV2 {prefix:?}");
        let page = parse_list(&body).map_err(|message| S3Error::InvalidResponse {
            op: op.clone(),
            message,
        })?;
        if let Some(o) = page.objects.iter().find(|o| !o.key.starts_with(prefix)) {
            return Err(S3Error::InvalidResponse {
                op,
                message: format!("listed key {:?} is outside the prefix", o.key),
            });
        }
        if page.next.as_deref() == Some("") || (page.next.is_some() && page.objects.is_empty()) {
            // A truncated page with nothing in it, or no way on: the
            // listing would never end.
            return Err(S3Error::InvalidResponse {
                op,
                message: "a truncated page without objects or a continuation token".into(),
            });
        }
        Ok(page)
    }

    /// Delete `keys` with `DeleteObjects`, [`MAX_DELETE_BATCH`] per request;
    /// returns the keys the server refused (a missing key is no failure,
    /// as in S3). A request that fails as a whole fails the call; the
    /// batches before it stay deleted.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<DeleteFailure>, S3Error> {
        for k in keys {
            check_key(k)?;
        }
        let mut failures = Vec::new();
        for batch in keys.chunks(MAX_DELETE_BATCH) {
            failures.extend(self.delete_batch(batch).await?);
        }
        Ok(failures)
    }

    /// One `DeleteObjects` request (quiet: only failures are listed).
    async fn delete_batch(&self, keys: &[String]) -> Result<Vec<DeleteFailure>, S3Error> {
        let body = delete_body(keys);
        // S3 refuses a multi-object delete without an integrity header.
        let md5 = content_md5(&body);
        let req = Request::new(Method::POST, None)
            .query("delete", "")
            .header("content-md5", &md5)
            .header("content-type", "application/xml")
            .body(Bytes::from(body))
            .await;
        let (_, answer) = self.send_buffered(&req).await?;
        if let Some(e) = parse_error_xml(&answer) {
            // A 200 whose body is an error: the request as a whole failed.
            return Err(S3Error::Service {
                status: 200,
                code: e.code,
                message: e.message,
                request_id: e.request_id,
                key: None,
            });
        }
        parse_delete_result(&answer).map_err(|message| S3Error::InvalidResponse {
            op: format!("DeleteObjects ({} keys)", keys.len()),
            message,
        })
    }
}

/// The `Content-MD5` header's value for `body`: its MD5, in base64.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The `<Delete>` document for `keys`.
fn delete_body(keys: &[String]) -> Vec<u8> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
    );
    for k in keys {
        xml.push_str("<Object><Key>");
        xml.push_str(&quick_xml::escape::escape(k.as_str()));
        xml.push_str("</Key></Object>");
    }
    xml.push_str("</Delete>");
    xml.into_bytes()
}

/// What [`walk_xml`] reports.
enum Xml<'a> {
    /// An element starts; the path of element names (local) down to it.
    Open(&'a [String]),
    /// Text inside the element the path leads to (possibly one of several
    /// pieces).
    Text(&'a [String], String),
}

/// Walks an XML document, reporting each element's start and text.
fn walk_xml(body: &[u8], mut on: impl FnMut(Xml<'_>)) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut reader = Reader::from_str(text.trim_start());
    let mut path: Vec<String> = Vec::new();
    let name = |e: &quick_xml::events::BytesStart<'_>| {
        String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(name(&e));
                on(Xml::Open(&path));
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Empty(e) => {
                // `<Key/>`: an element with empty text.
                path.push(name(&e));
                on(Xml::Open(&path));
                on(Xml::Text(&path, String::new()));
                path.pop();
            }
            Event::Text(t) => {
                let v = t.unescape().map_err(|e| e.to_string())?;
                on(Xml::Text(&path, v.into_owned()));
            }
            Event::CData(t) => {
                on(Xml::Text(&path, String::from_utf8_lossy(&t).into_owned()));
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The element names of `path`.
fn names(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// Parses a `ListBucketResult` (V2).
fn parse_list(body: &[u8]) -> Result<ListPage, String> {
    #[derive(Default)]
    struct Item {
        key: Option<String>,
        size: String,
        etag: Option<String>,
        modified: String,
    }
    let mut root: Option<String> = None;
    let mut items: Vec<Item> = Vec::new();
    let mut truncated = String::new();
    let mut next: Option<String> = None;
    walk_xml(body, |ev| match ev {
        Xml::Open(path) => {
            if root.is_none() {
                root = path.first().cloned();
            }
            if names(path) == ["ListBucketResult", "Contents"] {
                items.push(Item::default());
            }
        }
        // Text may come in pieces (around entities): each is appended.
        Xml::Text(path, text) => match names(path).as_slice() {
            ["ListBucketResult", "IsTruncated"] => truncated.push_str(&text),
            ["ListBucketResult", "NextContinuationToken"] => {
                next.get_or_insert_with(String::new).push_str(&text)
            }
            ["ListBucketResult", "Contents", field] => {
                let Some(item) = items.last_mut() else { return };
                match *field {
                    "Key" => item.key.get_or_insert_with(String::new).push_str(&text),
                    "Size" => item.size.push_str(&text),
                    "ETag" => item.etag.get_or_insert_with(String::new).push_str(&text),
                    "LastModified" => item.modified.push_str(&text),
                    _ => {}
                }
            }
            _ => {}
        },
    })?;
    if root.as_deref() != Some("ListBucketResult") {
        return Err(format!(
            "expected a <ListBucketResult> document, got <{}>",
            root.unwrap_or_default()
        ));
    }
    let mut objects = Vec::with_capacity(items.len());
    for i in items {
        let key = i.key.ok_or("a <Contents> without a <Key>")?;
        let size = i
            .size
            .trim()
            .parse()
            .map_err(|_| format!("{key:?} has a <Size> of {:?}", i.size))?;
        objects.push(ObjectMeta {
            last_modified: OffsetDateTime::parse(i.modified.trim(), &Rfc3339).ok(),
            key,
            size,
            etag: i.etag,
        });
    }
    Ok(ListPage {
        objects,
        next: if truncated.trim() == "true" {
            Some(next.unwrap_or_default())
        } else {
            None
        },
    })
}

/// Parses a `DeleteResult`: the `<Error>` entries, one per key not deleted.
fn parse_delete_result(body: &[u8]) -> Result<Vec<DeleteFailure>, String> {
    #[derive(Default)]
    struct Failure {
        key: String,
        code: String,
        message: String,
    }
    let mut root: Option<String> = None;
    let mut failures: Vec<Failure> = Vec::new();
    walk_xml(body, |ev| match ev {
        Xml::Open(path) => {
            if root.is_none() {
                root = path.first().cloned();
            }
            if names(path) == ["DeleteResult", "Error"] {
                failures.push(Failure::default());
            }
        }
        Xml::Text(path, text) => {
            if let ["DeleteResult", "Error", field] = names(path).as_slice() {
                let Some(f) = failures.last_mut() else { return };
                match *field {
                    "Key" => f.key.push_str(&text),
                    "Code" => f.code.push_str(&text),
                    "Message" => f.message.push_str(&text),
                    _ => {}
                }
            }
        }
    })?;
    if root.as_deref() != Some("DeleteResult") {
        return Err(format!(
            "expected a <DeleteResult> document, got <{}>",
            root.unwrap_or_default()
        ));
    }
    Ok(failures
        .into_iter()
        .map(|f| DeleteFailure {
            key: f.key,
            reason: match (f.code.is_empty(), f.message.is_empty()) {
                (false, false) => format!("{}: {}", f.code, f.message),
                (false, true) => f.code,
                (true, _) => f.message,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_page_with_entities_and_a_token() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>p/a&amp;b &lt;c&gt;</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/z</Key><Size>0</Size></Contents>
  <NextContinuationToken>tok/+=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.objects.len(), 2);
        let a = &page.objects[0];
        assert_eq!(a.key, "p/a&b <c>");
        assert_eq!(a.size, 12);
        assert_eq!(a.etag.as_deref(), Some("\"abc\""));
        assert_eq!(
            a.last_modified.unwrap().unix_timestamp(),
            OffsetDateTime::parse("2026-01-02T03:04:05Z", &Rfc3339)
                .unwrap()
                .unix_timestamp()
        );
        assert_eq!(page.objects[1].key, "p/z");
        assert_eq!(page.objects[1].last_modified, None);
        assert_eq!(page.next.as_deref(), Some("tok/+="));
    }

    #[test]
    fn the_last_page_has_no_token_and_bad_pages_are_errors() {
        let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(parse_list(last).unwrap(), ListPage::default());
        let no_size = br#"<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>"#;
        assert!(parse_list(no_size).unwrap_err().contains("<Size>"));
        let other = br#"<Error><Code>AccessDenied</Code></Error>"#;
        assert!(parse_list(other).unwrap_err().contains("ListBucketResult"));
    }

    #[test]
    fn content_md5_is_the_base64_md5() {
        // RFC 1321's test vectors, in base64.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn delete_body_escapes_keys_and_results_name_failures() {
        let body = String::from_utf8(delete_body(&["a&b".into(), "<c>".into()])).unwrap();
        assert!(body.contains("<Quiet>true</Quiet>"), "{body}");
        assert!(
            body.contains(
                "<Object><Key>a&amp;b</Key></Object><Object><Key>&lt;c&gt;</Key></Object>"
            ),
            "{body}"
        );
        let result = br#"<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>ok</Key></Deleted>
  <Error><Key>locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
</DeleteResult>"#;
        assert_eq!(
            parse_delete_result(result).unwrap(),
            vec![DeleteFailure {
                key: "locked".into(),
                reason: "AccessDenied: Access Denied".into()
            }]
        );
        assert!(parse_delete_result(b"<DeleteResult/>").unwrap().is_empty());
    }
}
