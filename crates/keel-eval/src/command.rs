//! The external-command scorer: anything custom, in any language.
//!
//! The program (run directly, not through a shell, in the eval file's
//! directory; a relative program path is the eval file's too) gets one JSON object on stdin —
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
    // A relative path to the program (`./score.sh`, `scorers/x`) is the eval
    // file's, like every path in it; a bare name is looked up in PATH.
    let path = std::path::Path::new(program);
    let resolved = if path.is_relative() && path.components().count() > 1 {
        cmd.dir.join(path)
    } else {
        path.to_path_buf()
    };
    let mut child = tokio::process::Command::new(&resolved)
        .args(args)
        .current_dir(&cmd.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let input = serde_json::to_vec(stdin).map_err(|e| e.to_string())?;
    let mut pipe = child.stdin.take().ok_or("no stdin")?;
    // Written while the output is read: a program that prints a lot before
    // reading its input must not deadlock on full pipes.
    let write = async move {
        // A program that exits without reading its input is not an error here.
        let _ = pipe.write_all(&input).await;
    };
    let run = async move {
        let ((), out) = tokio::join!(write, child.wait_with_output());
        out
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
        // The end of stderr: where a traceback says what went wrong.
        let tail = &out.stderr[out.stderr.len().saturating_sub(MAX_OUTPUT)..];
        let stderr = String::from_utf8_lossy(tail);
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
            dir: std::env::temp_dir(),
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
            dir: std::env::temp_dir(),
        };
        assert!(
            score(&missing, &v)
                .await
                .unwrap_err()
                .contains("cannot start")
        );
    }

    #[tokio::test]
    async fn a_chatty_command_with_a_big_input_does_not_deadlock() {
        // 1 MiB on stderr before reading a 1 MiB input: both pipes fill
        // unless the input is written while the output is read.
        let cmd = sh(
            "head -c 1048576 /dev/zero | tr '\\0' x >&2; wc -c >/dev/null; echo 1",
            30_000,
        );
        let big = serde_json::json!({"text": "y".repeat(1 << 20)});
        assert_eq!(score(&cmd, &big).await.unwrap().score, 1.0);
    }

    #[tokio::test]
    async fn relative_paths_are_the_eval_file_s() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scorers")).unwrap();
        std::fs::write(
            dir.path().join("scorers/half.sh"),
            "cat >/dev/null; cat scorers/value\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("scorers/value"), "0.5\n").unwrap();
        let cmd = CommandSpec {
            argv: vec!["sh".into(), "scorers/half.sh".into()],
            timeout: Duration::from_secs(10),
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(
            score(&cmd, &serde_json::json!({})).await.unwrap().score,
            0.5
        );
        // The program itself, by a relative path.
        std::fs::write(dir.path().join("scorers/one"), "#!/bin/sh\necho 1\n").unwrap();
        let status = std::process::Command::new("chmod")
            .args(["+x", "scorers/one"])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let cmd = CommandSpec {
            argv: vec!["scorers/one".into()],
            ..cmd
        };
        assert_eq!(
            score(&cmd, &serde_json::json!({})).await.unwrap().score,
            1.0
        );
    }

    #[tokio::test]
    async fn the_reason_is_the_end_of_stderr() {
        let e = score(
            &sh("head -c 200000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'Error: the last line' >&2; exit 1", 10_000),
            &serde_json::json!({}),
        )
        .await
        .unwrap_err();
        assert!(
            e.ends_with("Error: the last line"),
            "{}",
            &e[e.len().saturating_sub(80)..]
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
