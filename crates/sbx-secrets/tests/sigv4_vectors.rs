//! SigV4 against AWS's published vectors: the aws-sig-v4-test-suite (credentials AKIDEXAMPLE,
//! 2015-08-30T12:36:00Z, us-east-1, service `service`) and the S3 documentation examples
//! (GET object, presigned URL, chunked upload). Then end to end: a request signed inside the
//! sandbox with placeholder credentials, re-signed by `resign_sigv4`, must carry exactly the
//! signature AWS documents for the real credentials.

use sbx_secrets::sigv4::{
    self, CanonicalRequest, ChunkSigner, EMPTY_SHA256, STREAMING_PAYLOAD, Scope, SigningKey,
};
use sbx_secrets::{Catalog, Destination, SandboxCredentials, SecretValue, Sigv4Error};

const SUITE_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";
const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
const S3_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn suite_scope() -> Scope {
    Scope {
        date: "20150830".into(),
        region: "us-east-1".into(),
        service: "service".into(),
    }
}

fn s3_scope() -> Scope {
    Scope {
        date: "20130524".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    }
}

struct Vector {
    name: &'static str,
    method: &'static str,
    /// Path and query as on the wire.
    target: &'static str,
    /// Extra headers besides host and x-amz-date, in order (duplicates repeat).
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    signature: &'static str,
}

