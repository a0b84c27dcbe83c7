//! The runner against a real keel gateway on loopback, answered by the
//! simulator: the LLM judge with the simulator scripted as the judge,
//! the external-command scorer, errors and time-outs recorded as failed
//! cases (never the end of the run), chat variants, pass criteria.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use keel_eval::results::Results;
use keel_eval::run::{self, Options, Target};
use keel_eval::spec::{Eval, Variant};
use keel_testkit::Running;

const SCRIPT: &str = r#"
# The judge's re-ask after an invalid verdict gets a valid one.
[[rule]]
contains = "That verdict was invalid"
json = { reasoning = "Corrected: the reply thanks the customer.", score = 0.8 }

# A judge too slow for the time limit.
[[rule]]
regex = "(?s)RUBRIC:.*slow judge"
json = { reasoning = "Eventually.", score = 1.0 }
fault = "latency=20s"

# The judge: a polite answer scores high, with its reasoning.
[[rule]]
regex = "(?s)RUBRIC:.*ANSWER:\\s*Thank you"
json = { reasoning = "Polite and on topic.", score = 0.9 }

# A verdict out of range first: re-asked.
[[rule]]
regex = "(?s)RUBRIC:.*ANSWER:\\s*Sorry"
json = { reasoning = "Apologetic.", score = 7 }

[[rule]]
regex = "(?s)RUBRIC:.*ANSWER:"
json = { reasoning = "Rude: no greeting, no help.", score = 0.1 }

# The paraphrase model, asked with the bare text: a rewording that the
# assistant below answers differently.
[[rule]]
regex = "^I want a refund$"
reply = "Give me my money back"

# The assistant being evaluated.
[[rule]]
contains = "money back"
reply = "Figure it out."

# The assistant being evaluated.
[[rule]]
contains = "slow question"
reply = "Thank you for waiting."
fault = "latency=20s"

[[rule]]
contains = "refund"
reply = "Thank you for writing, your refund is on its way."

[[rule]]
contains = "late"
reply = "Sorry about the delay."

[[rule]]
contains = "password"
reply = "Figure it out."
"#;

fn gateway_config(dir: &Path) -> String {
    let script = dir.join("script.toml");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::write(dir.join("reply.j2"), "Customer says: {{ message }}").unwrap();
    format!(
        r#"
[providers.sim]
kind = "sim"
script = "{}"

[models.assistant]
targets = [{{ provider = "sim", model = "sim-assistant" }}]

[models.judge]
targets = [{{ provider = "sim", model = "sim-judge" }}]

[functions.reply]
model = "assistant"
user = "{}"
input_schema = {{ type = "object", required = ["message"], properties = {{ message = {{ type = "string" }} }} }}
"#,
        script.display(),
        dir.join("reply.j2").display()
    )
}

async fn start(dir: &Path) -> Running {
    // Prompt paths in the config are absolute, so its base dir is moot.
    keel_testkit::keel(&gateway_config(dir)).await
}

fn load(dir: &Path, yaml: &str) -> Eval {
    let path = dir.join("eval.yaml");
    std::fs::write(&path, yaml).unwrap();
    Eval::load(&path).unwrap()
}

async fn run_on(gw: &Running, eval: &Eval, timeout: Duration) -> Results {
    run_with(gw, eval, timeout, false).await
}

async fn run_with(gw: &Running, eval: &Eval, timeout: Duration, perturb: bool) -> Results {
    let variants: Vec<&Variant> = eval.variants.iter().collect();
    let options = Options {
        concurrency: 3,
        timeout,
        perturb,
        progress: false,
        cassette: None,
    };
    let target = Target {
        base_url: gw.url(),
        api_key: None,
        label: gw.url(),
    };
    run::run(eval, &variants, target, &options, None).await
}

