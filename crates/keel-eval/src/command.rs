//! The external-command scorer: anything custom, in any language.
//!
//! The program (run directly, not through a shell, from the directory keel
//! runs in) gets one JSON object on stdin —
//! `{"id", "input", "expected", "output", "text", "tags", "metadata",
//! "latency_ms", "cost_usd"}` — and prints its judgement on stdout: a bare
//! number in 0..=1, or `{"score": 0.8, "detail": "..."}`. A non-zero exit,
//! a time-out (the process is killed), or anything else on stdout is a
//! failed score with the reason in its detail (stderr's last line
//! included), never the end of the run.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::spec::CommandSpec;

/// What the command said.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    pub score: f64,
    pub detail: String,
}

/// Stdout and stderr kept from a command, at most.
const MAX_OUTPUT: usize = 64 * 1024;

pub async fn score(cmd: &CommandSpec, stdin: &Value) -> Result<Said, String> {
    let (program, args) = cmd.argv.split_first().ok_or("no program")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let input = serde_json::to_vec(stdin).map_err(|e| e.to_string())?;
    let mut pipe = child.stdin.take().ok_or("no stdin")?;
    let run = async move {
        // A program that exits without reading its input is not an error here.
        let _ = pipe.write_all(&input).await;
        drop(pipe);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(cmd.timeout, run)
        .await
        .map_err(|_| {
            format!(
                "`{program}` ran out of time ({:?}) and was killed",
                cmd.timeout
            )
        })?
        .map_err(|e| format!("`{program}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(MAX_OUTPUT)]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(MAX_OUTPUT)]);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("`{program}` exited with {}: {last}", out.status));
    }
    parse(stdout.trim())
}

/// A bare number, or an object with `score` (and optionally `detail`).
pub fn parse(stdout: &str) -> Result<Said, String> {
    let in_range = |s: f64| {
        if (0.0..=1.0).contains(&s) {
            Ok(s)
        } else {
            Err(format!("score {s} is outside 0..=1"))
        }
    };
    if let Ok(n) = stdout.parse::<f64>() {
        return Ok(Said {
            score: in_range(n)?,
            detail: String::new(),
        });
    }
    let value: Value = serde_json::from_str(stdout).map_err(|_| {
        format!(
            "stdout is neither a number nor JSON: {:?}",
            stdout.chars().take(80).collect::<String>()
        )
    })?;
    let score = value
        .get("score")
        .and_then(Value::as_f64)
        .ok_or("the JSON has no numeric `score`")?;
    Ok(Said {
        score: in_range(score)?,
        detail: value
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> CommandSpec {
        CommandSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn the_command_reads_the_case_and_prints_a_score() {
        // Passes when the answer's text is what was expected.
        let cmd = sh(
            r#"python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"score": 1.0 if d["text"]==d["expected"] else 0.0, "detail": d["id"]}))'"#,
            10_000,
        );
        let pass = serde_json::json!({"id": "c1", "text": "billing", "expected": "billing"});
        assert_eq!(
            score(&cmd, &pass).await.unwrap(),
            Said {
                score: 1.0,
                detail: "c1".into()
            }
        );
        let fail = serde_json::json!({"id": "c2", "text": "bug", "expected": "billing"});
        assert_eq!(score(&cmd, &fail).await.unwrap().score, 0.0);
        assert_eq!(
            score(&sh("echo 0.25", 5_000), &pass).await.unwrap().score,
            0.25
        );
    }

    #[tokio::test]
    async fn failures_are_reasons_not_panics() {
        let v = serde_json::json!({});
        let e = score(&sh("echo nope >&2; exit 3", 5_000), &v)
            .await
            .unwrap_err();
        assert!(e.contains("nope") && e.contains('3'), "{e}");
        assert!(
            score(&sh("echo 1.5", 5_000), &v)
                .await
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            score(&sh("echo maybe", 5_000), &v)
                .await
                .unwrap_err()
                .contains("neither")
        );
        let missing = CommandSpec {
            argv: vec!["/nonexistent/scorer".into()],
            timeout: Duration::from_secs(1),
        };
        assert!(
            score(&missing, &v)
                .await
                .unwrap_err()
                .contains("cannot start")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_command_is_killed_at_its_time_limit() {
        let e = score(&sh("sleep 30", 1_000), &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(e.contains("out of time"), "{e}");
    }
}
