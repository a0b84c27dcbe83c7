//! `keel eval` end to end on the example in `examples/eval/`: the
//! support-ticket classifier's two prompt versions on 60 labelled tickets,
//! answered by the scripted simulator, as a user runs it from the
//! repository's root — results, JUnit and HTML reports, the gate between
//! results files, record/replay, `--perturb` — and the eval file against
//! its JSON Schema (`docs/eval.schema.json`).
//!
//! With `KEEL_EVAL_ARTIFACTS=DIR` the HTML report (and the results and
//! JUnit files) are also copied to DIR, for `scripts/check-report` to open
//! in headless Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::KEEL;

/// The repository's root: where the example's commands are run from.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn example(file: &str) -> PathBuf {
    repo().join("examples/eval").join(file)
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `keel ARGS` from the repository's root.
fn keel(args: &[&str]) -> Ran {
    let out = Command::new(KEEL)
        .args(args)
        .current_dir(repo())
        .env_remove("KEEL_API_KEY")
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// A copy of `examples/eval/` (without its request log) in `dir`, so a
/// test can change the eval file or the dataset and keeps its own log.
fn copy_example(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("keel.db") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let to = dir.join("eval");
    copy(&example(""), &to);
    to
}

/// The eval file (YAML) as JSON.
fn eval_yaml(path: &Path) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_yaml(path: &Path, v: &Value) {
    std::fs::write(path, serde_norway::to_string(v).unwrap()).unwrap();
}

/// The cases of one variant: id → case record.
fn cases_of<'a>(results: &'a Value, variant: &str) -> BTreeMap<&'a str, &'a Value> {
    results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["variant"] == variant)
        .map(|c| (c["id"].as_str().unwrap(), c))
        .collect()
}

fn summary<'a>(results: &'a Value, variant: &str) -> &'a Value {
    results["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant} in the results"))
}

/// The results with only one variant's cases and summary: what a run with
/// `--variant NAME` writes.
fn only(results: &Value, variant: &str) -> Value {
    let mut one = results.clone();
    one["variants"] = json!([summary(results, variant)]);
    one["cases"] = Value::Array(cases_of(results, variant).into_values().cloned().collect());
    one["comparisons"] = json!([]);
    one["criteria"] = json!([]);
    one
}

fn ids(flips: &Value) -> Vec<&str> {
    flips
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect()
}