#[tokio::test]
async fn the_judge_grades_with_reasons_and_invalid_verdicts_are_reasked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let eval = load(
        dir.path(),
        r#"
name: politeness
dataset:
  cases:
    - { id: polite, input: { message: "I want a refund" } }
    - { id: apologetic, input: { message: "my parcel is late" } }
    - { id: rude, input: { message: "I forgot my password" } }
variants:
  - name: fn
    function: reply
  - name: chat
    chat:
      model: assistant
      system: You are a support agent.
      user: "Customer says: {{ message }}"
scorers:
  - type: judge
    name: polite
    model: judge
    rubric: The reply is polite and helps the customer.
    threshold: 0.7
"#,
    );
    let results = run_on(&gw, &eval, Duration::from_secs(10)).await;
    for variant in ["fn", "chat"] {
        let by_id = |id: &str| {
            results
                .cases_of(variant)
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("{variant}/{id} missing"))
        };
        let polite = &by_id("polite").scores[0];
        assert_eq!(polite.score, 0.9, "{variant}");
        assert!(polite.passed);
        assert_eq!(polite.reasoning.as_deref(), Some("Polite and on topic."));
        // 7 is outside the verdict schema: re-asked with the errors, then 0.8.
        let apologetic = &by_id("apologetic").scores[0];
        assert_eq!(apologetic.score, 0.8, "{variant}: {apologetic:?}");
        assert_eq!(
            apologetic.reasoning.as_deref(),
            Some("Corrected: the reply thanks the customer.")
        );
        let rude = by_id("rude");
        assert_eq!(rude.scores[0].score, 0.1);
        assert!(!rude.passed && rude.error.is_none());
        assert!(rude.request_id.is_some());
    }
    let summary = &results.variants[0];
    assert_eq!((summary.cases, summary.passed), (3, 2));
    assert!((summary.scorers["polite"].mean - 0.6).abs() < 1e-9);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_judge_that_never_gives_a_valid_verdict_fails_the_case_with_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let eval = load(
        dir.path(),
        r#"
name: stubborn-judge
dataset:
  cases: [{ id: a, input: { message: "my parcel is late" } }]
variants: [{ name: fn, function: reply }]
scorers:
  - { type: judge, model: judge, rubric: "Polite?", max_reasks: 0 }
"#,
    );
    let results = run_on(&gw, &eval, Duration::from_secs(10)).await;
    let case = &results.cases[0];
    assert!(!case.passed);
    assert_eq!(case.scores[0].score, 0.0);
    assert!(
        case.scores[0]
            .detail
            .contains("no valid verdict after 1 ask"),
        "{}",
        case.scores[0].detail
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn call_errors_and_timeouts_are_failed_cases_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let scorer = dir.path().join("score.py");
    std::fs::write(
        &scorer,
        "import json, sys\nd = json.load(sys.stdin)\nprint(json.dumps({'score': 1.0 if 'refund' in d['text'] else 0.0, 'detail': d['id']}))\n",
    )
    .unwrap();
    let eval = load(
        dir.path(),
        &format!(
            r#"
name: failures
dataset:
  cases:
    - {{ id: ok, input: {{ message: "refund please" }} }}
    - {{ id: bad-input, input: {{ msg: "no message field" }} }}
    - {{ id: slow, input: {{ message: "a slow question" }} }}
    - {{ id: wrong, input: {{ message: "password" }} }}
variants: [{{ name: fn, function: reply }}]
scorers:
  - {{ type: contains, needles: [thank] }}
  - {{ type: command, name: mentions-refund, command: [python3, "{}"] }}
pass:
  min_pass_rate: 0.5
"#,
            scorer.display()
        ),
    );
    let results = run_on(&gw, &eval, Duration::from_secs(2)).await;
    let case = |id: &str| results.cases.iter().find(|c| c.id == id).unwrap();
    assert!(case("ok").passed, "{:?}", case("ok"));
    assert_eq!(
        case("ok").scores[1].detail,
        "ok",
        "the command saw the case"
    );
    let bad = case("bad-input");
    assert!(!bad.passed && bad.scores.is_empty());
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .starts_with("400 input_invalid"),
        "{:?}",
        bad.error
    );
    let slow = case("slow");
    assert!(
        slow.error.as_deref().unwrap().starts_with("timeout"),
        "{:?}",
        slow.error
    );
    let wrong = case("wrong");
    assert!(!wrong.passed && wrong.error.is_none());
    assert_eq!(wrong.scores[1].score, 0.0);
    let s = &results.variants[0];
    assert_eq!((s.cases, s.passed, s.errors), (4, 1, 2));
    // 1 of 4 is below the 0.5 the criteria ask.
    assert!(!results.passed);
    assert!(!results.criteria[0].held, "{:?}", results.criteria);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn perturbed_inputs_find_the_answer_that_flips() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let eval = load(
        dir.path(),
        r#"
name: robustness
dataset:
  cases:
    - { id: refund, input: { message: "I want a refund" } }
    - { id: late, input: { message: "My parcel is late. Where is it?" } }
variants: [{ name: fn, function: reply }]
scorers: [{ type: contains, needles: [thank] }]
perturb:
  kinds: [case, punctuation, paraphrase]
  paraphrase_model: assistant
"#,
    );
    let results = run_with(&gw, &eval, Duration::from_secs(10), true).await;
    let refund = results.cases.iter().find(|c| c.id == "refund").unwrap();
    assert!(refund.passed);
    let kinds: Vec<(&str, bool)> = refund
        .perturbations
        .iter()
        .map(|p| (p.kind.as_str(), p.consistent))
        .collect();
    // Upper case and dropped punctuation get the same polite answer; the
    // model's paraphrase ("Give me my money back") gets a rude one.
    assert_eq!(
        kinds,
        [("case", true), ("punctuation", true), ("paraphrase", false)]
    );
    let paraphrased = &refund.perturbations[2];
    assert_eq!(paraphrased.input["message"], "Give me my money back");
    assert_eq!(paraphrased.output, "Figure it out.");
    assert!((refund.consistency.unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // The late parcel is answered "Sorry…" (failing) however it is worded:
    // consistent, though wrong.
    let late = results.cases.iter().find(|c| c.id == "late").unwrap();
    assert!(!late.passed);
    assert!(late.perturbations.iter().all(|p| p.consistent), "{late:?}");
    let overall = results.variants[0].consistency.unwrap();
    assert!((overall - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-9);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_judge_fails_its_score_and_keeps_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let eval = load(
        dir.path(),
        r#"
name: slow-judge
dataset:
  cases: [{ id: a, input: { message: "a slow judge, please" } }]
variants: [{ name: fn, function: reply }]
scorers:
  - { type: regex, pattern: "." }
  - { type: judge, model: judge, rubric: "Polite?" }
"#,
    );
    let results = run_on(&gw, &eval, Duration::from_secs(2)).await;
    let case = &results.cases[0];
    assert!(case.error.is_none(), "the answer is kept: {case:?}");
    assert!(case.output.as_str().is_some_and(|t| !t.is_empty()));
    assert!(case.scores[0].passed);
    assert!(!case.scores[1].passed);
    assert!(
        case.scores[1].detail.starts_with("timeout"),
        "{:?}",
        case.scores[1]
    );
    assert!(
        case.latency_ms < 2000.0,
        "the call's own latency: {}",
        case.latency_ms
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_variant_with_no_answer_at_all_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let eval = load(
        dir.path(),
        r#"
name: misnamed
dataset:
  cases: [{ id: a, input: { message: "hi" } }, { id: b, input: { message: "hello" } }]
variants:
  - { name: good, function: reply }
  - { name: typo, function: replly }
scorers: [{ type: regex, pattern: "" }]
"#,
    );
    let results = run_on(&gw, &eval, Duration::from_secs(10)).await;
    assert!(!results.passed);
    let failed: Vec<(&str, &str)> = results
        .criteria
        .iter()
        .filter(|c| !c.held)
        .map(|c| (c.variant.as_str(), c.check.as_str()))
        .collect();
    assert_eq!(failed, [("typo", "answered: none of 2 calls succeeded")]);
    let error = results
        .cases_of("typo")
        .next()
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(error.starts_with("404"), "{error}");
    gw.shutdown().await.unwrap();
}

#[test]
fn yaml_and_toml_eval_files_load_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("e.yaml");
    std::fs::write(
        &yaml,
        "name: x\ndataset: { cases: [{ id: a, input: { q: hi }, expected: hi }] }\nvariants: [{ name: v, chat: { model: m, user: '{{ q }}' }, params: { temperature: 0 } }]\nscorers: [{ type: equals }, { type: similarity, name: sim, weight: 2 }]\npass: { min_pass_rate: 0.9 }\n",
    )
    .unwrap();
    let toml = dir.path().join("e.toml");
    std::fs::write(
        &toml,
        "name = \"x\"\n[dataset]\ncases = [{ id = \"a\", input = { q = \"hi\" }, expected = \"hi\" }]\n[[variants]]\nname = \"v\"\nparams = { temperature = 0.0 }\nchat = { model = \"m\", user = \"{{ q }}\" }\n[[scorers]]\ntype = \"equals\"\n[[scorers]]\ntype = \"similarity\"\nname = \"sim\"\nweight = 2\n[pass]\nmin_pass_rate = 0.9\n",
    )
    .unwrap();
    let (a, b) = (Eval::load(&yaml).unwrap(), Eval::load(&toml).unwrap());
    assert_eq!(a.cases, b.cases);
    assert_eq!(a.pass, b.pass);
    assert_eq!(format!("{:?}", a.scorers), format!("{:?}", b.scorers));
    assert_eq!(
        a.scorers[1].threshold, 0.8,
        "similarity passes at 0.8 by default"
    );
}

#[test]
fn mistakes_in_an_eval_file_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = "dataset: { cases: [{ input: { q: hi } }] }\n";
    for (body, field, words) in [
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: equals, needles: [a] }]\n",
            "scorers[0]",
            "takes no `needles`",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: fuzzy }]\n",
            "scorers[0]",
            "unknown scorer type",
        ),
        (
            "variants: [{ name: v, function: f }, { name: v, function: g }]\nscorers: [{ type: equals }]\n",
            "variants[1]",
            "two variants",
        ),
        (
            "variants: [{ name: v, function: f, chat: { model: m, user: x } }]\nscorers: [{ type: equals }]\n",
            "variants[0]",
            "exactly one of",
        ),
        (
            "variants: [{ name: v, chat: { model: m, user: '{{ q' } }]\nscorers: [{ type: equals }]\n",
            "variants[0]",
            "template",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: regex, pattern: '(' }]\n",
            "scorers[0]",
            "pattern",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: equals }]\npass: { variants: [w] }\n",
            "pass.variants",
            "no variant",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: equals }]\nperturb: { kinds: [paraphrase] }\n",
            "perturb.paraphrase_model",
            "model alias",
        ),
        (
            "variants: [{ name: v, function: f, params: { temperature: 9 } }]\nscorers: [{ type: equals }]\n",
            "variants[0]",
            "temperature",
        ),
        (
            "variants: [{ name: 'exp/2', function: f }]\nscorers: [{ type: equals }]\n",
            "variants[0]",
            "letters, digits",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: judge, model: j, rubric: r, max_reasks: 99 }]\n",
            "scorers[0]",
            "at most 5",
        ),
        (
            "variants: [{ name: v, function: f }]\nscorers: [{ type: command, command: [x], timeout: 0s }]\n",
            "scorers[0]",
            "above 0",
        ),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, format!("name: bad\n{cases}{body}")).unwrap();
        let e = Eval::load(&path).unwrap_err();
        assert_eq!(e.at, field, "{body}: {e}");
        assert!(e.message.contains(words), "{body}: {e}");
    }
}
