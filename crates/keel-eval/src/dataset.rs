//! Datasets: the cases an eval runs, from JSON lines, CSV or the eval file.
//!
//! A case is `{"id", "input", "expected", "tags", "metadata"}`; only
//! `input` is required (a JSON object: a function's input, or the variables
//! a chat template sees). A case without an id is named by its position
//! (`case-1`, `case-2`, … counting from 1), so ids stay stable while the
//! file only grows at the end. Ids must be unique: the regression gate
//! pairs runs by them.
//!
//! CSV: a header row; the columns `id`, `expected`, `tags` (separated by
//! `;`) and `metadata.NAME` are what they say, every other column is an
//! input field (text). An `expected` cell holding JSON (an object, an array)
//! is read as JSON, anything else as text.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub input: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("case {at}: {message}")]
    Case { at: String, message: String },
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("a dataset file ends in .jsonl or .csv")]
    Format,
}

/// The case as written: everything optional but the input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: Option<Value>,
    input: Map<String, Value>,
    expected: Option<Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// Reads a `.jsonl` or `.csv` dataset.
pub fn read(path: &Path) -> Result<Vec<Case>, DatasetError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => read_jsonl(path),
        Some("csv") => read_csv(path),
        _ => Err(DatasetError::Format),
    }
}

/// Cases given inline in the eval file.
pub fn from_values(values: Vec<Value>) -> Result<Vec<Case>, DatasetError> {
    let raw = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<RawCase>(v).map_err(|e| DatasetError::Case {
                at: format!("#{}", i + 1),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    finish(raw)
}

fn read_jsonl(path: &Path) -> Result<Vec<Case>, DatasetError> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut raw = Vec::new();
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        raw.push(
            serde_json::from_str::<RawCase>(&line).map_err(|e| DatasetError::Case {
                at: format!("line {}", i + 1),
                message: e.to_string(),
            })?,
        );
    }
    finish(raw)
}

fn read_csv(path: &Path) -> Result<Vec<Case>, DatasetError> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let mut raw = Vec::new();
    for row in reader.records() {
        let row = row?;
        let mut case = RawCase {
            id: None,
            input: Map::new(),
            expected: None,
            tags: Vec::new(),
            metadata: Map::new(),
        };
        for (name, cell) in headers.iter().zip(row.iter()) {
            match name {
                "id" if !cell.is_empty() => case.id = Some(Value::String(cell.to_owned())),
                "id" => {}
                "expected" => case.expected = Some(cell_value(cell)),
                "tags" => {
                    case.tags = cell
                        .split(';')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                _ => match name.strip_prefix("metadata.") {
                    Some(key) => {
                        case.metadata.insert(key.to_owned(), cell.into());
                    }
                    None => {
                        case.input.insert(name.to_owned(), cell.into());
                    }
                },
            }
        }
        raw.push(case);
    }
    finish(raw)
}

/// JSON when the cell is an object or array, text otherwise (a cell saying
/// `42` is the text "42": an expected label, not a number).
fn cell_value(cell: &str) -> Value {
    let t = cell.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        serde_json::from_str(cell).unwrap_or_else(|_| cell.into())
    } else {
        cell.into()
    }
}

fn finish(raw: Vec<RawCase>) -> Result<Vec<Case>, DatasetError> {
    let mut seen = HashSet::new();
    let mut cases = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let id = match r.id {
            None => format!("case-{}", i + 1),
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(DatasetError::Case {
                    at: format!("#{}", i + 1),
                    message: format!("id must be a string or a number, not {other}"),
                });
            }
        };
        if !seen.insert(id.clone()) {
            return Err(DatasetError::Case {
                at: id,
                message: "two cases have this id".into(),
            });
        }
        cases.push(Case {
            id,
            input: r.input,
            expected: r.expected,
            tags: r.tags,
            metadata: r.metadata,
        });
    }
    Ok(cases)
}

/// Writes cases as JSON lines (what `keel eval capture` produces).
pub fn write_jsonl(cases: &[Case], out: &mut dyn Write) -> std::io::Result<()> {
    for case in cases {
        serde_json::to_writer(&mut *out, case)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_csv_and_inline_read_the_same_case() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("d.jsonl");
        std::fs::write(
            &jsonl,
            "{\"id\":\"a\",\"input\":{\"ticket\":\"x, y\"},\"expected\":{\"category\":\"bug\"},\"tags\":[\"t1\",\"t2\"],\"metadata\":{\"src\":\"s\"}}\n\n",
        )
        .unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(
            &csv,
            "id,ticket,expected,tags,metadata.src\na,\"x, y\",\"{\"\"category\"\":\"\"bug\"\"}\",t1; t2,s\n",
        )
        .unwrap();
        let inline = from_values(vec![serde_json::json!({
            "id": "a", "input": {"ticket": "x, y"}, "expected": {"category": "bug"},
            "tags": ["t1", "t2"], "metadata": {"src": "s"}
        })])
        .unwrap();
        assert_eq!(read(&jsonl).unwrap(), inline);
        assert_eq!(read(&csv).unwrap(), inline);
    }

    #[test]
    fn ids_default_to_positions_and_must_be_unique() {
        let cases = from_values(vec![
            serde_json::json!({"input": {}}),
            serde_json::json!({"id": 7, "input": {}}),
            serde_json::json!({"input": {}}),
        ])
        .unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["case-1", "7", "case-3"]);
        let dup = from_values(vec![
            serde_json::json!({"id": "x", "input": {}}),
            serde_json::json!({"id": "x", "input": {}}),
        ]);
        assert!(dup.unwrap_err().to_string().contains("two cases"));
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"input\":{}}\n{\"input\": 3}\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let p = dir.path().join("d.txt");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(read(&p), Err(DatasetError::Format)));
    }

    #[test]
    fn captured_cases_read_back() {
        let cases =
            from_values(vec![serde_json::json!({"id": "r1", "input": {"q": "hi"}})]).unwrap();
        let mut out = Vec::new();
        write_jsonl(&cases, &mut out).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, out).unwrap();
        assert_eq!(read(&p).unwrap(), cases);
    }
}
