//! Task datasets and pair files, with GPT-2's real tokenizer.

use patchlab::attribution::pair::answer_token;
use patchlab::dataset::{import, to_csv, to_jsonl, BadRow, Format, ImportResult, Prompts, Task};
use patchlab::model::Tokenizer;
use std::collections::HashSet;
use std::sync::OnceLock;

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(crate::common::load_tokenizer)
}

/// The number of distinct valid pairs of each task with GPT-2 (the task table
/// of docs/cli.md, rounded, and the module documentation state these).
const MAXIMA: [(Task, usize); 5] = [
    (Task::Ioi, 11_550_720),
    (Task::IoiThird, 531_333_120),
    (Task::GreaterThan, 29_664),
    (Task::Capitals, 8_790),
    (Task::Agreement, 21_120),
];

fn assert_valid(task: Task, p: &Prompts, bos: bool) {
    let t = tok();
    let c = t.encode(&p.clean, p.bos).unwrap();
    let k = t.encode(&p.corrupt, p.bos).unwrap();
    assert_eq!(c.len(), k.len(), "{task:?}: unequal lengths: {p:?}");
    assert_ne!(c, k, "{task:?}: same prompts: {p:?}");
    let correct = answer_token(t, "correct", &p.correct).unwrap();
    let incorrect = answer_token(t, "incorrect", &p.incorrect).unwrap();
    assert_ne!(correct, incorrect, "{p:?}");
    assert_eq!(p.bos, bos);
    match task {
        Task::GreaterThan => {
            let yy: u32 = p.incorrect.parse().unwrap();
            assert_eq!(p.metric, format!("greater_than:{yy:02}"));
            assert_eq!(p.correct, format!("{:02}", yy + 1));
            assert!((2..=98).contains(&yy), "{p:?}");
            // the start years split as " CC" + "YY" / " CC" + "01"
            let cc = &p.clean[p.clean.len() - 2..];
            let year = |y: &str| t.encode(&format!(" {cc}{y}"), false).unwrap();
            let two = |y: &str| {
                vec![
                    t.encode(&format!(" {cc}"), false).unwrap()[0],
                    t.encode(y, false).unwrap()[0],
                ]
            };
            assert!(p.clean.contains(&format!(" {cc}{yy:02} ")), "{p:?}");
            assert!(p.corrupt.contains(&format!(" {cc}01 ")), "{p:?}");
            assert_eq!(year(&p.incorrect), two(&p.incorrect), "{p:?}");
            assert_eq!(year("01"), two("01"), "{p:?}");
        }
        _ => assert_eq!(p.metric, "logit_diff"),
    }
}

#[test]
fn every_task_gives_valid_distinct_deterministic_pairs() {
    for task in Task::ALL {
        let mut firsts = HashSet::new();
        for seed in 0..20 {
            let bos = seed % 2 == 0;
            let pairs = task.generate(tok(), 100, seed, bos).unwrap();
            assert_eq!(pairs.len(), 100);
            for p in &pairs {
                assert_valid(task, p, bos);
            }
            let distinct: HashSet<_> = pairs.iter().map(|p| format!("{p:?}")).collect();
            assert_eq!(distinct.len(), 100, "{task:?} seed {seed}: repeated pairs");
            // distinct prompts too where the space is large (capitals has 255
            // clean prompts, agreement three verb pairs per prompt)
            if matches!(task, Task::Ioi | Task::IoiThird | Task::GreaterThan) {
                let prompts: HashSet<_> = pairs.iter().map(|p| &p.clean).collect();
                assert!(
                    prompts.len() >= 95,
                    "{task:?} seed {seed}: {}",
                    prompts.len()
                );
            }
            firsts.insert(format!("{pairs:?}"));
            if seed < 3 {
                assert_eq!(pairs, task.generate(tok(), 100, seed, bos).unwrap());
            }
        }
        assert_eq!(firsts.len(), 20, "{task:?}: seeds give the same pairs");
    }
}

#[test]
fn fewer_pairs_are_a_prefix() {
    for task in Task::ALL {
        let ten = task.generate(tok(), 10, 7, true).unwrap();
        let hundred = task.generate(tok(), 100, 7, true).unwrap();
        assert_eq!(ten[..], hundred[..10], "{task:?}");
    }
}

