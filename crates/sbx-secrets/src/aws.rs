//! AWS re-signing: the sandbox signs with placeholder credentials, the proxy checks that
//! signature is well-formed and made with this sandbox's placeholder key id, then signs the
//! request again with the real credentials. No AWS key material ever enters a sandbox.

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::error::Sigv4Error;
use crate::host::{Destination, resolve_destination};
use crate::inject::{AwsBinding, SandboxCredentials};
use crate::sigv4::{
    self, ALGORITHM, CanonicalRequest, ChunkSigner, EMPTY_SHA256, STREAMING_PAYLOAD, Scope,
    SigningKey, UNSIGNED_PAYLOAD,
};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_CONTENT: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// The result of a successful re-signing.
#[derive(Debug)]
pub struct Sigv4Outcome {
    /// The AWS host the request goes to (for the `secret_injected` audit event).
    pub host: String,
    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` uploads: re-signs each chunk of the body,
    /// chained from the new seed signature. The proxy rewrites every chunk header
    /// (`size;chunk-signature=...`) with [`ChunkSigner::chunk_header`].
    pub chunk_signer: Option<ChunkSigner>,
}

/// A parsed `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
struct Credential {
    key_id: String,
    scope: Scope,
}

fn parse_credential(text: &str) -> Result<Credential, Sigv4Error> {
    let parts: Vec<&str> = text.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(Sigv4Error::Malformed(format!(
            "credential scope {text:?} is not KEY/DATE/REGION/SERVICE/aws4_request"
        )));
    };
    let name_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
        || !name_ok(region)
        || !name_ok(service)
        || !name_ok(key_id)
    {
        return Err(Sigv4Error::Malformed(format!(
            "credential scope {text:?} has a bad date, region, service or key id"
        )));
    }
    Ok(Credential {
        key_id: (*key_id).to_owned(),
        scope: Scope {
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        },
    })
}

/// A parsed `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct AuthHeader {
    credential: Credential,
    signed_headers: Vec<String>,
}

fn parse_auth_header(text: &str) -> Result<AuthHeader, Sigv4Error> {
    let rest = text
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(Sigv4Error::NotSigned)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in rest.split(',').map(str::trim) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| Sigv4Error::Malformed(format!("field {field:?} is not KEY=VALUE")))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(Sigv4Error::Malformed(format!("unknown field {other:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(Sigv4Error::Malformed(format!("field {key} given twice")));
        }
    }
    let missing = |f: &str| Sigv4Error::Malformed(format!("Authorization lacks {f}"));
    let credential = parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
    let signed_headers = parse_signed_headers(signed.ok_or_else(|| missing("SignedHeaders"))?)?;
    check_signature(signature.ok_or_else(|| missing("Signature"))?)?;
    Ok(AuthHeader {
        credential,
        signed_headers,
    })
}

fn parse_signed_headers(text: &str) -> Result<Vec<String>, Sigv4Error> {
    let names: Vec<String> = text.split(';').map(str::to_owned).collect();
    let valid = names.iter().all(|n| {
        !n.is_empty() && HeaderName::from_bytes(n.as_bytes()).is_ok_and(|h| h.as_str() == n)
    });
    if !valid || !names.iter().any(|n| n == "host") || !names.is_sorted() {
        return Err(Sigv4Error::Malformed(format!(
            "SignedHeaders {text:?} must be sorted lowercase header names including host"
        )));
    }
    Ok(names)
}

fn check_signature(signature: &str) -> Result<(), Sigv4Error> {
    if signature.len() == 64
        && signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Sigv4Error::Malformed(
            "Signature is not 64 lowercase hex digits".into(),
        ))
    }
}

fn check_amz_date(amz_date: &str, scope: &Scope) -> Result<(), Sigv4Error> {
    let b = amz_date.as_bytes();
    let shape = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if shape && amz_date.starts_with(&scope.date) {
        Ok(())
    } else {
        Err(Sigv4Error::Malformed(format!(
            "X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ on the scope's date"
        )))
    }
}

