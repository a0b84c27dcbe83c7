//! Workflows end to end: extract → classify → summarise over a scripted
//! simulator, where classify fails validation once and recovers; a variant
//! where it fails for good and summarise never runs; a skipped step.

use serde_json::{Value, json};

use crate::client;

const SCRIPT: &str = r#"
[[rule]]
regex = '(?s)previous reply was invalid.*/category'
json = { category = "billing" }
[[rule]]
contains = "EXTRACT:"
json = { customer = "Ada", issue = "charged twice" }
[[rule]]
contains = "CLASSIFY:"
json = { category = "nonsense" }
[[rule]]
contains = "SUMMARISE:"
reply = "Ada: billing problem, charged twice."
"#;

struct Setup {
    keel: keel_testkit::Running,
    sim: keel_sim::Simulator,
    _dir: tempfile::TempDir,
    _server: keel_testkit::Running,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| crate::write_file(&dir, name, text);
    let script = write("script.toml", SCRIPT);
    let extract = write("extract.j2", "EXTRACT: {{ text }}");
    let classify = write("classify.j2", "CLASSIFY: {{ issue }}");
    let never = write("never.j2", "CLASSIFY-NEVER: {{ issue }}");
    let summarise = write("summarise.j2", "SUMMARISE: {{ customer }} / {{ category }}");
    let (server, sim) = crate::scripted_sim(&script).await;
    let config = format!(
        r#"
        [providers.up]
        kind = "openai"
        base_url = "{url}/v1"
        [models.m]
        targets = [{{ provider = "up", model = "x" }}]

        [functions.extract]
        model = "m"
        user = "{extract}"
        output_schema = {{ type = "object", required = ["customer", "issue"], properties = {{ customer = {{ type = "string" }}, issue = {{ type = "string" }} }} }}
        [functions.classify]
        model = "m"
        user = "{classify}"
        max_reasks = 1
        output_schema = {{ type = "object", required = ["category"], properties = {{ category = {{ enum = ["billing", "bug"] }} }} }}
        [functions.classify_never]
        model = "m"
        user = "{never}"
        structured = "prompt"
        max_reasks = 1
        output_schema = {{ type = "object", required = ["label"], properties = {{ label = {{ enum = ["a", "b"] }} }} }}
        [functions.summarise]
        model = "m"
        user = "{summarise}"

        [workflows.triage]
        steps = [
          {{ name = "extract", function = "extract", input = {{ text = {{ from = "/input/text" }} }} }},
          {{ name = "classify", function = "classify", input = {{ issue = {{ from = "/steps/extract/output/issue" }} }} }},
          {{ name = "summarise", function = "summarise", input = {{ customer = {{ from = "/steps/extract/output/customer" }}, category = {{ from = "/steps/classify/output/category" }} }} }},
        ]
        [workflows.triage_broken]
        steps = [
          {{ name = "extract", function = "extract", input = {{ text = {{ from = "/input/text" }} }} }},
          {{ name = "classify", function = "classify_never", input = {{ issue = {{ from = "/steps/extract/output/issue" }} }} }},
          {{ name = "summarise", function = "summarise", input = {{ customer = "x", category = "y" }} }},
        ]
        [workflows.triage_bugs_only]
        steps = [
          {{ name = "extract", function = "extract", input = {{ text = {{ from = "/input/text" }} }} }},
          {{ name = "classify", function = "classify", input = {{ issue = {{ from = "/steps/extract/output/issue" }} }} }},
          {{ name = "summarise", function = "summarise", when = "steps.classify.output.category == 'bug'", input = {{ customer = "x", category = "y" }} }},
        ]
        "#,
        url = server.url()
    );
    Setup {
        keel: keel_testkit::keel(&config).await,
        sim,
        _dir: dir,
        _server: server,
    }
}

async fn run(s: &Setup, workflow: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/v1/workflows/{workflow}", s.keel.url()))
        .body(
            serde_json::to_vec(&json!({"input": {"text": "Hi, I was charged twice. Ada"}}))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn every_step_runs_and_a_step_that_fails_validation_once_recovers() {
    let s = setup().await;
    let (status, v) = run(&s, "triage").await;
    assert_eq!(status, 200, "{v}");
    let steps = v["steps"].as_array().unwrap();
    let names: Vec<&str> = steps
        .iter()
        .map(|st| st["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["extract", "classify", "summarise"]);
    assert_eq!(steps[1]["output"]["category"], "billing");
    assert_eq!(steps[1]["meta"]["reasks"], 1, "classify needed one re-ask");
    assert_eq!(steps[2]["output"], "Ada: billing problem, charged twice.");
}

#[tokio::test]
async fn a_step_that_fails_for_good_stops_the_run_and_nothing_after_it_runs() {
    let s = setup().await;
    let before = s.sim.stats().requests;
    let (status, v) = run(&s, "triage_broken").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["step"], "classify");
    assert_eq!(v["error"]["code"], "output_invalid");
    assert_eq!(v["error"]["completed"].as_array().unwrap().len(), 1);
    // extract (1 call) + classify asked and re-asked (2): summarise never ran.
    assert_eq!(s.sim.stats().requests - before, 3);
}

#[tokio::test]
async fn a_step_whose_condition_is_false_is_skipped() {
    let s = setup().await;
    let (status, v) = run(&s, "triage_bugs_only").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["steps"][2]["status"], "skipped");
}