#[test]
fn the_first_ioi_pair_is_pinned() {
    // changes when a template, a word list, the PRNG or the order of the
    // combination space changes: datasets of a seed are meant to stay put
    let p = &Task::Ioi.generate(tok(), 1, 0, true).unwrap()[0];
    assert_eq!(
        p.clean,
        "When Anna and Brian went to the museum, Anna gave a key to"
    );
    assert_eq!(
        p.corrupt,
        "When Anna and Brian went to the museum, Brian gave a key to"
    );
    assert_eq!(
        (p.correct.as_str(), p.incorrect.as_str()),
        (" Brian", " Anna")
    );
    let p = &Task::IoiThird.generate(tok(), 1, 0, true).unwrap()[0];
    assert_eq!(
        p.corrupt,
        "Afterwards, Grace and Brian went to the store. Tim brought a hat to"
    );
    let p = &Task::GreaterThan.generate(tok(), 1, 0, true).unwrap()[0];
    assert_eq!(
        p.clean,
        "The rebellion started in the year 1110 and ended in the year 11"
    );
}

#[test]
fn bos_does_not_change_the_choice() {
    for task in Task::ALL {
        let with = task.generate(tok(), 30, 4, true).unwrap();
        let without = task.generate(tok(), 30, 4, false).unwrap();
        for (a, b) in with.iter().zip(&without) {
            assert!(a.bos && !b.bos);
            assert_eq!((&a.clean, &a.corrupt), (&b.clean, &b.corrupt));
        }
    }
}

#[test]
fn finite_tasks_give_all_their_pairs_and_no_more() {
    for task in [Task::Capitals, Task::Agreement] {
        let max = MAXIMA.iter().find(|m| m.0 == task).unwrap().1;
        let all = task.generate(tok(), max, 1, true).unwrap();
        let distinct: HashSet<_> = all.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(distinct.len(), max);
        let e = task
            .generate(tok(), max + 1, 1, true)
            .unwrap_err()
            .to_string();
        assert!(
            (e.contains(&format!("only {max} distinct valid pairs"))
                || e.contains(&format!("at most {max} distinct pairs")))
                && e.contains(task.name()),
            "{e}"
        );
    }
    let e = Task::Ioi
        .generate(tok(), 20_000_000, 0, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ioi task has at most 11550720 distinct pairs"),
        "{e}"
    );
    assert!(Task::Ioi.generate(tok(), 0, 0, true).unwrap().is_empty());
}

#[test]
fn maxima_are_as_documented() {
    let found: Vec<(Task, usize)> = MAXIMA
        .iter()
        .map(|&(task, _)| (task, task.max_pairs(tok()).unwrap()))
        .collect();
    assert_eq!(found, MAXIMA);
}

const HEADER: &str = "clean,corrupt,correct,incorrect";
const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";
// as CSV fields (the prompts hold a comma)
const QCLEAN: &str = "\"When Mary and John went to the store, John gave a drink to\"";
const QCORRUPT: &str = "\"When Mary and John went to the store, Mary gave a drink to\"";

fn csv(text: &str) -> patchlab::Result<ImportResult> {
    import(text, Format::Csv, tok(), true)
}

fn bad(r: &ImportResult) -> Vec<(usize, &str)> {
    r.bad.iter().map(|b| (b.line, b.reason.as_str())).collect()
}

#[test]
fn csv_import_reads_quoted_answers_in_any_column_order() {
    let text = format!(
        "incorrect, correct ,clean,corrupt,notes\n\" John\",\" Mary\",{QCLEAN},{QCORRUPT},\"a, b\"\n"
    );
    let r = csv(&text).unwrap();
    assert!(r.bad.is_empty(), "{:?}", r.bad);
    assert_eq!(
        r.pairs,
        vec![Prompts {
            clean: CLEAN.into(),
            corrupt: CORRUPT.into(),
            correct: " Mary".into(),
            incorrect: " John".into(),
            bos: true,
            metric: "logit_diff".into(),
        }]
    );
}