impl SandboxCredentials {
    /// Re-signs an AWS request the sandbox signed with its placeholder credentials: header
    /// authentication (`Authorization: AWS4-HMAC-SHA256 ...`, including session tokens,
    /// `UNSIGNED-PAYLOAD` and chunked `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` uploads) and
    /// presigned URLs (`X-Amz-Signature` in the query).
    ///
    /// `payload_hash` is the hex SHA-256 of the body; `None` uses the request's
    /// `x-amz-content-sha256` header (S3 always sends one). Refuses (the request must not be
    /// forwarded) when the destination is not an AWS host the credentials are bound to, the
    /// signature is malformed, or it was made with any key id but this sandbox's placeholder.
    pub fn resign_sigv4(
        &self,
        dest: &Destination<'_>,
        head: &mut http::request::Parts,
        payload_hash: Option<&str>,
    ) -> Result<Sigv4Outcome, Sigv4Error> {
        let (bound, aws) = self
            .bound
            .iter()
            .find_map(|b| b.aws.as_ref().map(|a| (b, a)))
            .ok_or(Sigv4Error::NoCredentials)?;
        let host = resolve_destination(dest, head)
            .map_err(|_| Sigv4Error::NotBound { host: "?".into() })?;
        if !bound.provider.is_bound_to(&host) {
            return Err(Sigv4Error::NotBound { host });
        }
        let header = head
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match header {
            Some(text) if text.starts_with(ALGORITHM) => {
                let chunk_signer = resign_header(aws, &host, &text, head, payload_hash)?;
                Ok(Sigv4Outcome { host, chunk_signer })
            }
            _ if head
                .uri
                .query()
                .is_some_and(|q| q.contains("X-Amz-Signature=")) =>
            {
                resign_presigned(aws, &host, head, payload_hash)?;
                Ok(Sigv4Outcome {
                    host,
                    chunk_signer: None,
                })
            }
            _ => Err(Sigv4Error::NotSigned),
        }
    }
}

fn resign_header(
    aws: &AwsBinding,
    host: &str,
    auth: &str,
    head: &mut http::request::Parts,
    payload_hash: Option<&str>,
) -> Result<Option<ChunkSigner>, Sigv4Error> {
    let AuthHeader {
        credential,
        mut signed_headers,
    } = parse_auth_header(auth)?;
    if credential.key_id != aws.key_id {
        return Err(Sigv4Error::ForeignKeyId {
            key_id: credential.key_id,
        });
    }
    let amz_date = head
        .headers
        .get(X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let amz_date =
        amz_date.ok_or_else(|| Sigv4Error::Malformed("x-amz-date header missing".into()))?;
    check_amz_date(&amz_date, &credential.scope)?;
    swap_session_token(aws, head, &mut signed_headers)?;
    let payload_hash = match payload_hash {
        Some(h) => h.to_owned(),
        None => head
            .headers
            .get(X_AMZ_CONTENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(Sigv4Error::PayloadHashNeeded)?,
    };
    let scope = credential.scope;
    let creq = CanonicalRequest {
        method: head.method.as_str(),
        uri: sigv4::canonical_uri(head.uri.path(), scope.service != "s3"),
        query: sigv4::canonical_query(head.uri.query().unwrap_or(""), None),
        headers: canonical_headers(head, &signed_headers, host),
        payload_hash: &payload_hash,
    };
    let key = SigningKey::derive(&aws.real.secret_access_key, &scope);
    let signature = key.sign(&creq.string_to_sign(&amz_date, &scope));
    let value = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={signature}",
        aws.real.access_key_id,
        scope.as_string(),
        creq.signed_headers()
    );
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| Sigv4Error::Malformed("cannot build Authorization".into()))?;
    value.set_sensitive(true);
    head.headers.insert(AUTHORIZATION, value);
    Ok((payload_hash == STREAMING_PAYLOAD)
        .then(|| ChunkSigner::new(key, &amz_date, &scope, &signature)))
}

/// Puts the real session token where the sandbox sent its placeholder (or adds it, signed,
/// when the sandbox sent none and the real credentials need one).
fn swap_session_token(
    aws: &AwsBinding,
    head: &mut http::request::Parts,
    signed: &mut Vec<String>,
) -> Result<(), Sigv4Error> {
    let Some(real) = &aws.real.session_token else {
        return Ok(());
    };
    let sent = head.headers.get(X_AMZ_TOKEN).map(|v| v.as_bytes().to_vec());
    match (sent, &aws.token) {
        (Some(sent), Some(ph)) if sent != ph.as_bytes() => {
            return Err(Sigv4Error::Malformed(
                "x-amz-security-token is not this sandbox's placeholder token".into(),
            ));
        }
        (None, _) => {
            signed.push(X_AMZ_TOKEN.as_str().to_owned());
            signed.sort();
        }
        _ => {}
    }
    let mut value = HeaderValue::from_str(real.expose())
        .map_err(|_| Sigv4Error::Malformed("session token is not a valid header value".into()))?;
    value.set_sensitive(true);
    head.headers.insert(X_AMZ_TOKEN, value);
    Ok(())
}

