use keel_config::FaultRule;
use keel_protocol::chat::{
    FinishReason, Message, ResponseFormat, Role, StreamEvent, Tool, ToolChoice,
};
use serde_json::{Value, json};

use super::*;

fn sim(seed: u64, faults: &[(f64, &str)]) -> Simulator {
    Simulator::new(&SimConfig {
        seed,
        script: None,
        faults: faults
            .iter()
            .map(|(rate, fault)| FaultRule {
                rate: *rate,
                fault: (*fault).to_owned(),
            })
            .collect(),
    })
    .unwrap()
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        model: "sim-model".into(),
        system: vec!["be brief".into()],
        messages: vec![Message::text(Role::User, text)],
        ..ChatRequest::default()
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: None,
        parameters: json!({
            "type": "object",
            "required": ["city", "days"],
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}
        }),
    }
}

/// Concatenated text and per-call argument deltas of a stream.
fn replay(events: &[StreamEvent]) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut args: Vec<String> = Vec::new();
    for e in events {
        match e {
            StreamEvent::TextDelta(t) => text.push_str(t),
            StreamEvent::ToolCallStart { .. } => args.push(String::new()),
            StreamEvent::ToolCallDelta { index, arguments } => {
                args[*index as usize].push_str(arguments)
            }
            _ => {}
        }
    }
    (text, args)
}

#[test]
fn same_seed_same_plans_and_rate_faults_follow_the_seed() {
    let rules = [(0.3, "status=503"), (0.3, "latency=10ms")];
    let run = |seed| {
        let s = sim(seed, &rules);
        (0..64)
            .map(|i| {
                let mut p = s.plan(&ask(&format!("question {}", i % 5)), None).unwrap();
                p.response.created = 0;
                p
            })
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    let b = run(2);
    let faults = |plans: &[Plan]| plans.iter().map(|p| p.fault.clone()).collect::<Vec<_>>();
    assert_ne!(faults(&a), faults(&b));
    let statuses = a
        .iter()
        .filter(|p| matches!(p.fault.outcome, Outcome::Status { .. }))
        .count();
    assert!(
        (5..40).contains(&statuses),
        "rate 0.3 of 64 gave {statuses}"
    );
}

#[test]
fn identical_requests_get_identical_replies_whatever_the_order() {
    let s = sim(9, &[]);
    let first = s.plan(&ask("hello there"), None).unwrap().response;
    s.plan(&ask("something else"), None).unwrap();
    let mut streamed = ask("hello there");
    streamed.stream = true;
    let again = s.plan(&streamed, None).unwrap().response;
    assert_eq!(first.text, again.text);
    assert_ne!(first.id, again.id);
    assert_ne!(
        sim(10, &[])
            .plan(&ask("hello there"), None)
            .unwrap()
            .response
            .text,
        first.text
    );
    assert!(
        first
            .text
            .starts_with("Simulated reply to: \"hello there\". "),
        "{}",
        first.text
    );
    assert_eq!(first.finish_reason, FinishReason::Stop);
    assert_eq!(first.usage.input_tokens, estimate("be brief\nhello there"));
    assert_eq!(first.usage.output_tokens, estimate(&first.text));
}

#[test]
fn header_beats_config_and_bad_specs_are_errors() {
    let s = sim(0, &[(1.0, "status=500")]);
    assert!(matches!(
        s.plan(&ask("x"), None).unwrap().fault.outcome,
        Outcome::Status { status: 500, .. }
    ));
    assert_eq!(s.plan(&ask("x"), Some("")).unwrap().fault, Fault::default());
    assert_eq!(
        s.plan(&ask("x"), Some("hang")).unwrap().fault.outcome,
        Outcome::Hang
    );
    let err = s.plan(&ask("x"), Some("latency=1ms,boom")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid x-keel-sim-fault: `boom`: unknown fault"
    );
    let stats = s.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.faults.get("status"), Some(&1));
    assert_eq!(stats.faults.get("hang"), Some(&1));
}