#[test]
fn csv_import_reports_bad_rows_with_line_numbers() {
    let text = [
        &format!("{HEADER},metric"),
        &format!("{QCLEAN},{QCORRUPT},\" Mary\",\" John\","),
        // line 3: unequal lengths
        &format!("{QCLEAN},\"When Mary and John went to the big store, Mary gave a drink to\",\" Mary\",\" John\","),
        // line 4: a multi-token answer
        &format!("{QCLEAN},{QCORRUPT},\" Maryland Avenue\",\" John\","),
        "",
        // line 6: identical prompts
        &format!("{QCLEAN},{QCLEAN},\" Mary\",\" John\","),
        // line 7: missing fields
        &format!("{QCLEAN},{QCORRUPT}"),
        // line 8: malformed quoting
        &format!("{QCLEAN},{QCORRUPT},\" Mary\"x,\" John\","),
        // lines 9-11: a greater-than row over three lines
        "\"The war lasted from the year 1742\nto the year 17\",\"The war lasted from the year 1701\nto the year 17\",43,42,greater_than:42",
        // line 12: an unknown metric
        &format!("{QCLEAN},{QCORRUPT},\" Mary\",\" John\",prob"),
        // line 13: the same answer twice
        &format!("{QCLEAN},{QCORRUPT},\" Mary\",\" Mary\","),
        // line 14: an empty prompt
        &format!(",{QCORRUPT},\" Mary\",\" John\","),
    ]
    .join("\n");
    let r = csv(&text).unwrap();
    assert_eq!(r.pairs.len(), 2);
    assert_eq!(r.pairs[1].metric, "greater_than:42");
    assert_eq!(r.pairs[1].correct, "43");
    let b = bad(&r);
    let lines: Vec<usize> = b.iter().map(|b| b.0).collect();
    assert_eq!(lines, [3, 4, 6, 7, 8, 12, 13, 14]);
    let has = |i: usize, words: &[&str]| {
        assert!(words.iter().all(|w| b[i].1.contains(w)), "{:?}", b[i]);
    };
    has(0, &["same number of tokens", "clean has 15 and corrupt 16"]);
    has(1, &["\" Maryland Avenue\"", "2 tokens"]);
    has(2, &["same tokens"]);
    has(3, &["has 2 fields", "5 columns"]);
    has(4, &["malformed CSV", "after a closing quote"]);
    has(5, &["unknown metric \"prob\""]);
    has(6, &["same token"]);
    has(7, &["clean prompt is empty"]);
}

#[test]
fn csv_import_errors() {
    for (text, words) in [
        ("", &["empty"][..]),
        ("\n\n", &["empty"][..]),
        ("clean,corrupt,correct\n", &["lacks incorrect"][..]),
        (
            &format!("{QCLEAN},{QCORRUPT},\" Mary\",\" John\"\n"),
            &["header (line 1)", "lacks"][..],
        ),
        (
            "clean,corrupt,correct,incorrect,clean\n",
            &["`clean` twice"][..],
        ),
        (
            "\"clean,corrupt,correct,incorrect\n",
            &["header (line 1)", "never closed"][..],
        ),
        (HEADER, &["no rows"][..]),
        (
            &format!("{HEADER}\n{QCLEAN},{QCLEAN},\" Mary\",\" John\"\n"),
            &["no row", "line 2: ", "same tokens"][..],
        ),
    ] {
        let e = csv(text).unwrap_err().to_string();
        assert!(words.iter().all(|w| e.contains(w)), "{text:?}: {e}");
    }
}

