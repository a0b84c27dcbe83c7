//! OTLP trace export against an in-process OTLP/HTTP receiver on 127.0.0.1, and `traceparent`
//! parsing.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use keel_telemetry::trace::{
    AttrValue, SpanData, SpanKind, TraceConfig, TraceContext, Tracer, attr, new_span_id,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message as _;
use tokio::sync::mpsc;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const REMOTE_TRACE_ID: [u8; 16] = [
    0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c,
];
const REMOTE_PARENT: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];

/// OTLP span flags: the parent's remoteness is known / the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// One POST the receiver accepted.
struct Received {
    headers: HeaderMap,
    request: ExportTraceServiceRequest,
}

/// An OTLP/HTTP protobuf receiver: decodes each `POST /v1/traces` and hands it to the test.
struct Collector {
    endpoint: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Collector {
    async fn start() -> Collector {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector {
            endpoint: format!("http://{addr}/v1/traces"),
            rx,
        }
    }

    /// Everything received so far. After a successful flush that is everything exported: the
    /// receiver queues a request before it answers it.
    fn drain(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }
}

async fn receive(
    State(tx): State<mpsc::UnboundedSender<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let protobuf = [(header::CONTENT_TYPE, "application/x-protobuf")];
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) != Some(b"application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, protobuf, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, protobuf, Vec::new());
    };
    tx.send(Received { headers, request }).unwrap();
    let response = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, protobuf, response)
}

fn config(endpoint: &str, timeout: Duration) -> TraceConfig {
    TraceConfig {
        endpoint: endpoint.to_owned(),
        service_name: "keel-test".to_owned(),
        // `%41` must reach the collector as is (no URL-decoding of configured values).
        headers: vec![("x-api-key".to_owned(), "k%41y-secret".to_owned())],
        timeout,
    }
}

/// `force_flush` blocks, so async code runs it on the blocking pool.
async fn flush(tracer: &Tracer) -> bool {
    let tracer = tracer.clone();
    tokio::task::spawn_blocking(move || tracer.force_flush())
        .await
        .unwrap()
}

fn at(nanos_after_t0: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789) + Duration::from_nanos(nanos_after_t0)
}

