//! S3 (and S3-compatible servers) through `aws-sdk-s3`.
//!
//! Configuration comes only from an explicit [`S3Config`], usually built by
//! [`S3Config::from_env`] from the standard `AWS_*` variables. There is no
//! credential chain: no profile files, no instance metadata (strata never
//! talks to the EC2 metadata address).
//!
//! The trait is blocking; each call is `block_on` on a runtime owned by the
//! store (2 worker threads). Conditional writes use `If-None-Match: *` and
//! `If-Match: <etag>` on PutObject. The SDK's standard retry (3 attempts)
//! covers transient failures; note that a retried conditional put whose first
//! attempt was applied but whose response was lost answers `Conflict` (the
//! caller re-reads and decides, as with any lost response).

use super::local::{check_dir, check_key, check_prefix, clamp_range};
use super::{ETag, Object, ObjectMeta, ObjectStore};
use crate::error::{Error, ErrorKind, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 3;

/// Everything needed to reach a bucket. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Every key is stored under `prefix/`; may be empty.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

impl S3Config {
    /// Reads `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`), `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`, else `us-east-1`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`. Path-style addressing
    /// is used whenever an endpoint is set (what S3-compatible servers expect).
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3Config> {
        Self::from_vars(bucket, prefix, |name| std::env::var(name).ok())
    }

    fn from_vars(
        bucket: &str,
        prefix: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config> {
        // An empty variable counts as unset.
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL"));
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (Some(access_key_id), Some(secret_access_key)) =
            (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(Error::invalid(format!(
                "s3://{bucket}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN for temporary credentials; AWS_ENDPOINT_URL and AWS_REGION \
                 for an S3-compatible server)"
            )));
        };
        Ok(S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            force_path_style: endpoint.is_some(),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token: get("AWS_SESSION_TOKEN"),
        })
    }
}

/// A bucket (under an optional prefix) on S3 or an S3-compatible server.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Normalized: no leading/trailing `/`; may be empty.
    prefix: String,
    endpoint: String,
    /// Always `Some` until drop.
    rt: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        // Never blocks, and is safe even when dropped inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

enum Cond<'a> {
    None,
    Absent,
    Match(&'a ETag),
}

impl S3Store {
    /// Builds the client and its runtime. Sends no request.
    pub fn new(cfg: S3Config) -> Result<Self> {
        let prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_prefix(&format!("{prefix}/"))
                .map_err(|e| e.context(format!("s3://{}", cfg.bucket)))?;
        }
        if cfg.bucket.is_empty() {
            return Err(Error::invalid("S3 bucket name is empty"));
        }
        if let Some(ep) = &cfg.endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(Error::invalid(format!(
                "S3 endpoint {ep:?} must start with http:// or https:// (check AWS_ENDPOINT_URL)"
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start S3 runtime", e))?;

        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let creds = Credentials::new(
            cfg.access_key_id.clone(),
            cfg.secret_access_key.clone(),
            cfg.session_token.clone(),
            None,
            "strata-config",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(creds)
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .force_path_style(cfg.force_path_style);
        if let Some(ep) = &cfg.endpoint {
            builder = builder.endpoint_url(ep);
        }
        let client = Client::from_conf(builder.build());
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", cfg.region));
        Ok(S3Store {
            client,
            bucket: cfg.bucket,
            prefix,
            endpoint,
            rt: Some(rt),
        })
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Runs `fut` to completion on the store's runtime. Callers are plain
    /// threads; if one is inside a runtime anyway, block on a scoped thread
    /// rather than panic.
    fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = self.rt.as_ref() else {
            unreachable!("runtime lives until drop")
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
        } else {
            rt.block_on(fut)
        }
    }

    fn put_cond(&self, op: &'static str, key: &str, data: Bytes, cond: Cond<'_>) -> Result<ETag> {
        check_key(key)?;
        let full = self.full(key);
        tracing::debug!(op, bucket = %self.bucket, key = %full, len = data.len(), "s3 request");
        let len = data.len() as i64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(len)
            .body(ByteStream::from(data));
        match &cond {
            Cond::None => {}
            Cond::Absent => req = req.if_none_match("*"),
            Cond::Match(etag) => req = req.if_match(etag.0.clone()),
        }
        let resp = self
            .run(req.send())
            .map_err(|e| match (map_sdk_err(op, key, e), &cond) {
                // S3 answers If-Match on a missing key with 404 NoSuchKey; the
                // trait (and the other backends) call that a failed condition.
                (e, Cond::Match(_)) if e.is_not_found() => {
                    Error::conflict(format!("{op} {key}: object no longer exists"))
                }
                (e, _) => e,
            })?;
        match resp.e_tag() {
            Some(etag) if !etag.is_empty() => Ok(ETag(etag.to_string())),
            _ => Err(Error::invalid(format!(
                "{op} {key}: the S3 server returned no ETag (strata needs ETags for conditional writes)"
            ))),
        }
    }
}

/// Classifies an SDK error once: NotFound, Conflict, Unavailable or Invalid.
fn map_sdk_err<E>(op: &str, key: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let ctx = format!("{op} {key}");
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            let detail = match (code.is_empty(), message.is_empty()) {
                (true, true) => format!("HTTP {status}"),
                (false, true) => format!("{code} (HTTP {status})"),
                (true, false) => format!("{message} (HTTP {status})"),
                (false, false) => format!("{code}: {message} (HTTP {status})"),
            };
            let kind = classify(status, code);
            let hint = match code {
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken" => {
                    "; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
                }
                "NoSuchBucket" => "; the bucket does not exist (strata does not create buckets)",
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => "; check AWS_REGION",
                "RequestTimeTooSkewed" => "; the local clock is off",
                _ => "",
            };
            Error::new(kind, format!("{ctx}: {detail}{hint}"))
        }
        SdkError::TimeoutError(_) => Error::unavailable(format!("{ctx}: S3 request timed out")),
        SdkError::DispatchFailure(_) => {
            Error::unavailable(format!("{ctx}: cannot reach S3: {}", chain(&err)))
        }
        SdkError::ResponseError(_) => Error::unavailable(format!(
            "{ctx}: bad or interrupted S3 response: {}",
            chain(&err)
        )),
        SdkError::ConstructionFailure(_) => {
            Error::invalid(format!("{ctx}: cannot build S3 request: {}", chain(&err)))
        }
        _ => Error::unavailable(format!("{ctx}: {}", chain(&err))),
    }
}

fn classify(status: u16, code: &str) -> ErrorKind {
    match code {
        "NoSuchKey" | "NotFound" => return ErrorKind::NotFound,
        "PreconditionFailed" | "ConditionalRequestConflict" => return ErrorKind::Conflict,
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestTimeout"
        | "ServiceUnavailable"
        | "InternalError" => return ErrorKind::Unavailable,
        "NoSuchBucket" | "InvalidRange" => return ErrorKind::Invalid,
        _ => {}
    }
    match status {
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        408 | 429 => ErrorKind::Unavailable,
        s if s >= 500 => ErrorKind::Unavailable,
        _ => ErrorKind::Invalid,
    }
}

fn body_err(op: &str, key: &str, e: impl std::error::Error) -> Error {
    Error::unavailable(format!(
        "{op} {key}: reading S3 response body: {}",
        chain(&e)
    ))
}

/// `a: b: c` from an error and its sources, skipping repeats (SDK errors
/// often wrap an error whose message is the same as the wrapper's).
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    parts.join(": ")
}

