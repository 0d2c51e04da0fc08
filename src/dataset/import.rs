//! Pair files: CSV (RFC 4180) and JSONL, read and written.
//!
//! CSV: a header row names the columns `clean`, `corrupt`, `correct`,
//! `incorrect` in any order, optionally `metric` (empty means
//! `logit_diff`); other columns are ignored. Fields are taken exactly as
//! written — quote answers with a leading space: `" Mary"` (an unquoted
//! ` Mary` keeps its space too). Quoted fields may hold commas, quotes (as
//! `""`) and line breaks; spaces around a quoted field are ignored.
//!
//! JSONL: one object per line with the same keys (`metric` optional).
//!
//! Files carry no BOS setting: the caller's `bos` applies to every row (a
//! `bos` key or column is ignored). Every row is checked with the tokenizer
//! as the engine would; rows that fail are returned as [`BadRow`]s with their
//! 1-based line number (the line a multi-line CSV record starts on), never
//! dropped silently.

use super::{Checker, Prompts};
use crate::error::{Error, Result};
use crate::model::Tokenizer;

/// A pair file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format a file name's extension says: `.csv`, or `.jsonl` / `.ndjson`.
    pub fn from_path(path: &str) -> Result<Format> {
        let ext = path
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .filter(|e| !e.contains('/') && !e.contains('\\'))
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(Error::Input(format!(
                "cannot tell the format of {path:?} from its name: pair files end in .csv or .jsonl"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Jsonl => "JSONL",
        }
    }
}

/// A row that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

/// The pairs of a file that passed every check, and the rows that did not.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportResult {
    pub pairs: Vec<Prompts>,
    pub bad: Vec<BadRow>,
}

const REQUIRED: [&str; 4] = ["clean", "corrupt", "correct", "incorrect"];

/// Reads a pair file. An error when the file has no usable header (CSV) or
/// no valid rows at all (the message lists the first bad rows); otherwise the
/// valid pairs and the bad rows, for the caller to report or refuse.
pub fn import(text: &str, format: Format, tok: &Tokenizer, bos: bool) -> Result<ImportResult> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = match format {
        Format::Csv => csv_rows(text)?,
        Format::Jsonl => jsonl_rows(text),
    };
    let mut checker = Checker::new(tok);
    let mut out = ImportResult {
        pairs: Vec::new(),
        bad: Vec::new(),
    };
    let n_rows = rows.len();
    for (line, row) in rows {
        let checked = row.and_then(|f| {
            let p = Prompts {
                clean: f.clean,
                corrupt: f.corrupt,
                correct: f.correct,
                incorrect: f.incorrect,
                bos,
                metric: f.metric.unwrap_or_else(|| "logit_diff".into()),
            };
            checker.check(&p).map(|()| p)
        });
        match checked {
            Ok(p) => out.pairs.push(p),
            Err(reason) => out.bad.push(BadRow { line, reason }),
        }
    }
    if n_rows == 0 {
        return Err(Error::Input(format!(
            "the {} file has no rows: {}",
            format.name(),
            match format {
                Format::Csv => "after the header, write one pair per line",
                Format::Jsonl =>
                    "write one object per line with keys clean, corrupt, correct, incorrect",
            }
        )));
    }
    if out.pairs.is_empty() {
        let shown: Vec<String> = out
            .bad
            .iter()
            .take(10)
            .map(|b| format!("  line {}: {}", b.line, b.reason))
            .collect();
        let more = out.bad.len().saturating_sub(shown.len());
        return Err(Error::Input(format!(
            "no row of the {} file is a valid pair:\n{}{}",
            format.name(),
            shown.join("\n"),
            if more > 0 {
                format!("\n  … and {more} more")
            } else {
                String::new()
            }
        )));
    }
    Ok(out)
}

/// The fields of one row, before the tokenizer checks.
struct Fields {
    clean: String,
    corrupt: String,
    correct: String,
    incorrect: String,
    metric: Option<String>,
}

type Row = (usize, std::result::Result<Fields, String>);

fn jsonl_rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        rows.push((i + 1, json_fields(line)));
    }
    rows
}