const SUITE: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        target: "/",
        headers: &[],
        body: "",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        target: "/?Param2=value2&Param1=value1",
        headers: &[],
        body: "",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Vector {
        name: "get-vanilla-empty-query-key",
        method: "GET",
        target: "/?Param1=value1",
        headers: &[],
        body: "",
        signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    },
    Vector {
        name: "get-unreserved",
        method: "GET",
        target: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        body: "",
        signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    Vector {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        target: "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        headers: &[],
        body: "",
        signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    Vector {
        name: "get-vanilla-utf8-query",
        method: "GET",
        target: "/?%E1%88%B4=bar",
        headers: &[],
        body: "",
        signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    Vector {
        name: "get-header-key-duplicate",
        method: "GET",
        target: "/",
        headers: &[
            ("my-header1", "value2"),
            ("my-header1", "value2"),
            ("my-header1", "value1"),
        ],
        body: "",
        signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
    Vector {
        name: "get-header-value-order",
        method: "GET",
        target: "/",
        headers: &[
            ("my-header1", "value4"),
            ("my-header1", "value1"),
            ("my-header1", "value3"),
            ("my-header1", "value2"),
        ],
        body: "",
        signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        target: "/",
        headers: &[("my-header1", " value1"), ("my-header2", " \"a   b   c\"")],
        body: "",
        signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    Vector {
        name: "post-vanilla",
        method: "POST",
        target: "/",
        headers: &[],
        body: "",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "post-vanilla-query",
        method: "POST",
        target: "/?Param1=value1",
        headers: &[],
        body: "",
        signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    Vector {
        name: "post-vanilla-query-nonunreserved",
        method: "POST",
        target: "/?%40%23%24%25%5E=&%2B=%2F%2C%3F%3E%3C%60%22%3B%3A%5C%7C%5D%5B%7B%7D",
        headers: &[],
        body: "",
        signature: "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e",
    },
    Vector {
        name: "post-header-key-sort",
        method: "POST",
        target: "/",
        headers: &[("my-header1", "value1")],
        body: "",
        signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    },
    Vector {
        name: "post-header-value-case",
        method: "POST",
        target: "/",
        headers: &[("my-header1", "VALUE1")],
        body: "",
        signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    },
    Vector {
        name: "post-x-www-form-urlencoded",
        method: "POST",
        target: "/",
        headers: &[("content-type", "application/x-www-form-urlencoded")],
        body: "Param1=value1",
        signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    },
    Vector {
        name: "post-x-www-form-urlencoded-parameters",
        method: "POST",
        target: "/",
        headers: &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf8",
        )],
        body: "Param1=value1",
        signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    },
    Vector {
        name: "post-sts-header-before",
        method: "POST",
        target: "/",
        headers: &[("x-amz-security-token", SUITE_TOKEN)],
        body: "",
        signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    },
];

fn suite_head(v: &Vector) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(v.method)
        .uri(v.target)
        .header("host", "example.amazonaws.com")
        .header("x-amz-date", SUITE_DATE);
    for (k, val) in v.headers {
        b = b.header(*k, *val);
    }
    b.body(()).unwrap().into_parts().0
}

fn signed_names(head: &http::request::Parts) -> Vec<String> {
    let mut names: Vec<String> = head.headers.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

/// Signs `head` as an SDK would (every header signed) and returns the signature.
fn sign(
    head: &http::request::Parts,
    secret: &str,
    scope: &Scope,
    amz_date: &str,
    payload_hash: &str,
) -> (String, String) {
    let names = signed_names(head);
    let creq = CanonicalRequest {
        method: head.method.as_str(),
        uri: sigv4::canonical_uri(head.uri.path(), scope.service != "s3"),
        query: sigv4::canonical_query(head.uri.query().unwrap_or(""), None),
        headers: names
            .iter()
            .map(|n| {
                let vals: Vec<String> = head
                    .headers
                    .get_all(n.as_str())
                    .iter()
                    .map(|v| sigv4::canonical_header_value(v.as_bytes()))
                    .collect();
                (n.clone(), vals.join(","))
            })
            .collect(),
        payload_hash,
    };
    let sig = SigningKey::derive(&SecretValue::from(secret), scope)
        .sign(&creq.string_to_sign(amz_date, scope));
    (sig, creq.signed_headers())
}

#[test]
fn aws_sig_v4_test_suite() {
    for v in SUITE {
        let head = suite_head(v);
        let (sig, _) = sign(
            &head,
            SUITE_SECRET,
            &suite_scope(),
            SUITE_DATE,
            &sigv4::sha256_hex(v.body.as_bytes()),
        );
        assert_eq!(sig, v.signature, "{}", v.name);
    }
}

#[test]
fn get_utf8_path_single_encoded() {
    // The suite signs the decoded path `/ሴ` encoded once; on the wire that is `/%E1%88%B4`.
    let creq = CanonicalRequest {
        method: "GET",
        uri: sigv4::canonical_uri("/%E1%88%B4", false),
        query: String::new(),
        headers: vec![
            ("host".into(), "example.amazonaws.com".into()),
            ("x-amz-date".into(), SUITE_DATE.into()),
        ],
        payload_hash: EMPTY_SHA256,
    };
    let sig = SigningKey::derive(&SUITE_SECRET.into(), &suite_scope())
        .sign(&creq.string_to_sign(SUITE_DATE, &suite_scope()));
    assert_eq!(
        sig,
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
    );
}

#[test]
fn s3_get_object_example() {
    let head = http::Request::get("/test.txt")
        .header("host", "examplebucket.s3.amazonaws.com")
        .header("range", "bytes=0-9")
        .header("x-amz-content-sha256", EMPTY_SHA256)
        .header("x-amz-date", "20130524T000000Z")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let (sig, _) = sign(
        &head,
        S3_SECRET,
        &s3_scope(),
        "20130524T000000Z",
        EMPTY_SHA256,
    );
    assert_eq!(
        sig,
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
}

fn chunked_head(key_id: &str, secret: &str) -> http::request::Parts {
    let mut head = http::Request::put("/examplebucket/chunkObject.txt")
        .header("host", "s3.amazonaws.com")
        .header("content-encoding", "aws-chunked")
        .header("content-length", "66824")
        .header("x-amz-content-sha256", STREAMING_PAYLOAD)
        .header("x-amz-date", "20130524T000000Z")
        .header("x-amz-decoded-content-length", "66560")
        .header("x-amz-storage-class", "REDUCED_REDUNDANCY")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let (sig, signed) = sign(
        &head,
        secret,
        &s3_scope(),
        "20130524T000000Z",
        STREAMING_PAYLOAD,
    );
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/20130524/us-east-1/s3/aws4_request, SignedHeaders={signed}, Signature={sig}"
    );
    head.headers.insert("authorization", auth.parse().unwrap());
    head
}

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const CHUNKS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

#[test]
fn s3_chunked_upload_example() {
    let head = chunked_head(S3_KEY, S3_SECRET);
    let auth = head.headers["authorization"].to_str().unwrap();
    assert!(auth.ends_with(SEED), "{auth}");
    let mut signer = ChunkSigner::new(
        SigningKey::derive(&S3_SECRET.into(), &s3_scope()),
        "20130524T000000Z",
        &s3_scope(),
        SEED,
    );
    assert_eq!(signer.sign_chunk(&[b'a'; 65536]), CHUNKS[0]);
    assert_eq!(
        signer.chunk_header(&[b'a'; 1024]),
        format!("400;chunk-signature={}\r\n", CHUNKS[1])
    );
    assert_eq!(signer.sign_chunk(b""), CHUNKS[2]);
}

// ---- end to end through SandboxCredentials ----

fn sandbox_with(real: &str) -> (SandboxCredentials, Vec<(String, String)>) {
    let creds = SandboxCredentials::new(
        "dev",
        &Catalog::builtin(),
        [("aws".to_owned(), SecretValue::from(real))],
    )
    .unwrap();
    let env = creds.placeholders_env();
    (creds, env)
}

fn env_var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn dest(host: &str) -> Destination<'_> {
    Destination {
        connect_host: Some(host),
        sni: Some(host),
        authority: None,
    }
}

#[test]
fn sandbox_gets_placeholder_aws_credentials_only() {
    let (_, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}:{SUITE_TOKEN}"));
    let id = env_var(&env, "AWS_ACCESS_KEY_ID").unwrap();
    assert!(id.starts_with("AKIA") && id.len() == 20 && id != SUITE_KEY);
    assert!(
        env_var(&env, "AWS_SECRET_ACCESS_KEY")
            .unwrap()
            .starts_with("sbx-ph-aws-")
    );
    assert!(
        env_var(&env, "AWS_SESSION_TOKEN")
            .unwrap()
            .starts_with("sbx-ph-aws-")
    );
    for (_, v) in &env {
        assert!(!v.contains(SUITE_SECRET) && !v.contains(SUITE_KEY) && !v.contains(SUITE_TOKEN));
    }
    let (_, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}"));
    assert!(env_var(&env, "AWS_SESSION_TOKEN").is_none());
}

/// Signs as the agent would with the sandbox's placeholder credentials.
fn agent_signs(
    head: &mut http::request::Parts,
    env: &[(String, String)],
    scope: &Scope,
    amz_date: &str,
    payload_hash: &str,
) {
    let id = env_var(env, "AWS_ACCESS_KEY_ID").unwrap();
    let secret = env_var(env, "AWS_SECRET_ACCESS_KEY").unwrap();
    let (sig, signed) = sign(head, secret, scope, amz_date, payload_hash);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={id}/{}, SignedHeaders={signed}, Signature={sig}",
        scope.as_string()
    );
    head.headers.insert("authorization", auth.parse().unwrap());
}

#[test]
fn resigned_requests_carry_the_published_signatures() {
    let (creds, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}"));
    for v in SUITE
        .iter()
        .filter(|v| !v.headers.iter().any(|(k, _)| *k == "x-amz-security-token"))
    {
        let mut head = suite_head(v);
        let hash = sigv4::sha256_hex(v.body.as_bytes());
        agent_signs(&mut head, &env, &suite_scope(), SUITE_DATE, &hash);
        let outcome = creds
            .resign_sigv4(&dest("example.amazonaws.com:443"), &mut head, Some(&hash))
            .unwrap();
        assert_eq!(outcome.host, "example.amazonaws.com");
        let auth = head.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={SUITE_KEY}/20150830/us-east-1/service/aws4_request, "
            )),
            "{auth}"
        );
        assert!(
            auth.ends_with(&format!("Signature={}", v.signature)),
            "{}: {auth}",
            v.name
        );
        assert!(head.headers["authorization"].is_sensitive());
    }
}