#[test]
fn csv_quoting_edge_cases() {
    let pairs = vec![Prompts {
        clean: "He said \"stop, now\", and John gave a drink to".into(),
        corrupt: "He said \"stop, now\", and Mary gave a drink to".into(),
        correct: " Mary".into(),
        incorrect: " John".into(),
        bos: false,
        metric: "logit_diff".into(),
    }];
    let text = to_csv(&pairs);
    assert_eq!(
        text,
        "clean,corrupt,correct,incorrect,metric\n\"He said \"\"stop, now\"\", and John gave a drink to\",\"He said \"\"stop, now\"\", and Mary gave a drink to\",\" Mary\",\" John\",logit_diff\n"
    );
    let back = import(&text, Format::Csv, tok(), false).unwrap();
    assert_eq!(back.pairs, pairs);
    // CRLF, a byte-order mark, an unquoted leading space, blank lines, no final newline
    let text = format!("\u{feff}{HEADER}\r\n\r\n{QCLEAN},{QCORRUPT}, Mary, John");
    let r = csv(&text).unwrap();
    assert!(r.bad.is_empty(), "{:?}", r.bad);
    assert_eq!(r.pairs[0].correct, " Mary");
    // a quote in the middle of an unquoted field
    let r = csv(&format!(
        "{HEADER}\n{QCLEAN},{QCORRUPT},Ma\"ry,\" John\"\n{QCLEAN},{QCORRUPT},\" Mary\",\" John\""
    ))
    .unwrap();
    assert_eq!(bad(&r).len(), 1);
    assert_eq!(r.bad[0].line, 2);
    assert!(
        r.bad[0].reason.contains("quote inside an unquoted field"),
        "{:?}",
        r.bad
    );
    // an unterminated quote eats the rest of the file: one bad row where it opened
    let r = csv(&format!(
        "{HEADER}\n{QCLEAN},{QCORRUPT},\" Mary\",\" John\"\n{QCLEAN},{QCORRUPT},\" Mary, John\n\n"
    ))
    .unwrap();
    assert_eq!(r.pairs.len(), 1);
    assert_eq!(
        r.bad,
        vec![BadRow {
            line: 3,
            reason: "malformed CSV: a quoted field opened on line 3 is never closed".into()
        }]
    );
    // text after a closing quote: that row only
    let r = csv(&format!("{HEADER}\n{QCLEAN},{QCORRUPT},\" Mary,\" John\"\n{QCLEAN},{QCORRUPT},\" Mary\",\" John\"\n")).unwrap();
    assert_eq!(r.pairs.len(), 1);
    assert_eq!(r.bad.len(), 1);
    assert_eq!(r.bad[0].line, 2);
    assert!(
        r.bad[0].reason.contains("after a closing quote"),
        "{:?}",
        r.bad
    );
}

#[test]
fn jsonl_import_reports_bad_rows_with_line_numbers() {
    let good = serde_json::json!({"clean": CLEAN, "corrupt": CORRUPT, "correct": " Mary", "incorrect": " John"}).to_string();
    let text = [
        good.as_str(),
        "",
        r#"{"clean": "a", "corrupt": "b", "correct": " Mary"}"#,
        r#"{"clean": "a", "corrupt": "b", "correct": " Mary", "incorrect": 5}"#,
        r#"{"clean": "a", "corrupt": "#,
        r#"["a", "b"]"#,
        r#"{"clean": "The capital of France is", "corrupt": "The capital of the United States is", "correct": " Paris", "incorrect": " Washington"}"#,
        r#"{"clean": "The capital of France is", "corrupt": "The capital of Spain is", "correct": " Paris", "incorrect": " Madrid", "metric": null, "bos": false, "id": 7}"#,
    ]
    .join("\n");
    let r = import(&text, Format::Jsonl, tok(), true).unwrap();
    assert_eq!(r.pairs.len(), 2);
    assert!(r.pairs.iter().all(|p| p.bos && p.metric == "logit_diff"));
    let b = bad(&r);
    assert_eq!(b.iter().map(|b| b.0).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
    assert!(b[0].1.contains("missing field `incorrect`"), "{b:?}");
    assert!(b[1].1.contains("`incorrect` must be a string"), "{b:?}");
    assert!(b[2].1.contains("not valid JSON"), "{b:?}");
    assert!(b[3].1.contains("not a JSON object"), "{b:?}");
    assert!(b[4].1.contains("clean has 6 and corrupt 8"), "{b:?}");
    for text in ["", "\n  \n"] {
        let e = import(text, Format::Jsonl, tok(), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no rows"), "{e}");
    }
}

#[test]
fn generated_datasets_round_trip_through_both_formats() {
    for task in Task::ALL {
        for bos in [true, false] {
            let pairs = task.generate(tok(), 50, 3, bos).unwrap();
            for (format, text) in [
                (Format::Csv, to_csv(&pairs)),
                (Format::Jsonl, to_jsonl(&pairs)),
            ] {
                let back = import(&text, format, tok(), bos).unwrap();
                assert!(back.bad.is_empty(), "{task:?} {format:?}: {:?}", back.bad);
                assert_eq!(back.pairs, pairs, "{task:?} {format:?}");
                // one line per pair plus the CSV header
                let lines = text.lines().count();
                assert_eq!(lines, 50 + usize::from(format == Format::Csv));
            }
        }
    }
}

#[test]
fn formats_come_from_file_names() {
    assert_eq!(Format::from_path("data/ioi.csv").unwrap(), Format::Csv);
    assert_eq!(Format::from_path("ioi.jsonl").unwrap(), Format::Jsonl);
    let e = Format::from_path("ioi.json").unwrap_err().to_string();
    assert!(e.contains(".csv or .jsonl"), "{e}");
}