impl S3Store {
    /// `<prefix>/` when the store lives under a prefix of its bucket.
    fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// Every page of a ListObjectsV2 of `prefix` (relative to the store),
    /// with an optional delimiter, handed to `page` in order.
    fn list_pages(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut page: impl FnMut(&aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) + Send,
    ) -> Result<()> {
        let full_prefix = format!("{}{prefix}", self.key_prefix());
        tracing::debug!(op = "list", bucket = %self.bucket, prefix = %full_prefix, ?delimiter, "s3 request");
        self.run(async {
            let mut token: Option<String> = None;
            loop {
                let mut req = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .set_delimiter(delimiter.map(str::to_string));
                if let Some(t) = token.take() {
                    req = req.continuation_token(t);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| map_sdk_err("list", prefix, e))?;
                page(&resp);
                if resp.is_truncated() != Some(true) {
                    return Ok::<_, Error>(());
                }
                match resp.next_continuation_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => {
                        return Err(Error::unavailable(format!(
                            "list {prefix}: truncated S3 listing without a continuation token"
                        )));
                    }
                }
            }
        })
    }
}

impl ObjectStore for S3Store {
    fn get(&self, key: &str) -> Result<Object> {
        check_key(key)?;
        let full = self.full(key);
        tracing::debug!(op = "get", bucket = %self.bucket, key = %full, "s3 request");
        let (data, etag) = self.run(async {
            let resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| map_sdk_err("get", key, e))?;
            let etag = resp.e_tag().map(str::to_string);
            let data = resp
                .body
                .collect()
                .await
                .map_err(|e| body_err("get", key, e))?
                .into_bytes();
            Ok::<_, Error>((data, etag))
        })?;
        let etag = etag
            .ok_or_else(|| Error::invalid(format!("get {key}: the S3 server returned no ETag")))?;
        Ok(Object {
            data,
            etag: ETag(etag),
        })
    }

    fn get_into(&self, key: &str, out: &mut [u8]) -> Result<u64> {
        check_key(key)?;
        let full = self.full(key);
        tracing::debug!(op = "get_into", bucket = %self.bucket, key = %full, len = out.len(), "s3 request");
        self.run(async {
            let mut resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| map_sdk_err("get", key, e))?;
            let len = resp
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    Error::invalid(format!("get {key}: the S3 server sent no Content-Length"))
                })?;
            if len != out.len() as u64 {
                return Ok(len);
            }
            // Chunks straight into `out`: no aggregated copy of the body.
            let mut at = 0;
            while let Some(chunk) = resp.body.next().await {
                let chunk = chunk.map_err(|e| body_err("get", key, e))?;
                let end = at + chunk.len();
                out.get_mut(at..end)
                    .ok_or_else(|| {
                        Error::unavailable(format!(
                            "get {key}: the S3 server sent more than its Content-Length ({len})"
                        ))
                    })?
                    .copy_from_slice(&chunk);
                at = end;
            }
            if at != out.len() {
                return Err(Error::unavailable(format!(
                    "get {key}: the body ended after {at} of {len} bytes"
                )));
            }
            Ok(len)
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        check_key(key)?;
        if range.start >= range.end {
            // S3 cannot express an empty range (it would ignore the header).
            return Err(Error::invalid(format!(
                "get_range {key}: empty range {}..{}",
                range.start, range.end
            )));
        }
        let full = self.full(key);
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        tracing::debug!(op = "get_range", bucket = %self.bucket, key = %full, range = %header, "s3 request");
        let (data, partial) = self.run(async {
            let resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .range(&header)
                .send()
                .await
                .map_err(|e| map_sdk_err("get_range", key, e))?;
            let partial = resp.content_range().is_some();
            let data = resp
                .body
                .collect()
                .await
                .map_err(|e| body_err("get_range", key, e))?
                .into_bytes();
            Ok::<_, Error>((data, partial))
        })?;
        if partial {
            let want = range.end - range.start;
            if data.len() as u64 > want {
                return Err(Error::corrupt(format!(
                    "get_range {key}: asked for {want} bytes, the S3 server sent {}",
                    data.len()
                )));
            }
            Ok(data)
        } else {
            // A server that ignores Range sends the whole object (200).
            let r = clamp_range(key, &range, data.len() as u64)?;
            Ok(data.slice(r.start as usize..r.end as usize))
        }
    }

    fn put(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.put_cond("put", key, data, Cond::None)
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<ETag> {
        self.put_cond("put_if_absent", key, data, Cond::Absent)
    }

    fn put_if_match(&self, key: &str, data: Bytes, etag: &ETag) -> Result<ETag> {
        self.put_cond("put_if_match", key, data, Cond::Match(etag))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(prefix)?;
        let strip = self.key_prefix();
        let mut out = Vec::new();
        self.list_pages(prefix, None, |page| {
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.strip_prefix(&strip)) else {
                    continue;
                };
                if key.starts_with(prefix) {
                    out.push(ObjectMeta {
                        key: key.to_string(),
                        size: obj.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        })?;
        // S3 sorts by UTF-8 bytes already; sorting again is cheap insurance
        // for S3-compatible servers.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        check_dir(dir)?;
        let full_prefix = format!("{}{dir}", self.key_prefix());
        let mut out = Vec::new();
        self.list_pages(dir, Some("/"), |page| {
            for p in page.common_prefixes() {
                if let Some(name) = p
                    .prefix()
                    .and_then(|k| k.strip_prefix(&full_prefix))
                    .and_then(|k| k.strip_suffix('/'))
                    .filter(|n| !n.is_empty())
                {
                    out.push(name.to_string());
                }
            }
        })?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let full = self.full(key);
        tracing::debug!(op = "delete", bucket = %self.bucket, key = %full, "s3 request");
        match self.run(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send(),
        ) {
            Ok(_) => Ok(()),
            Err(e) => match map_sdk_err("delete", key, e) {
                // S3 answers 204 for a missing key; some compatible servers 404.
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn identity(&self) -> String {
        format!("{} at {}", self.describe(), self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_from_vars() {
        let cfg = S3Config::from_vars(
            "b",
            "p",
            vars(&[
                ("AWS_ENDPOINT_URL", "http://generic:9000"),
                ("AWS_ENDPOINT_URL_S3", "http://s3-specific:9000"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "ak"),
                ("AWS_SECRET_ACCESS_KEY", "sk"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("http://s3-specific:9000"));
        assert_eq!(cfg.region, "eu-west-1");
        assert!(cfg.force_path_style);
        assert_eq!(cfg.session_token, None);
        assert!(
            !format!("{cfg:?}").contains("sk\""),
            "secret redacted: {cfg:?}"
        );

        let cfg = S3Config::from_vars(
            "b",
            "",
            vars(&[
                ("AWS_REGION", "us-west-2"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ENDPOINT_URL_S3", ""),
                ("AWS_ACCESS_KEY_ID", "ak"),
                ("AWS_SECRET_ACCESS_KEY", "sk"),
                ("AWS_SESSION_TOKEN", "tok"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.endpoint, None);
        assert_eq!(cfg.region, "us-west-2");
        assert!(!cfg.force_path_style);
        assert_eq!(cfg.session_token.as_deref(), Some("tok"));

        let cfg = S3Config::from_vars(
            "b",
            "",
            vars(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")]),
        )
        .unwrap();
        assert_eq!(cfg.region, "us-east-1");
    }

    #[test]
    fn missing_credentials_say_what_to_set() {
        let err = S3Config::from_vars("b", "", vars(&[("AWS_ACCESS_KEY_ID", "a")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(
            err.to_string()
                .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
    }

    fn cfg(endpoint: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: "b".into(),
            prefix: prefix.into(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            session_token: None,
            force_path_style: true,
        }
    }

    #[test]
    fn describe_and_prefix() {
        let s = S3Store::new(cfg("http://127.0.0.1:1", "/a/b/")).unwrap();
        assert_eq!(s.describe(), "s3://b/a/b");
        assert_eq!(s.full("x/y"), "a/b/x/y");
        let s = S3Store::new(cfg("http://127.0.0.1:1", "")).unwrap();
        assert_eq!(s.describe(), "s3://b");
        assert_eq!(s.full("x"), "x");
        assert_eq!(
            S3Store::new(cfg("127.0.0.1:1", "")).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        assert_eq!(
            S3Store::new(cfg("http://127.0.0.1:1", "a/../b"))
                .unwrap_err()
                .kind(),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn unreachable_server_is_unavailable_not_a_hang() {
        // Bind then drop to get a port with (almost surely) nothing on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = S3Store::new(cfg(&format!("http://127.0.0.1:{port}"), "p")).unwrap();
        let t = std::time::Instant::now();
        let err = s.get("k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(
            s.put("k", Bytes::new()).unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            s.get("").unwrap_err().kind(),
            ErrorKind::Invalid,
            "keys are checked before any request"
        );
    }

    #[test]
    fn usable_from_inside_a_runtime() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = S3Store::new(cfg(&format!("http://127.0.0.1:{port}"), "")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(async { s.list("") }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        drop(rt);
        drop(s);
    }

    #[test]
    fn classification() {
        assert_eq!(classify(404, "NoSuchKey"), ErrorKind::NotFound);
        assert_eq!(classify(404, "NoSuchBucket"), ErrorKind::Invalid);
        assert_eq!(classify(412, "PreconditionFailed"), ErrorKind::Conflict);
        assert_eq!(
            classify(409, "ConditionalRequestConflict"),
            ErrorKind::Conflict
        );
        assert_eq!(classify(503, "SlowDown"), ErrorKind::Unavailable);
        assert_eq!(classify(500, ""), ErrorKind::Unavailable);
        assert_eq!(classify(429, ""), ErrorKind::Unavailable);
        assert_eq!(classify(403, "AccessDenied"), ErrorKind::Invalid);
        assert_eq!(classify(416, "InvalidRange"), ErrorKind::Invalid);
    }
}
