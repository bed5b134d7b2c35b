//! AWS Signature Version 4, implemented on `hmac` + `sha2` and tested against AWS's published
//! test suite (see `tests/sigv4_vectors.rs`).
//!
//! Own implementation rather than the `aws-sigv4` crate: the proxy does not sign requests it
//! builds, it re-signs requests an SDK inside the sandbox already canonicalised and signed. It
//! must reproduce the SDK's canonical request from the wire form (the already-encoded path and
//! query, the exact signed-header list the SDK chose, its `x-amz-date`), which `aws-sigv4`'s
//! request-building API does not expose; it would also pull in the AWS runtime crates.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::value::SecretValue;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name in headers and string-to-sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload hash value for unsigned payloads.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Payload hash value for chunked (aws-chunked) uploads signed chunk by chunk.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// SHA-256 of the empty string, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Real AWS credentials. The secret and token are zeroized and never printed.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    /// Access key id (not secret on its own).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretValue,
    /// Session token of temporary credentials.
    pub session_token: Option<SecretValue>,
}

impl AwsCredentials {
    /// Parses `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`, the form the `aws` secret is
    /// stored in.
    pub fn parse(value: &SecretValue) -> Option<Self> {
        let mut parts = value.expose().splitn(3, ':');
        let id = parts.next().filter(|s| !s.is_empty())?;
        let secret = parts.next().filter(|s| !s.is_empty())?;
        let token = parts.next().filter(|s| !s.is_empty());
        let id_ok = id.bytes().all(|b| b.is_ascii_alphanumeric());
        id_ok.then(|| Self {
            access_key_id: id.to_owned(),
            secret_access_key: SecretValue::from(secret),
            session_token: token.map(SecretValue::from),
        })
    }
}

/// `date/region/service/aws4_request`: what a signature is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    /// e.g. `us-east-1`.
    pub region: String,
    /// e.g. `s3`.
    pub service: String,
}

impl Scope {
    /// The scope string.
    pub fn as_string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Hex-encoded SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 rejected a key; HMAC takes keys of any length")
}