#[test]
fn the_example_eval_file_matches_its_json_schema() {
    let schema = read_json(&repo().join("docs/eval.schema.json"));
    jsonschema::draft202012::meta::validate(&schema).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors = |doc: &Value| -> Vec<String> {
        validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    };
    let eval = eval_yaml(&example("eval.yaml"));
    assert_eq!(errors(&eval), Vec::<String>::new());

    // Every line of the dataset is a case the schema accepts (inline).
    let cases: Vec<Value> = std::fs::read_to_string(example("tickets.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(cases.len() >= 55, "{} cases", cases.len());
    let mut inline = eval.clone();
    inline["dataset"] = json!({ "cases": cases });
    assert_eq!(errors(&inline), Vec::<String>::new());

    // Strict where keel is strict: each of these is refused by the schema
    // and by `keel eval run` (exit 2, before any call).
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_example(dir.path());
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut v = eval.clone();
        edit(&mut v);
        v
    };
    let refused = [
        (
            "a misspelt top-level field",
            "unknown field `scorer`",
            bad(&|v| v["scorer"] = json!([])),
        ),
        (
            "another scorer type's field",
            "needles",
            bad(&|v| v["scorers"][0]["needles"] = json!(["x"])),
        ),
        (
            "a pointer without its slash",
            "pointer",
            bad(&|v| v["scorers"][1]["pointer"] = json!("priority")),
        ),
        (
            "a scorer missing its required field",
            "`ms`",
            bad(&|v| v["scorers"][3] = json!({"type": "max_latency"})),
        ),
        (
            "a judge with no rubric",
            "rubric",
            bad(&|v| {
                v["scorers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "judge", "model": "classifier"}));
            }),
        ),
        (
            "a variant with both function and chat",
            "exactly one of `function` or `chat`",
            bad(&|v| {
                v["variants"][0]["chat"] = json!({"model": "classifier", "user": "{{ ticket }}"})
            }),
        ),
        (
            "a pass rate above 1",
            "pass.min_pass_rate",
            bad(&|v| v["pass"]["min_pass_rate"] = json!(85)),
        ),
        (
            "paraphrase without its model",
            "paraphrase_model",
            bad(&|v| v["perturb"]["kinds"] = json!(["paraphrase"])),
        ),
        (
            "no variants",
            "variant",
            bad(&|v| v["variants"] = json!([])),
        ),
    ];
    for (what, named, doc) in &refused {
        assert!(!validator.is_valid(doc), "the schema accepts {what}");
        let file = copy.join("bad.yaml");
        write_yaml(&file, doc);
        let ran = keel(&["eval", "run", s(&file), "--quiet"]);
        assert_eq!(ran.code, Some(2), "keel accepts {what}: {ran:?}");
        assert!(ran.stderr.contains(named), "{what}: {ran:?}");
    }
    // The gate's fields are checked by the schema too (keel itself ignores
    // an unknown one there).
    assert!(!validator.is_valid(&bad(&|v| v["gate"]["alhpa"] = json!(0.01))));

    // The schema knows every scorer type keel knows (keel lists them when
    // refusing an unknown one), and no other.
    let file = copy.join("bad.yaml");
    write_yaml(&file, &bad(&|v| v["scorers"][0]["type"] = json!("nope")));
    let ran = keel(&["eval", "run", s(&file), "--quiet"]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    let listed = ran
        .stderr
        .split("one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{ran:?}"));
    let mut keel_types: Vec<&str> = listed.trim().split(", ").collect();
    let mut schema_types: Vec<&str> = schema["$defs"]["scorer"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    keel_types.sort_unstable();
    schema_types.sort_unstable();
    assert_eq!(keel_types, schema_types);
}

#[test]
fn the_example_eval_runs_reports_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let (out, junit, html) = (
        dir.path().join("results.json"),
        dir.path().join("junit.xml"),
        dir.path().join("report.html"),
    );
    let ran = keel(&[
        "eval",
        "run",
        "examples/eval/eval.yaml",
        "--out",
        s(&out),
        "--junit",
        s(&junit),
        "--html",
        s(&html),
        "--quiet",
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // The table names both variants.
    assert!(
        ran.stdout.contains("v1") && ran.stdout.contains("v2"),
        "{ran:?}"
    );
    if let Some(artifacts) = std::env::var_os("KEEL_EVAL_ARTIFACTS") {
        let artifacts = PathBuf::from(artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::copy(&html, artifacts.join("report.html")).unwrap();
        std::fs::copy(&out, artifacts.join("results.json")).unwrap();
        std::fs::copy(&junit, artifacts.join("junit.xml")).unwrap();
    }

    let r = read_json(&out);
    assert_eq!(r["format"], "keel-eval/1");
    assert_eq!(r["eval"], "ticket-classifier");
    assert_eq!(r["target"], "in-process");
    assert_eq!(r["passed"], true, "{}", r["criteria"]);
    let names: Vec<&str> = r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2"]);
    let (v1, v2) = (summary(&r, "v1"), summary(&r, "v2"));
    for v in [v1, v2] {
        assert!(v["cases"].as_u64().unwrap() >= 50, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["cost_usd"].as_f64().unwrap() > 0.0, "priced: {v}");
        for scorer in ["category", "priority", "schema", "max_latency"] {
            assert!(v["scorers"][scorer].is_object(), "{scorer} in {v}");
        }
    }
    assert!(
        v1["call"].as_str().unwrap().contains("classify_ticket"),
        "{v1}"
    );
    assert!(v2["call"].as_str().unwrap().contains("version 2"), "{v2}");
    let (rate1, rate2) = (
        v1["pass_rate"].as_f64().unwrap(),
        v2["pass_rate"].as_f64().unwrap(),
    );
    assert!(rate2 > rate1 + 0.1, "v1 {rate1}, v2 {rate2}");
    // The criteria apply to v2 only, and held.
    let criteria = r["criteria"].as_array().unwrap();
    assert!(!criteria.is_empty());
    assert!(
        criteria
            .iter()
            .all(|c| c["variant"] == "v2" && c["held"] == true),
        "{criteria:?}"
    );

    // Every case answered, with keel's request id; the v2 copy of the
    // function was the one called for v2.
    let (c1, c2) = (cases_of(&r, "v1"), cases_of(&r, "v2"));
    assert_eq!(c1.keys().collect::<Vec<_>>(), c2.keys().collect::<Vec<_>>());
    for case in c1.values().chain(c2.values()) {
        assert!(
            case["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{case}"
        );
        assert!(case["error"].is_null(), "{case}");
        assert_eq!(case["scores"].as_array().unwrap().len(), 4, "{case}");
    }
    let ids_of = |cases: &BTreeMap<&str, &Value>| -> std::collections::HashSet<String> {
        cases
            .values()
            .map(|c| c["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids_of(&c1).len() + ids_of(&c2).len(),
        c1.len() * 2,
        "ids are unique"
    );

    // v1 against v2: the cases that flipped, both ways, each one a real flip.
    let comparison = r["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["baseline"] == "v1" && c["candidate"] == "v2")
        .unwrap_or_else(|| panic!("{}", r["comparisons"]));
    assert_eq!(comparison["gating"], false);
    let verdict = &comparison["verdict"];
    assert_eq!(verdict["failed"], false, "an improvement: {verdict}");
    let fixes = ids(&verdict["fixes"]);
    let regressions = ids(&verdict["regressions"]);
    assert!(fixes.len() >= 10, "{fixes:?}");
    assert!(regressions.len() < fixes.len(), "{regressions:?}");
    for id in &fixes {
        assert!(
            c1[id]["passed"] == false && c2[id]["passed"] == true,
            "{id}"
        );
    }
    for id in &regressions {
        assert!(
            c1[id]["passed"] == true && c2[id]["passed"] == false,
            "{id}"
        );
    }
    let flipped = fixes.len() + regressions.len();
    let counted = c1
        .keys()
        .filter(|id| c1[*id]["passed"] != c2[*id]["passed"])
        .count();
    assert_eq!(flipped, counted);
    assert!(verdict["mcnemar_p"].as_f64().unwrap() < 0.05, "{verdict}");

    // JUnit: well-formed XML, a suite per variant with a test case per
    // case (the failed ones failing), and the criteria in a `gate` suite.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    for (variant, cases) in [("v1", &c1), ("v2", &c2)] {
        let name = format!("ticket-classifier/{variant}");
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no suite {name}: {xml}"));
        let testcases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(testcases.len(), cases.len());
        for tc in testcases {
            let id = tc.attribute("name").unwrap();
            let failed = tc.children().any(|n| n.has_tag_name("failure"));
            assert_eq!(failed, cases[id]["passed"] == false, "{variant} {id}");
        }
    }
    assert!(
        doc.descendants().any(|n| n.has_tag_name("testsuite")
            && n.attribute("name").is_some_and(|s| s.ends_with("gate"))),
        "{xml}"
    );

    // HTML: one self-contained file (nothing fetched from elsewhere).
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.trim_start()
            .to_ascii_lowercase()
            .starts_with("<!doctype html"),
        "{}",
        &page[..page.len().min(200)]
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "@import",
        "<link ",
    ] {
        assert!(!page.contains(external), "the report loads {external}…");
    }
    assert!(page.contains("ticket-classifier"));
    assert!(
        page.contains(fixes[0]),
        "the flipped case {} is in the page",
        fixes[0]
    );

    // `keel eval compare`: v1 as a candidate against v2 as the baseline is
    // a significant regression (exit 1) and names the cases that flipped.
    let (base, cand) = (dir.path().join("v2.json"), dir.path().join("v1.json"));
    write_json(&base, &only(&r, "v2"));
    write_json(&cand, &only(&r, "v1"));
    let ran = keel(&["eval", "compare", s(&base), s(&cand)]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("FAILED"), "{ran:?}");
    for id in fixes.iter().take(10) {
        assert!(ran.stdout.contains(id), "{id} is not named: {ran:?}");
    }
    let ran = keel(&["eval", "compare", s(&base), s(&cand), "--json"]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let verdicts: Value = serde_json::from_str(&ran.stdout).unwrap();
    let regressed = ids(&verdicts[0]["verdict"]["regressions"]);
    assert_eq!(regressed, fixes, "v2's fixes are v1's regressions");
    // The other way round it is an improvement; a file against itself,
    // nothing at all.
    let ran = keel(&["eval", "compare", s(&cand), s(&base)]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let ran = keel(&["eval", "compare", s(&out), s(&out)]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("PASSED"), "{ran:?}");

    // The same gate inside a run: `--baseline` v2's results while running
    // only v1 fails the run (exit 1).
    let gated = dir.path().join("gated.json");
    let ran = keel(&[
        "eval",
        "run",
        "examples/eval/eval.yaml",
        "--variant",
        "v1",
        "--baseline",
        s(&base),
        "--out",
        s(&gated),
        "--quiet",
    ]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let g = read_json(&gated);
    assert_eq!(g["passed"], false);
    let gate = g["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["gating"] == true)
        .unwrap_or_else(|| panic!("{}", g["comparisons"]));
    assert_eq!(gate["verdict"]["failed"], true, "{gate}");
}

#[test]
fn record_then_replay_answers_the_same_without_calling_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_example(dir.path());
    let eval = copy.join("eval.yaml");
    let cassette = dir.path().join("answers.jsonl");
    let (recorded, replayed) = (dir.path().join("rec.json"), dir.path().join("rep.json"));
    let ran = keel(&[
        "eval",
        "run",
        s(&eval),
        "--record",
        s(&cassette),
        "--out",
        s(&recorded),
        "--quiet",
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let ran = keel(&[
        "eval",
        "run",
        s(&eval),
        "--replay",
        s(&cassette),
        "--out",
        s(&replayed),
        "--quiet",
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (rec, rep) = (read_json(&recorded), read_json(&replayed));
    assert!(
        rec["cassette"].as_str().unwrap().starts_with("record "),
        "{}",
        rec["cassette"]
    );
    assert!(rep["cassette"].as_str().unwrap().starts_with("replay "));
    for variant in ["v1", "v2"] {
        let (a, b) = (cases_of(&rec, variant), cases_of(&rep, variant));
        assert_eq!(a.len(), b.len());
        assert!(a.len() >= 50);
        for (id, case) in &a {
            let again = b[id];
            assert_eq!(case["output"], again["output"], "{variant} {id}");
            assert_eq!(case["passed"], again["passed"], "{variant} {id}");
            assert!(again["error"].is_null(), "{again}");
            assert_eq!(again["cost_usd"], 0.0, "replayed answers are free: {again}");
        }
        assert_eq!(
            summary(&rec, variant)["pass_rate"],
            summary(&rep, variant)["pass_rate"]
        );
    }

    // What was not recorded is a replay miss, a failed case — never a
    // call upstream: a new ticket, and a recorded one asked at another
    // temperature.
    let mut changed = eval_yaml(&eval);
    changed["dataset"] = json!({"cases": [
        {"id": "t01", "input": {"ticket": "I was charged twice for my March subscription. Please refund the duplicate payment as soon as possible."},
         "expected": {"category": "billing", "priority": "high"}},
        {"id": "new", "input": {"ticket": "I was charged twice for my April subscription."},
         "expected": {"category": "billing", "priority": "high"}},
    ]});
    // v1 as recorded, and v2 at another temperature (the same variant
    // name, so the same copy of the function).
    let v1 = changed["variants"][0].clone();
    let mut warm = changed["variants"][1].clone();
    assert_eq!((&v1["name"], &warm["name"]), (&json!("v1"), &json!("v2")));
    warm["params"] = json!({"temperature": 0.9});
    changed["variants"] = json!([v1, warm]);
    changed["pass"] = json!({});
    let missing = copy.join("missing.yaml");
    write_yaml(&missing, &changed);
    let out = dir.path().join("miss.json");
    let ran = keel(&[
        "eval",
        "run",
        s(&missing),
        "--replay",
        s(&cassette),
        "--out",
        s(&out),
        "--quiet",
    ]);
    // No pass bound, but v2 got no answer at all: that fails the run.
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let r = read_json(&out);
    assert_eq!(
        r["criteria"],
        json!([{"variant": "v2", "check": "answered: none of 2 calls succeeded", "held": false}])
    );
    let hit = cases_of(&r, "v1")["t01"];
    assert!(hit["error"].is_null(), "{hit}");
    assert_eq!(hit["output"], cases_of(&rec, "v1")["t01"]["output"]);
    // The request log says so: no upstream attempt, for the hit or a miss.
    let db = copy.join("keel.db");
    let logged = |case: &Value| -> Value {
        let id = case["request_id"].as_str().unwrap();
        let ran = keel(&["show", id, "--db", s(&db), "--json"]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        serde_json::from_str(&ran.stdout).unwrap()
    };
    assert_eq!(logged(hit)["attempts"], json!([]));
    for (variant, id) in [("v1", "new"), ("v2", "t01"), ("v2", "new")] {
        let case = cases_of(&r, variant)[id];
        assert_eq!(case["passed"], false, "{case}");
        let error = case["error"].as_str().unwrap_or_default();
        assert!(error.contains("replay_miss"), "{variant} {id}: {case}");
        let record = logged(case);
        assert_eq!(record["error_kind"], "replay_miss", "{record}");
        assert_eq!(record["attempts"], json!([]), "{record}");
    }
    // While recording, the same request went upstream.
    let first = logged(cases_of(&rec, "v1")["t01"]);
    assert!(!first["attempts"].as_array().unwrap().is_empty(), "{first}");
}

#[test]
fn perturb_reports_a_consistency_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_example(dir.path());
    // Eight tickets of the sixty, two of each category.
    let lines: Vec<String> = std::fs::read_to_string(copy.join("tickets.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| {
            [
                "\"t01\"", "\"t03\"", "\"t19\"", "\"t23\"", "\"t37\"", "\"t42\"", "\"t51\"",
                "\"t53\"",
            ]
            .iter()
            .any(|id| l.contains(id))
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 8);
    std::fs::write(copy.join("few.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut eval = eval_yaml(&copy.join("eval.yaml"));
    eval["dataset"]["file"] = json!("few.jsonl");
    eval["pass"] = json!({});
    let file = copy.join("few.yaml");
    write_yaml(&file, &eval);
    let out = dir.path().join("perturbed.json");
    let ran = keel(&[
        "eval",
        "run",
        s(&file),
        "--perturb",
        "--variant",
        "v2",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let r = read_json(&out);
    assert_eq!(r["variants"].as_array().unwrap().len(), 1);
    let cases = cases_of(&r, "v2");
    assert_eq!(cases.len(), 8);
    let kinds = ["case", "whitespace", "punctuation", "typos", "reorder"];
    for (id, case) in &cases {
        let consistency = case["consistency"]
            .as_f64()
            .unwrap_or_else(|| panic!("{case}"));
        assert!((0.0..=1.0).contains(&consistency), "{id}: {consistency}");
        let perturbations = case["perturbations"].as_array().unwrap();
        assert!(!perturbations.is_empty(), "{case}");
        let consistent = perturbations
            .iter()
            .filter(|p| p["consistent"] == true)
            .count();
        let expected = consistent as f64 / perturbations.len() as f64;
        assert!((consistency - expected).abs() < 1e-9, "{case}");
        for p in perturbations {
            assert!(kinds.contains(&p["kind"].as_str().unwrap()), "{p}");
            assert_ne!(p["input"]["ticket"], case["input"]["ticket"], "{p}");
        }
    }
    let mean = summary(&r, "v2")["consistency"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mean), "{mean}");
}

#[test]
fn a_running_gateway_answers_the_same_as_the_in_process_one() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_example(dir.path());
    let config = copy.join("keel.toml");
    let db = dir.path().join("served.db");
    let (child, addr) = super::serve(&["--config", s(&config), "--db", s(&db)]);
    let url = format!("http://{addr}");
    let eval = copy.join("eval.yaml");
    let (remote, local) = (
        dir.path().join("remote.json"),
        dir.path().join("local.json"),
    );
    let on_gateway = |variant: &str, more: &[&str]| {
        let mut args = vec![
            "eval",
            "run",
            s(&eval),
            "--gateway",
            &url,
            "--variant",
            variant,
            "--quiet",
        ];
        args.extend(more);
        keel(&args)
    };

    let ran = on_gateway("v1", &["--out", s(&remote)]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let ran = keel(&[
        "eval",
        "run",
        s(&eval),
        "--variant",
        "v1",
        "--quiet",
        "--out",
        s(&local),
    ]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (remote, local) = (read_json(&remote), read_json(&local));
    assert_eq!(remote["target"], url.as_str());
    assert_eq!(local["target"], "in-process");
    let (r, l) = (cases_of(&remote, "v1"), cases_of(&local, "v1"));
    assert_eq!(r.len(), l.len());
    for (id, case) in &r {
        assert_eq!(case["output"], l[id]["output"], "{id}");
        assert_eq!(case["passed"], l[id]["passed"], "{id}");
    }

    // v2 changes the function's prompt: only the in-process gateway can.
    let ran = on_gateway("v2", &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("variant `v2`"), "{ran:?}");
    super::stop(child);

    // Nobody listening: exit 2 before any case, saying so.
    let ran = on_gateway("v1", &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("cannot reach the gateway"), "{ran:?}");
}
