//! keel's own defences: bodies nested too deep are refused before parsing,
//! oversized headers get 431, and no CORS header is ever sent (CORS is
//! off: browsers may not call keel from other origins).

use crate::{client, json_of, setup};

#[tokio::test]
async fn deeply_nested_bodies_are_refused_before_parsing() {
    let s = setup().await;
    let deep = format!(
        r#"{{"model": "sim", "messages": [{{"role": "user", "content": "hi"}}], "extra": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let resp = client()
            .post(s.url(path))
            .header("content-type", "application/json")
            .body(deep.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body = json_of(resp).await.to_string();
        assert!(body.contains("nests 100001 levels"), "{body}");
    }
    assert_eq!(s.sim.stats().requests, 0);
}

#[tokio::test]
async fn oversized_headers_get_431_and_no_cors_header_is_sent() {
    let s = setup().await;
    let resp = client()
        .post(s.url("/v1/chat/completions"))
        .header("x-padding", "a".repeat(600 * 1024))
        .body("{}")
        .send()
        .await;
    // hyper answers 431 (or closes the connection) without reaching keel.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 431);
    }
    let preflight = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/chat/completions"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success(), "{}", preflight.status());
    assert!(
        preflight
            .headers()
            .keys()
            .all(|h| !h.as_str().starts_with("access-control-")),
        "{:?}",
        preflight.headers()
    );
    let resp = crate::post_json(
        &s.keel.url(),
        "/v1/chat/completions",
        &crate::openai_chat("sim", "hi"),
        &[("origin", "https://evil.example")],
    )
    .await
    .unwrap();
    assert!(
        resp.headers()
            .keys()
            .all(|h| !h.as_str().starts_with("access-control-"))
    );
}

/// `[server.tls]`: HTTPS with the configured certificate; plain HTTP to the
/// same port gets no answer.
#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_pem = cert.cert.pem();
    let cert_path = crate::write_file(&dir, "cert.pem", &cert_pem);
    let key_path = crate::write_file(&dir, "key.pem", &cert.key_pair.serialize_pem());
    let keel = keel_testkit::keel(&format!(
        r#"
        [server.tls]
        cert = "{cert_path}"
        key = "{key_path}"
        [providers.sim]
        kind = "sim"
        [models.sim]
        targets = [{{ provider = "sim", model = "m" }}]
        "#
    ))
    .await;
    let https = keel.url().replace("http://", "https://");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = trusting
        .post(format!("{https}/v1/chat/completions"))
        .json(&crate::openai_chat("sim", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(json_of(resp).await["choices"][0]["message"]["content"].is_string());
    // A client that does not trust the certificate, and plain HTTP, fail.
    assert!(
        client()
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );
    assert!(
        client()
            .get(format!("{}/healthz", keel.url()))
            .send()
            .await
            .is_err()
    );
}