/// The derived signing key for `scope`. Zeroized on drop.
pub struct SigningKey(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Derives `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
    pub fn derive(secret: &SecretValue, scope: &Scope) -> Self {
        let seed = zeroize::Zeroizing::new(format!("AWS4{}", secret.expose()));
        let k_date = zeroize::Zeroizing::new(hmac(seed.as_bytes(), scope.date.as_bytes()));
        let k_region = zeroize::Zeroizing::new(hmac(&*k_date, scope.region.as_bytes()));
        let k_service = zeroize::Zeroizing::new(hmac(&*k_region, scope.service.as_bytes()));
        Self(zeroize::Zeroizing::new(hmac(&*k_service, b"aws4_request")))
    }

    /// Hex signature of `string_to_sign`.
    pub fn sign(&self, string_to_sign: &str) -> String {
        hex(&hmac(&*self.0, string_to_sign.as_bytes()))
    }
}

/// AWS URI encoding: unreserved characters stay, everything else becomes `%XX` (uppercase);
/// `/` stays only when `keep_slash`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid escapes stay as they are).
pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The canonical URI for a path as sent on the wire. S3 (`double_encode = false`) signs the
/// path as sent; every other service normalises it (dot segments, empty segments) and encodes
/// the already-encoded path once more, as the SDKs do.
pub fn canonical_uri(wire_path: &str, double_encode: bool) -> String {
    if wire_path.is_empty() {
        return "/".into();
    }
    if !double_encode {
        return wire_path.to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in wire_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = String::from("/");
    path.push_str(&segments.join("/"));
    if wire_path.ends_with('/') && !segments.is_empty() {
        path.push('/');
    }
    uri_encode(path.as_bytes(), true)
}

/// The canonical query string for a query as sent on the wire: each name and value decoded
/// and re-encoded the AWS way, sorted by name then value. `skip` drops one parameter (the
/// signature of a presigned URL).
pub fn canonical_query(wire_query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = wire_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(name), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .filter(|(name, _)| skip.is_none_or(|s| uri_encode(s.as_bytes(), false) != *name))
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    joined.join("&")
}

/// A header value in canonical form: trimmed, runs of spaces collapsed to one.
pub fn canonical_header_value(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything a signature covers.
#[derive(Debug, Clone)]
pub struct CanonicalRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// From [`canonical_uri`].
    pub uri: String,
    /// From [`canonical_query`].
    pub query: String,
    /// `(lowercase name, canonical value)` for each signed header, sorted by name.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the payload, or [`UNSIGNED_PAYLOAD`] / [`STREAMING_PAYLOAD`].
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// `a;b;c`.
    pub fn signed_headers(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.join(";")
    }

    /// The canonical request text.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.method, self.uri, self.query);
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.signed_headers());
        out.push('\n');
        out.push_str(self.payload_hash);
        out
    }

    /// The string to sign for `amz_date` (`YYYYMMDDTHHMMSSZ`) and `scope`.
    pub fn string_to_sign(&self, amz_date: &str, scope: &Scope) -> String {
        format!(
            "{ALGORITHM}\n{amz_date}\n{}\n{}",
            scope.as_string(),
            sha256_hex(self.text().as_bytes())
        )
    }
}

/// Signs the chunks of an `aws-chunked` upload (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): each
/// chunk's signature chains from the previous one, starting at the request's seed signature.
pub struct ChunkSigner {
    key: SigningKey,
    amz_date: String,
    scope: String,
    previous: String,
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// Starts a chain at `seed_signature` (the signature in the request's Authorization).
    pub fn new(key: SigningKey, amz_date: &str, scope: &Scope, seed_signature: &str) -> Self {
        Self {
            key,
            amz_date: amz_date.to_owned(),
            scope: scope.as_string(),
            previous: seed_signature.to_owned(),
        }
    }

    /// The signature of the next chunk (`data` empty for the final chunk).
    pub fn sign_chunk(&mut self, data: &[u8]) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            sha256_hex(data)
        );
        self.previous = self.key.sign(&to_sign);
        self.previous.clone()
    }

    /// The chunk header line for `data`: `hex-size;chunk-signature=SIG\r\n`.
    pub fn chunk_header(&mut self, data: &[u8]) -> String {
        let signature = self.sign_chunk(data);
        format!("{:x};chunk-signature={signature}\r\n", data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(uri_encode(b"a b/c~", false), "a%20b%2Fc~");
        assert_eq!(uri_encode(b"a b/c~", true), "a%20b/c~");
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4");
        assert_eq!(canonical_uri("", true), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/", true), "/a/c/d/");
        assert_eq!(canonical_uri("/%E1%88%B4", true), "/%25E1%2588%25B4");
        assert_eq!(canonical_uri("/my%20key", false), "/my%20key");
        assert_eq!(canonical_query("b=2&a=1&a=0&c", None), "a=0&a=1&b=2&c=");
        assert_eq!(
            canonical_query("X-Amz-Signature=x&a=%7e", Some("X-Amz-Signature")),
            "a=~"
        );
        assert_eq!(canonical_header_value(b"  a   b  c "), "a b c");
    }

    #[test]
    fn aws_credentials_parse() {
        let c = AwsCredentials::parse(&"AKID:sec/ret+x:tok".into()).unwrap();
        assert_eq!(c.access_key_id, "AKID");
        assert_eq!(c.secret_access_key.expose(), "sec/ret+x");
        assert_eq!(c.session_token.unwrap().expose(), "tok");
        assert!(AwsCredentials::parse(&"AKID".into()).is_none());
        assert!(AwsCredentials::parse(&":x".into()).is_none());
        assert!(AwsCredentials::parse(&"A K:x".into()).is_none());
    }
}