#[test]
fn config_rules_are_validated_with_their_index() {
    let bad = |faults: &[(f64, &str)]| {
        Simulator::new(&SimConfig {
            faults: faults
                .iter()
                .map(|(rate, f)| FaultRule {
                    rate: *rate,
                    fault: (*f).into(),
                })
                .collect(),
            ..SimConfig::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        bad(&[(0.1, "reset"), (0.1, "stat=1")]),
        "sim faults[1]: `stat=1`: unknown fault"
    );
    assert_eq!(
        bad(&[(1.5, "reset")]),
        "sim faults[0]: rate 1.5 is not a probability in [0, 1]"
    );
    assert_eq!(
        bad(&[(f64::NAN, "reset")]),
        "sim faults[0]: rate NaN is not a probability in [0, 1]"
    );
}

#[test]
fn script_rules_answer_and_carry_faults_and_usage() {
    let path = std::env::temp_dir().join(format!("keel-sim-script-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"
        [[rule]]
        contains = "weather"
        tool_call = { name = "get_weather", arguments = { city = "Oslo" } }
        fault = "gap=5ms"

        [[rule]]
        regex = '^order \d+$'
        json = { status = "shipped" }
        usage = { input_tokens = 3, output_tokens = 4 }
        "#,
    )
    .unwrap();
    let s = Simulator::new(&SimConfig {
        script: Some(path.clone()),
        ..SimConfig::default()
    })
    .unwrap();
    let weather = s.plan(&ask("WEATHER in Oslo?"), None).unwrap();
    assert_eq!(weather.response.tool_calls[0].name, "get_weather");
    assert_eq!(
        weather.response.tool_calls[0].arguments,
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(weather.response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(weather.fault.gap, std::time::Duration::from_millis(5));
    assert_eq!(
        s.plan(&ask("weather"), Some("")).unwrap().fault,
        Fault::default()
    );
    let order = s.plan(&ask("order 42"), None).unwrap().response;
    assert_eq!(order.text, r#"{"status":"shipped"}"#);
    assert_eq!(
        (order.usage.input_tokens, order.usage.output_tokens),
        (3, 4)
    );
    assert!(
        s.plan(&ask("order 42!"), None)
            .unwrap()
            .response
            .text
            .starts_with("Simulated")
    );

    std::fs::write(
        &path,
        "[[rule]]\nreply = 'a'\n[[rule]]\nregex = '['\nreply = 'b'\n",
    )
    .unwrap();
    let err = Simulator::new(&SimConfig {
        script: Some(path.clone()),
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("rule[1]: regex"), "{err}");
    std::fs::write(&path, "[[rule]]\nreply = 'a'\nreplies = 'b'\n").unwrap();
    let err = Simulator::new(&SimConfig {
        script: Some(path.clone()),
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `replies`"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn tools_are_called_by_default_and_results_answered() {
    let s = sim(3, &[]);
    let mut req = ask("what's it like in Paris?");
    req.tools = vec![
        Tool {
            name: "noop".into(),
            description: None,
            parameters: json!({"type": "object"}),
        },
        weather_tool(),
    ];
    let first = s.plan(&req, None).unwrap().response;
    assert_eq!(first.tool_calls[0].name, "noop");

    req.tool_choice = Some(ToolChoice::Tool("get_weather".into()));
    let call = s.plan(&req, None).unwrap().response;
    assert_eq!(call.finish_reason, FinishReason::ToolCalls);
    assert_eq!(call.text, "");
    let args: Value = serde_json::from_str(&call.tool_calls[0].arguments).unwrap();
    assert!(
        args["city"].is_string() && args["days"].as_i64().unwrap() >= 1,
        "{args}"
    );
    assert_eq!(
        call.usage.output_tokens,
        estimate(&call.tool_calls[0].arguments)
    );

    req.tool_choice = Some(ToolChoice::None);
    assert!(s.plan(&req, None).unwrap().response.tool_calls.is_empty());

    req.tool_choice = None;
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.tool_calls = call.tool_calls.clone();
    let mut result = Message::text(Role::Tool, "18C and sunny");
    result.tool_call_id = Some(call.tool_calls[0].id.clone());
    req.messages.extend([assistant, result]);
    let answer = s.plan(&req, None).unwrap().response;
    assert!(answer.tool_calls.is_empty());
    assert!(
        answer
            .text
            .starts_with("Simulated reply using the tool result: \"18C and sunny\"."),
        "{}",
        answer.text
    );
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "age", "tags"],
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "role": {"enum": ["admin", "user"]}
        }
    })
}

fn json_request() -> ChatRequest {
    let mut req = ask("make a person");
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "person".into(),
        schema: person_schema(),
        strict: Some(true),
    });
    req
}

#[test]
fn json_schema_replies_conform_and_violations_do_not() {
    let s = sim(5, &[]);
    let good: Value =
        serde_json::from_str(&s.plan(&json_request(), None).unwrap().response.text).unwrap();
    assert!(good["name"].is_string(), "{good}");
    assert!(good["age"].is_i64(), "{good}");
    assert!(
        good["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string),
        "{good}"
    );
    assert!(["admin", "user"].contains(&good["role"].as_str().unwrap()));

    let bad = s.plan(&json_request(), Some("schema-violation")).unwrap();
    let bad: Value = serde_json::from_str(&bad.response.text).unwrap();
    let required_missing = ["name", "age", "tags"].iter().any(|k| bad.get(k).is_none());
    assert!(required_missing, "{bad}");
    assert!(!bad["age"].is_i64(), "{bad}");

    let mut object = ask("x");
    object.response_format = Some(ResponseFormat::JsonObject);
    let reply = s.plan(&object, None).unwrap().response.text;
    assert!(
        serde_json::from_str::<Value>(&reply).unwrap().is_object(),
        "{reply}"
    );
    let broken = s
        .plan(&object, Some("schema-violation"))
        .unwrap()
        .response
        .text;
    assert!(
        !serde_json::from_str::<Value>(&broken).unwrap().is_object(),
        "{broken}"
    );

    let mut tool = ask("weather?");
    tool.tools = vec![weather_tool()];
    let args = &s
        .plan(&tool, Some("schema-violation"))
        .unwrap()
        .response
        .tool_calls[0]
        .arguments;
    let args: Value = serde_json::from_str(args).unwrap();
    assert!(
        args.get("city").is_none() && !args["days"].is_i64(),
        "{args}"
    );
    assert_eq!(s.stats().faults.get("schema-violation"), Some(&3));
}

#[test]
fn stream_deltas_rebuild_the_reply() {
    let s = sim(11, &[]);
    let mut tool = ask("weather? é ü 日本");
    tool.tools = vec![weather_tool()];
    for req in [ask("tell me a story about é ü 日本"), json_request(), tool] {
        let plan = s.plan(&req, None).unwrap();
        let events = plan.events();
        let (text, args) = replay(&events);
        assert_eq!(text, plan.response.text);
        let want: Vec<String> = plan
            .response
            .tool_calls
            .iter()
            .map(|c| c.arguments.clone())
            .collect();
        assert_eq!(args, want);
        assert!(matches!(events[0], StreamEvent::Start { .. }));
        let deltas = events.iter().filter(|e| {
            matches!(
                e,
                StreamEvent::TextDelta(_) | StreamEvent::ToolCallDelta { .. }
            )
        });
        assert!(deltas.count() >= 2, "{events:?}");
        let n = events.len();
        assert_eq!(
            events[n - 3],
            StreamEvent::Finish(plan.response.finish_reason)
        );
        assert_eq!(events[n - 2], StreamEvent::Usage(plan.response.usage));
        assert_eq!(events[n - 1], StreamEvent::Done);
    }
}

#[test]
fn max_tokens_and_stop_sequences_cut_the_reply() {
    let s = sim(1, &[]);
    let full = s
        .plan(&ask("a fairly long question for the simulator"), None)
        .unwrap()
        .response;
    let mut req = ask("a fairly long question for the simulator");
    req.max_tokens = Some(5);
    let cut = s.plan(&req, None).unwrap().response;
    assert_eq!(cut.finish_reason, FinishReason::Length);
    assert!(full.text.starts_with(&cut.text) && cut.text.len() < full.text.len());
    assert!(
        estimate(&cut.text) <= 5 && estimate(&cut.text) >= 3,
        "{:?}",
        cut.text
    );
    assert_eq!(cut.usage.output_tokens, estimate(&cut.text));

    req.max_tokens = Some(1000);
    assert_eq!(
        s.plan(&req, None).unwrap().response.finish_reason,
        FinishReason::Stop
    );

    let mut stop = ask("a fairly long question for the simulator");
    stop.stop = vec!["question".into()];
    let stopped = s.plan(&stop, None).unwrap().response;
    assert_eq!(stopped.text, "Simulated reply to: \"a fairly long ");
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
}

#[test]
fn embeddings_are_deterministic_unit_vectors() {
    let s = sim(4, &[]);
    let req = |dims| EmbeddingsRequest {
        model: "embed".into(),
        input: vec!["alpha".into(), "beta".into(), "alpha".into()],
        dimensions: dims,
        encoding_format: None,
        user: None,
    };
    let plan = s.embed(&req(None), None).unwrap();
    let data = &plan.response.data;
    assert_eq!(data.len(), 3);
    assert_eq!(data[0].len(), 16);
    assert_eq!(data[0], data[2]);
    assert_ne!(data[0], data[1]);
    for v in data {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_eq!(plan.response.input_tokens, 5); // 2 + 1 + 2
    assert_eq!(
        s.embed(&req(Some(3)), None).unwrap().response.data[1].len(),
        3
    );
    assert_ne!(
        sim(5, &[]).embed(&req(None), None).unwrap().response.data,
        *data
    );
    assert!(matches!(
        s.embed(&req(Some(0)), None),
        Err(SimError::InvalidRequest(_))
    ));
    assert!(matches!(
        s.embed(&req(Some(1 << 20)), None),
        Err(SimError::InvalidRequest(_))
    ));
    assert_eq!(
        s.embed(&req(None), Some("status=429"))
            .unwrap()
            .fault
            .outcome,
        Outcome::Status {
            status: 429,
            retry_after: None
        }
    );
}