/// `(name, canonical value)` for each signed header; `host` falls back to the destination
/// (HTTP/2 carries it as `:authority`, not a header).
fn canonical_headers(
    head: &http::request::Parts,
    signed: &[String],
    host: &str,
) -> Vec<(String, String)> {
    signed
        .iter()
        .map(|name| {
            let values: Vec<String> = head
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| sigv4::canonical_header_value(v.as_bytes()))
                .collect();
            let value = if values.is_empty() && name == "host" {
                head.uri
                    .authority()
                    .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned())
            } else {
                values.join(",")
            };
            (name.clone(), value)
        })
        .collect()
}

fn resign_presigned(
    aws: &AwsBinding,
    host: &str,
    head: &mut http::request::Parts,
    payload_hash: Option<&str>,
) -> Result<(), Sigv4Error> {
    let query = head.uri.query().unwrap_or("").to_owned();
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let get = |params: &[(String, String)], name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(&sigv4::percent_decode(v)).into_owned())
    };
    let missing = |f: &str| Sigv4Error::Malformed(format!("presigned URL lacks {f}"));
    if get(&params, "X-Amz-Algorithm").as_deref() != Some(ALGORITHM) {
        return Err(Sigv4Error::Malformed(
            "X-Amz-Algorithm is not AWS4-HMAC-SHA256".into(),
        ));
    }
    let credential = parse_credential(
        &get(&params, "X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?,
    )?;
    if credential.key_id != aws.key_id {
        return Err(Sigv4Error::ForeignKeyId {
            key_id: credential.key_id,
        });
    }
    let amz_date = get(&params, "X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?;
    check_amz_date(&amz_date, &credential.scope)?;
    let signed_headers = parse_signed_headers(
        &get(&params, "X-Amz-SignedHeaders").ok_or_else(|| missing("X-Amz-SignedHeaders"))?,
    )?;
    check_signature(&get(&params, "X-Amz-Signature").unwrap_or_default())?;
    let scope = credential.scope;
    params.retain(|(n, _)| n != "X-Amz-Signature");
    set_param(
        &mut params,
        "X-Amz-Credential",
        &format!("{}/{}", aws.real.access_key_id, scope.as_string()),
    );
    if let Some(real) = &aws.real.session_token {
        let sent = get(&params, "X-Amz-Security-Token");
        if sent
            .as_deref()
            .is_some_and(|s| Some(s) != aws.token.as_deref())
        {
            return Err(Sigv4Error::Malformed(
                "X-Amz-Security-Token is not this sandbox's placeholder token".into(),
            ));
        }
        set_param(&mut params, "X-Amz-Security-Token", real.expose());
    }
    let joined: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let new_query = joined.join("&");
    let default_hash = if scope.service == "s3" {
        UNSIGNED_PAYLOAD
    } else {
        EMPTY_SHA256
    };
    let creq = CanonicalRequest {
        method: head.method.as_str(),
        uri: sigv4::canonical_uri(head.uri.path(), scope.service != "s3"),
        query: sigv4::canonical_query(&new_query, None),
        headers: canonical_headers(head, &signed_headers, host),
        payload_hash: payload_hash.unwrap_or(default_hash),
    };
    let signature = SigningKey::derive(&aws.real.secret_access_key, &scope)
        .sign(&creq.string_to_sign(&amz_date, &scope));
    let pq = format!(
        "{}?{new_query}&X-Amz-Signature={signature}",
        head.uri.path()
    );
    let mut parts = head.uri.clone().into_parts();
    parts.path_and_query = Some(
        http::uri::PathAndQuery::from_maybe_shared(pq)
            .map_err(|_| Sigv4Error::Malformed("cannot rebuild URI".into()))?,
    );
    head.uri = http::Uri::from_parts(parts)
        .map_err(|_| Sigv4Error::Malformed("cannot rebuild URI".into()))?;
    Ok(())
}

fn set_param(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    let encoded = sigv4::uri_encode(value.as_bytes(), false);
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = encoded,
        None => params.push((name.to_owned(), encoded)),
    }
}