fn json_fields(line: &str) -> std::result::Result<Fields, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or(
        "not a JSON object: write {\"clean\": …, \"corrupt\": …, \"correct\": …, \"incorrect\": …}",
    )?;
    let text = |key: &str| -> std::result::Result<String, String> {
        match obj.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{key}` must be a string")),
            None => Err(format!("missing field `{key}`")),
        }
    };
    let metric = match obj.get("metric") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`metric` must be a string".into()),
    };
    Ok(Fields {
        clean: text("clean")?,
        corrupt: text("corrupt")?,
        correct: text("correct")?,
        incorrect: text("incorrect")?,
        metric,
    })
}

fn csv_rows(text: &str) -> Result<Vec<Row>> {
    let mut records = parse_csv(text).into_iter();
    let (header_line, header) = records.next().ok_or_else(|| {
        Error::Input(format!(
            "the CSV file is empty: its first line must name the columns {}",
            REQUIRED.join(",")
        ))
    })?;
    let header = header.map_err(|e| {
        Error::Input(format!(
            "the CSV header (line {header_line}) cannot be read: {e}"
        ))
    })?;
    let names: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| col(r).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "the CSV header (line {header_line}) must name the columns {} (optionally metric), but it lacks {} (found: {})",
            REQUIRED.join(", "),
            missing.join(", "),
            header.join(",")
        )));
    }
    for (i, n) in names.iter().enumerate() {
        if !n.is_empty() && names[..i].contains(n) {
            return Err(Error::Input(format!(
                "the CSV header (line {header_line}) names the column `{n}` twice"
            )));
        }
    }
    let idx = REQUIRED.map(|r| col(r).expect("checked"));
    let metric = col("metric");
    Ok(records
        .map(|(line, rec)| {
            let fields = rec.and_then(|f| {
                if f.len() != names.len() {
                    return Err(format!(
                        "has {} fields, but the header has {} columns",
                        f.len(),
                        names.len()
                    ));
                }
                Ok(Fields {
                    clean: f[idx[0]].clone(),
                    corrupt: f[idx[1]].clone(),
                    correct: f[idx[2]].clone(),
                    incorrect: f[idx[3]].clone(),
                    metric: metric.map(|m| f[m].clone()).filter(|m| !m.is_empty()),
                })
            });
            (line, fields)
        })
        .collect())
}

/// CSV records with the line each starts on; blank lines are skipped.
/// A malformed record (a quote inside an unquoted field, text after a closing
/// quote, an unterminated quote) is an error for that record only: reading
/// resumes on the next line.
fn parse_csv(text: &str) -> Vec<(usize, std::result::Result<Vec<String>, String>)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut start = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field was quoted
    let mut in_quotes = false;
    let mut error: Option<String> = None;
    loop {
        let c = chars.next();
        if in_quotes {
            match c {
                None => {
                    error = Some(format!(
                        "a quoted field opened on line {start} is never closed"
                    ));
                }
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                    continue;
                }
                Some('"') => {
                    in_quotes = false;
                    continue;
                }
                Some(c) => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                    continue;
                }
            }
        }
        // after an error, skip to the end of the line
        if error.is_some() && !matches!(c, None | Some('\n' | '\r')) {
            continue;
        }
        match c {
            Some('"') if field.trim().is_empty() && !quoted => {
                field.clear();
                quoted = true;
                in_quotes = true;
                continue;
            }
            Some('"') => {
                error.get_or_insert_with(|| {
                    if quoted {
                        "text after a closing quote (write a quote inside a quoted field as \"\")"
                            .into()
                    } else {
                        "a quote inside an unquoted field (quote the whole field and write the quote as \"\")".into()
                    }
                });
                continue;
            }
            Some(',') => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                continue;
            }
            Some('\r') if chars.peek() == Some(&'\n') => continue,
            Some(c) if c != '\n' && c != '\r' => {
                if quoted && !c.is_whitespace() {
                    error.get_or_insert_with(|| {
                        "text after a closing quote (quote the whole field)".into()
                    });
                } else if !quoted {
                    field.push(c);
                }
                continue;
            }
            _ => {}
        }
        // end of a record: a line break outside quotes, or the end of the text
        let blank = fields.is_empty() && field.trim().is_empty() && !quoted && error.is_none();
        if !blank {
            fields.push(std::mem::take(&mut field));
            let rec = match error.take() {
                Some(e) => Err(format!("malformed CSV: {e}")),
                None => Ok(std::mem::take(&mut fields)),
            };
            out.push((start, rec));
        }
        fields.clear();
        field.clear();
        quoted = false;
        if c.is_none() {
            break;
        }
        line += 1;
        start = line;
    }
    out
}

fn csv_field(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.contains([',', '"', '\n', '\r'])
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace);
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// CSV with the header `clean,corrupt,correct,incorrect,metric` (fields
/// with spaces at either end, commas, quotes or line breaks are quoted).
pub fn to_csv(pairs: &[Prompts]) -> String {
    let mut s = String::from("clean,corrupt,correct,incorrect,metric\n");
    for p in pairs {
        let row = [&p.clean, &p.corrupt, &p.correct, &p.incorrect, &p.metric].map(|f| csv_field(f));
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// One JSON object per line with keys clean, corrupt, correct, incorrect, metric.
pub fn to_jsonl(pairs: &[Prompts]) -> String {
    let mut s = String::new();
    for p in pairs {
        let obj = serde_json::json!({
            "clean": p.clean,
            "corrupt": p.corrupt,
            "correct": p.correct,
            "incorrect": p.incorrect,
            "metric": p.metric,
        });
        s.push_str(&obj.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(usize, Vec<String>)> {
        parse_csv(text)
            .into_iter()
            .map(|(l, r)| (l, r.unwrap_or_else(|e| panic!("line {l}: {e}"))))
            .collect()
    }

    fn v(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csv_plain_and_quoted() {
        assert_eq!(
            ok("a,b\n\" Mary\",\"x,\"\"y\"\"\"\n"),
            vec![(1, v(&["a", "b"])), (2, v(&[" Mary", "x,\"y\""]))]
        );
        // CRLF, no final newline, empty fields, unquoted leading space kept
        assert_eq!(
            ok("a,b,c\r\n, John,\r\n1,2,3"),
            vec![
                (1, v(&["a", "b", "c"])),
                (2, v(&["", " John", ""])),
                (3, v(&["1", "2", "3"]))
            ]
        );
        // a quoted empty field is a field
        assert_eq!(ok("\"\"\n"), vec![(1, v(&[""]))]);
    }

    #[test]
    fn csv_line_breaks_in_quotes_count_lines() {
        assert_eq!(
            ok("h\n\"one\ntwo\"\n\nthree\n"),
            vec![(1, v(&["h"])), (2, v(&["one\ntwo"])), (5, v(&["three"]))]
        );
    }

    #[test]
    fn csv_spaces_around_quotes_are_ignored() {
        assert_eq!(ok("a, \" Mary\" ,b"), vec![(1, v(&["a", " Mary", "b"]))]);
    }

    #[test]
    fn csv_malformed_records_are_errors_and_reading_resumes() {
        let r = parse_csv("a,b\nx\"y,z\n\"ab\"c,d\nok,1\n\"open,2\nmore\n");
        assert_eq!(r.len(), 5);
        assert!(r[1]
            .1
            .as_ref()
            .unwrap_err()
            .contains("quote inside an unquoted"));
        assert_eq!(r[1].0, 2);
        assert!(r[2]
            .1
            .as_ref()
            .unwrap_err()
            .contains("after a closing quote"));
        assert_eq!(r[2].0, 3);
        assert_eq!(r[3], (4, Ok(v(&["ok", "1"]))));
        assert_eq!(r[4].0, 5);
        assert!(r[4].1.as_ref().unwrap_err().contains("never closed"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(" Mary"), "\" Mary\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(""), "\"\"");
        let back = ok(&format!("{}\n", csv_field("x\ny, \"z\" ")));
        assert_eq!(back, vec![(1, v(&["x\ny, \"z\" "]))]);
    }

    #[test]
    fn formats_from_paths() {
        assert_eq!(Format::from_path("a/b.CSV").unwrap(), Format::Csv);
        assert_eq!(Format::from_path("pairs.jsonl").unwrap(), Format::Jsonl);
        assert_eq!(Format::from_path("pairs.ndjson").unwrap(), Format::Jsonl);
        for bad in ["pairs.json", "pairs", "dir.csv/pairs", ""] {
            assert!(Format::from_path(bad).is_err(), "{bad}");
        }
    }
}
