//! Errors never show a Postgres password.

use keel_store::{Store, StoreConfig};

async fn open_error(url: &str) -> (String, String) {
    let cfg = StoreConfig::Postgres {
        url: url.to_owned(),
    };
    assert!(!format!("{cfg:?}").contains("hunter2"), "{cfg:?}");
    let err = Store::open(&cfg).await.unwrap_err();
    (err.to_string(), format!("{err:?}"))
}

#[tokio::test]
async fn postgres_errors_redact_the_password() {
    // Port 1 on loopback: connection refused, at once.
    for url in [
        "postgres://keel:hunter2@127.0.0.1:1/keel",
        "postgresql://keel:hunter2@127.0.0.1:1/keel?password=hunter2&connect_timeout=2",
        "host=127.0.0.1 port=1 user=keel password=hunter2 dbname=keel",
        "host=127.0.0.1 port=1 user=keel password='hunter2 x' dbname=keel",
    ] {
        let (display, debug) = open_error(url).await;
        assert!(!display.contains("hunter2"), "{display}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(display.contains("***"), "{display}");
        assert!(display.contains("127.0.0.1"), "{display}");
        assert!(display.contains("connect"), "says what failed: {display}");
    }
}

#[tokio::test]
async fn bad_postgres_url_is_an_error_not_a_panic() {
    let (display, _) = open_error("postgres://keel:hunter2@127.0.0.1:notaport/keel").await;
    assert!(!display.contains("hunter2"), "{display}");
    assert!(display.contains("invalid"), "{display}");
}
