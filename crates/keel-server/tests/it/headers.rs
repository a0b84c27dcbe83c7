//! Every response names itself: a request id (the client's, if it sent
//! one) and which provider and upstream model served it.

use crate::{client, json_of, openai_chat, setup};

#[tokio::test]
async fn request_id_is_generated_or_echoed_and_the_server_is_named() {
    let s = setup().await;
    let resp = s.openai(&openai_chat("via-anthropic", "hi"), &[]).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(resp.headers()["x-keel-provider"], "up-anthropic");
    assert_eq!(resp.headers()["x-keel-model"], "upstream-anthropic-model");

    let resp = s
        .openai(
            &openai_chat("sim", "hi"),
            &[("x-request-id", "my-trace-42")],
        )
        .await;
    assert_eq!(resp.headers()["x-request-id"], "my-trace-42");

    // Errors carry it too.
    let resp = s
        .openai(&openai_chat("nope", "hi"), &[("x-request-id", "err-7")])
        .await;
    assert_eq!(resp.headers()["x-request-id"], "err-7");
    json_of(resp).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let s = setup().await;
    let resp = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(v["routable_models"], 3, "{v}");
    let keyless = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keyless")
        .unwrap();
    assert_eq!(keyless["available"], false);

    let only_keyless = keel_testkit::keel(
        "[providers.k]\nkind = \"openai\"\napi_key = { env = \"UNSET\" }\n[models.m]\ntargets = [{ provider = \"k\", model = \"x\" }]\n",
    )
    .await;
    let resp = client()
        .get(format!("{}/readyz", only_keyless.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}