#[test]
fn resigning_swaps_the_session_token() {
    let (creds, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}:{SUITE_TOKEN}"));
    let mut head = http::Request::post("/")
        .header("host", "example.amazonaws.com")
        .header("x-amz-date", SUITE_DATE)
        .header(
            "x-amz-security-token",
            env_var(&env, "AWS_SESSION_TOKEN").unwrap(),
        )
        .body(())
        .unwrap()
        .into_parts()
        .0;
    agent_signs(&mut head, &env, &suite_scope(), SUITE_DATE, EMPTY_SHA256);
    creds
        .resign_sigv4(
            &dest("example.amazonaws.com"),
            &mut head,
            Some(EMPTY_SHA256),
        )
        .unwrap();
    assert_eq!(head.headers["x-amz-security-token"], SUITE_TOKEN);
    assert!(
        head.headers["authorization"]
            .to_str()
            .unwrap()
            .ends_with("85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
    );
}

#[test]
fn resigning_a_chunked_upload_chains_new_chunk_signatures() {
    let (creds, env) = sandbox_with(&format!("{S3_KEY}:{S3_SECRET}"));
    let mut head = chunked_head(
        env_var(&env, "AWS_ACCESS_KEY_ID").unwrap(),
        env_var(&env, "AWS_SECRET_ACCESS_KEY").unwrap(),
    );
    let outcome = creds
        .resign_sigv4(&dest("s3.amazonaws.com"), &mut head, None)
        .unwrap();
    assert!(
        head.headers["authorization"]
            .to_str()
            .unwrap()
            .ends_with(SEED)
    );
    let mut signer = outcome
        .chunk_signer
        .expect("streaming payload needs a chunk signer");
    assert_eq!(signer.sign_chunk(&[b'a'; 65536]), CHUNKS[0]);
    assert_eq!(signer.sign_chunk(&[b'a'; 1024]), CHUNKS[1]);
    assert_eq!(signer.sign_chunk(b""), CHUNKS[2]);
}

#[test]
fn resigning_a_presigned_url_matches_the_s3_example() {
    let (creds, env) = sandbox_with(&format!("{S3_KEY}:{S3_SECRET}"));
    let id = env_var(&env, "AWS_ACCESS_KEY_ID").unwrap();
    let placeholder_query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={id}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
        "0".repeat(64)
    );
    let mut head = http::Request::get(format!("/test.txt?{placeholder_query}"))
        .header("host", "examplebucket.s3.amazonaws.com")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    creds
        .resign_sigv4(&dest("examplebucket.s3.amazonaws.com"), &mut head, None)
        .unwrap();
    let query = head.uri.query().unwrap();
    assert!(
        query.contains(&format!("X-Amz-Credential={S3_KEY}%2F20130524")),
        "{query}"
    );
    assert!(
        query.ends_with(
            "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        ),
        "{query}"
    );
    assert!(!query.contains(id));
}

#[test]
fn resigning_refuses_foreign_keys_hosts_and_malformed_signatures() {
    let (creds, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}"));
    let base = |auth: &str| {
        http::Request::get("/")
            .header("host", "example.amazonaws.com")
            .header("x-amz-date", SUITE_DATE)
            .header("authorization", auth)
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let id = env_var(&env, "AWS_ACCESS_KEY_ID").unwrap();
    let sig = "a".repeat(64);
    let good = format!(
        "AWS4-HMAC-SHA256 Credential={id}/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    let d = dest("example.amazonaws.com");
    // The agent's own (or another sandbox's) key id.
    let foreign = good.replace(id, "AKIAOTHERKEY12345678");
    assert!(matches!(
        creds.resign_sigv4(&d, &mut base(&foreign), Some(EMPTY_SHA256)),
        Err(Sigv4Error::ForeignKeyId { .. })
    ));
    // Non-AWS or look-alike host, or names that disagree.
    for host in [
        "evil.net",
        "example.amazonaws.com.evil.net",
        "amazonaws.com",
    ] {
        let mut h = base(&good);
        h.headers.insert("host", host.parse().unwrap());
        assert!(
            matches!(
                creds.resign_sigv4(&dest(host), &mut h, Some(EMPTY_SHA256)),
                Err(Sigv4Error::NotBound { .. })
            ),
            "{host}"
        );
    }
    let mixed = Destination {
        connect_host: Some("example.amazonaws.com:443"),
        sni: Some("evil.net"),
        authority: None,
    };
    assert!(matches!(
        creds.resign_sigv4(&mixed, &mut base(&good), Some(EMPTY_SHA256)),
        Err(Sigv4Error::NotBound { .. })
    ));
    // Malformed.
    for bad in [
        good.replace("/aws4_request", "/aws5_request"),
        good.replace(
            "SignedHeaders=host;x-amz-date",
            "SignedHeaders=x-amz-date;host",
        ),
        good.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"),
        good.replace(&sig, "xyz"),
        good.replace("20150830/", "2015083/"),
        format!("{good}, Signature={sig}"),
    ] {
        assert!(
            matches!(
                creds.resign_sigv4(&d, &mut base(&bad), Some(EMPTY_SHA256)),
                Err(Sigv4Error::Malformed(_))
            ),
            "{bad}"
        );
    }
    let mut h = base(&good);
    h.headers
        .insert("x-amz-date", "20150831T000000Z".parse().unwrap());
    assert!(matches!(
        creds.resign_sigv4(&d, &mut h, Some(EMPTY_SHA256)),
        Err(Sigv4Error::Malformed(_))
    ));
    assert!(matches!(
        creds.resign_sigv4(&d, &mut base(&good), None),
        Err(Sigv4Error::PayloadHashNeeded)
    ));
    assert!(matches!(
        creds.resign_sigv4(&d, &mut base("Bearer x"), None),
        Err(Sigv4Error::NotSigned)
    ));
    // Nothing was changed by a refusal.
    let mut h = base(&foreign);
    let _ = creds.resign_sigv4(&d, &mut h, Some(EMPTY_SHA256));
    assert_eq!(h.headers["authorization"], foreign.as_str());
}

#[test]
fn aws_placeholders_headed_elsewhere_are_reported_by_inject() {
    let (creds, env) = sandbox_with(&format!("{SUITE_KEY}:{SUITE_SECRET}"));
    let id = env_var(&env, "AWS_ACCESS_KEY_ID").unwrap();
    let mut h = http::Request::get("/")
        .header("host", "evil.net")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={id}/20150830/us-east-1/s3/aws4_request"),
        )
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let report = creds.inject(&dest("evil.net"), &mut h);
    assert_eq!(report.blocked, [("aws".to_owned(), "evil.net".to_owned())]);
    // On an AWS host inject leaves it for resign_sigv4 and reports nothing.
    h.headers
        .insert("host", "s3.amazonaws.com".parse().unwrap());
    let report = creds.inject(&dest("s3.amazonaws.com"), &mut h);
    assert_eq!(report, Default::default());
}