fn nanos(time: SystemTime) -> u64 {
    u64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

fn leaf(name: &str, kind: SpanKind, start: u64, end: u64) -> SpanData {
    SpanData {
        span_id: new_span_id(),
        name: name.to_owned(),
        kind,
        start: at(start),
        end: at(end),
        attributes: Vec::new(),
        error: None,
        children: Vec::new(),
    }
}

/// A request the way the gateway records it: decode, route, a failed attempt, a retry.
fn request_tree() -> SpanData {
    let decode = leaf("decode", SpanKind::Internal, 1_001, 52_003);
    let route = leaf("route", SpanKind::Internal, 60_007, 61_009);
    let mut failed = leaf("chat sim-model", SpanKind::Client, 70_011, 5_000_013);
    failed.attributes = vec![
        (attr::GEN_AI_OPERATION_NAME, "chat".into()),
        (attr::GEN_AI_PROVIDER_NAME, "sim".into()),
        (attr::GEN_AI_SYSTEM, "sim".into()),
        (attr::GEN_AI_REQUEST_MODEL, "sim-model".into()),
        (attr::SERVER_ADDRESS, "127.0.0.1".into()),
        (attr::SERVER_PORT, 9001_i64.into()),
        (attr::HTTP_RESPONSE_STATUS_CODE, 503_i64.into()),
        (attr::ERROR_TYPE, "503".into()),
    ];
    failed.error = Some("upstream answered 503".to_owned());
    let mut retried = leaf("chat sim-model", SpanKind::Client, 5_100_017, 9_000_019);
    retried.attributes = vec![
        (attr::GEN_AI_OPERATION_NAME, "chat".into()),
        (attr::GEN_AI_SYSTEM, "sim".into()),
        (attr::SERVER_ADDRESS, "127.0.0.1".into()),
        (attr::HTTP_RESPONSE_STATUS_CODE, 200_i64.into()),
    ];
    SpanData {
        span_id: new_span_id(),
        name: "chat gpt-4o".to_owned(),
        kind: SpanKind::Server,
        start: at(0),
        end: at(9_500_023),
        attributes: vec![
            (attr::GEN_AI_OPERATION_NAME, "chat".into()),
            (attr::GEN_AI_REQUEST_MODEL, "gpt-4o".into()),
            (attr::GEN_AI_RESPONSE_MODEL, "sim-model".into()),
            (attr::GEN_AI_USAGE_INPUT_TOKENS, 42_i64.into()),
            (attr::GEN_AI_USAGE_OUTPUT_TOKENS, 7_i64.into()),
            (
                attr::GEN_AI_RESPONSE_FINISH_REASONS,
                AttrValue::StrList(vec!["stop".to_owned()]),
            ),
            ("gen_ai.request.temperature", 0.25_f64.into()),
            ("keel.cache.hit", false.into()),
        ],
        error: None,
        children: vec![decode, route, failed, retried],
    }
}

fn all_spans(received: &[Received]) -> Vec<Span> {
    received
        .iter()
        .flat_map(|r| &r.request.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> &'a Value {
    let found = attributes.iter().find(|kv| kv.key == key);
    let value = found
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    value.unwrap_or_else(|| panic!("attribute {key} missing"))
}

fn string(s: &str) -> Value {
    Value::StringValue(s.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_the_span_tree_under_the_remote_parent() {
    let mut collector = Collector::start().await;
    // Built and used on a tokio worker: neither must block or panic here.
    let tracer = Tracer::new(&config(&collector.endpoint, Duration::from_secs(5))).unwrap();
    let ctx = TraceContext::from_traceparent(TRACEPARENT).unwrap();
    let tree = request_tree();
    tracer.export(&ctx, tree.clone());
    assert!(flush(&tracer).await, "the flush reached the collector");

    let received = collector.drain();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(r.headers["x-api-key"], "k%41y-secret");
        for rs in &r.request.resource_spans {
            let resource = rs.resource.as_ref().unwrap();
            assert_eq!(
                attribute(&resource.attributes, "service.name"),
                &string("keel-test")
            );
            for ss in &rs.scope_spans {
                assert_eq!(ss.scope.as_ref().unwrap().name, "keel");
            }
        }
    }
    let spans = all_spans(&received);
    assert_eq!(spans.len(), 5);
    for span in &spans {
        assert_eq!(span.trace_id, REMOTE_TRACE_ID);
    }

    // Every span exactly as recorded: id, parent, name, kind, timestamps to the nanosecond.
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let check = |expected: &SpanData, parent: &[u8], kind: span::SpanKind| {
        let got = by_id[expected.span_id.as_slice()];
        assert_eq!(got.name, expected.name);
        assert_eq!(got.parent_span_id, parent, "{}", expected.name);
        assert_eq!(got.kind, kind as i32, "{}", expected.name);
        assert_eq!(got.start_time_unix_nano, nanos(expected.start));
        assert_eq!(got.end_time_unix_nano, nanos(expected.end));
        got
    };
    let root = check(&tree, &REMOTE_PARENT, span::SpanKind::Server);
    assert_eq!(
        root.flags & (HAS_IS_REMOTE | IS_REMOTE),
        HAS_IS_REMOTE | IS_REMOTE
    );
    let [decode, route, failed, retried] = &tree.children[..] else {
        panic!("four children")
    };
    for phase in [decode, route] {
        let got = check(phase, &tree.span_id, span::SpanKind::Internal);
        assert_eq!(got.flags & (HAS_IS_REMOTE | IS_REMOTE), HAS_IS_REMOTE);
    }
    let failed = check(failed, &tree.span_id, span::SpanKind::Client);
    let retried = check(retried, &tree.span_id, span::SpanKind::Client);

    // Attributes keep their types.
    let a = &root.attributes;
    assert_eq!(attribute(a, "gen_ai.operation.name"), &string("chat"));
    assert_eq!(attribute(a, "gen_ai.request.model"), &string("gpt-4o"));
    assert_eq!(attribute(a, "gen_ai.response.model"), &string("sim-model"));
    assert_eq!(
        attribute(a, "gen_ai.usage.input_tokens"),
        &Value::IntValue(42)
    );
    assert_eq!(
        attribute(a, "gen_ai.usage.output_tokens"),
        &Value::IntValue(7)
    );
    assert_eq!(
        attribute(a, "gen_ai.request.temperature"),
        &Value::DoubleValue(0.25)
    );
    assert_eq!(attribute(a, "keel.cache.hit"), &Value::BoolValue(false));
    let stop = AnyValue {
        value: Some(string("stop")),
    };
    assert_eq!(
        attribute(a, "gen_ai.response.finish_reasons"),
        &Value::ArrayValue(ArrayValue { values: vec![stop] })
    );
    assert_eq!(
        attribute(&failed.attributes, "gen_ai.system"),
        &string("sim")
    );
    assert_eq!(
        attribute(&failed.attributes, "gen_ai.provider.name"),
        &string("sim")
    );
    assert_eq!(
        attribute(&failed.attributes, "server.address"),
        &string("127.0.0.1")
    );
    assert_eq!(
        attribute(&failed.attributes, "server.port"),
        &Value::IntValue(9001)
    );
    assert_eq!(
        attribute(&failed.attributes, "http.response.status_code"),
        &Value::IntValue(503)
    );
    assert_eq!(
        attribute(&retried.attributes, "http.response.status_code"),
        &Value::IntValue(200)
    );

    // Only the failed attempt carries an error status.
    let failed_status = failed.status.as_ref().unwrap();
    assert_eq!(failed_status.code, status::StatusCode::Error as i32);
    assert_eq!(failed_status.message, "upstream answered 503");
    for ok in [root, retried] {
        let code = ok.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(code, status::StatusCode::Unset as i32, "{}", ok.name);
    }
}

#[tokio::test]
async fn an_unsampled_request_exports_nothing() {
    // A current-thread runtime this time: the receiver and the tracer share one thread.
    let mut collector = Collector::start().await;
    let tracer = Tracer::new(&config(&collector.endpoint, Duration::from_secs(5))).unwrap();
    let unsampled =
        TraceContext::from_traceparent("00-11111111111111111111111111111111-2222222222222222-00")
            .unwrap();
    assert!(!unsampled.sampled);
    tracer.export(&unsampled, request_tree());
    // A sampled marker trace, exported after it: if the unsampled one were queued it would
    // arrive with or before the marker.
    let marker = TraceContext::new_root();
    tracer.export(&marker, leaf("marker", SpanKind::Server, 0, 1));
    assert!(flush(&tracer).await);

    let spans = all_spans(&collector.drain());
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "marker");
    assert_eq!(spans[0].trace_id, marker.trace_id);
    assert!(
        spans[0].parent_span_id.is_empty(),
        "a new root has no parent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_flushes_and_later_exports_are_dropped() {
    let mut collector = Collector::start().await;
    let tracer = Tracer::new(&config(&collector.endpoint, Duration::from_secs(5))).unwrap();
    let ctx = TraceContext::new_root();
    tracer.export(&ctx, leaf("before shutdown", SpanKind::Server, 0, 1));
    let shut = tracer.clone();
    tokio::task::spawn_blocking(move || shut.shutdown())
        .await
        .unwrap();
    let spans = all_spans(&collector.drain());
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "before shutdown");

    tracer.export(&ctx, leaf("after shutdown", SpanKind::Server, 0, 1));
    assert!(!flush(&tracer).await);
    assert!(collector.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_collector_never_blocks_export() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let tracer = Tracer::new(&config(&endpoint, Duration::from_secs(1))).unwrap();

    // The flush fails, after the exporter's retries, within the timeout (bounds here are
    // generous: the machine may be loaded).
    tracer.export(&TraceContext::new_root(), request_tree());
    let started = Instant::now();
    assert!(!flush(&tracer).await, "nothing can reach a closed port");
    let flushed_in = started.elapsed();
    assert!(
        flushed_in < Duration::from_secs(20),
        "flush took {flushed_in:?}"
    );

    // Far more than the queue holds (2048 spans) while the batch thread is stuck on a dead
    // collector: export only enqueues, and drops what does not fit.
    let started = Instant::now();
    for _ in 0..1_000 {
        tracer.export(&TraceContext::new_root(), request_tree());
    }
    let exported_in = started.elapsed();
    assert!(
        exported_in < Duration::from_secs(5),
        "export took {exported_in:?}"
    );

    // Shutdown gives up at the timeout even with a backlog.
    let shut = tracer.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || shut.shutdown())
        .await
        .unwrap();
    let shut_in = started.elapsed();
    assert!(
        shut_in < Duration::from_secs(20),
        "shutdown took {shut_in:?}"
    );
}

#[test]
fn invalid_configs_are_rejected_without_leaking_header_values() {
    let base = config("http://127.0.0.1:4318/v1/traces", Duration::from_secs(1));

    for endpoint in ["not a url", "/v1/traces", "ftp://127.0.0.1/v1/traces"] {
        let cfg = TraceConfig {
            endpoint: endpoint.to_owned(),
            ..base.clone()
        };
        let err = Tracer::new(&cfg).unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
    }

    let bad_value = TraceConfig {
        headers: vec![("authorization".to_owned(), "Bearer sk-123\n".to_owned())],
        ..base.clone()
    };
    let err = Tracer::new(&bad_value).unwrap_err().to_string();
    assert!(
        err.contains("authorization") && !err.contains("sk-123"),
        "{err}"
    );

    let bad_name = TraceConfig {
        headers: vec![("Authorization: Bearer sk-123".to_owned(), "x".to_owned())],
        ..base.clone()
    };
    let err = Tracer::new(&bad_name).unwrap_err().to_string();
    assert!(!err.contains("sk-123"), "{err}");

    let debug = format!("{base:?}");
    assert!(
        debug.contains("x-api-key") && !debug.contains("secret"),
        "{debug}"
    );
}

#[test]
fn traceparent_parsing_follows_w3c_level_1() {
    let ctx = TraceContext::from_traceparent(TRACEPARENT).unwrap();
    assert_eq!(ctx.trace_id, REMOTE_TRACE_ID);
    assert_eq!(ctx.parent_span_id, Some(REMOTE_PARENT));
    assert!(ctx.sampled);
    assert_eq!(ctx.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    // Surrounding whitespace is the header's, not the value's.
    assert_eq!(
        TraceContext::from_traceparent(&format!(" {TRACEPARENT}\t")),
        Some(ctx)
    );
    // Only the sampled bit of the flags matters.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert!(!TraceContext::from_traceparent(unsampled).unwrap().sampled);
    let other_flags = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09";
    assert!(TraceContext::from_traceparent(other_flags).unwrap().sampled);

    // A later version may append fields; its first four parse as version 00.
    let future = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds";
    assert_eq!(TraceContext::from_traceparent(future), Some(ctx));
    let future_plain = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(TraceContext::from_traceparent(future_plain), Some(ctx));

    let invalid = [
        "",
        // uppercase hex, anywhere
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
        "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // all-zero ids
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        // wrong lengths
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c0-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // version ff is forbidden
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // a future version's extra fields start with a dash
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.extra",
        // wrong separators, non-hex
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
    ];
    for value in invalid {
        assert_eq!(TraceContext::from_traceparent(value), None, "{value:?}");
    }
}

#[test]
fn outgoing_traceparent_names_the_given_span() {
    let ctx = TraceContext::from_traceparent(TRACEPARENT).unwrap();
    let span_id = [0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff];
    let sent = ctx.traceparent(span_id);
    assert_eq!(
        sent,
        "00-0af7651916cd43dd8448eb211c80319c-00010203fcfdfeff-01"
    );
    let upstream = TraceContext::from_traceparent(&sent).unwrap();
    assert_eq!(upstream.trace_id, ctx.trace_id);
    assert_eq!(upstream.parent_span_id, Some(span_id));

    let unsampled = TraceContext {
        sampled: false,
        ..ctx
    };
    assert!(unsampled.traceparent(span_id).ends_with("-00"));

    let root = TraceContext::new_root();
    assert!(root.sampled && root.parent_span_id.is_none());
    assert_ne!(root.trace_id, [0; 16]);
    assert_ne!(root.trace_id, TraceContext::new_root().trace_id);
    assert_eq!(root.trace_id_hex().len(), 32);
    assert_ne!(new_span_id(), [0; 8]);
}
