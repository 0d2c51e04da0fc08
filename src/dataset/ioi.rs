//! Indirect object identification (Wang et al. 2022):
//! "When Mary and John went to the store, John gave a drink to" → " Mary".
//!
//! The clean prompt names two people, then the subject (S) gives something to
//! the other one, the indirect object (IO); the answer is IO, the incorrect
//! answer S. The corruption replaces the repeated subject: by IO ("hard",
//! task `ioi`: "…, Mary gave a drink to") or by a third name (task
//! `ioi-third`: "…, Kate gave a drink to"). Both orders of the first two
//! names occur (IO first, "ABB", and S first, "BAB").
//!
//! Combination space: 10 templates × 16 places × 16 objects × 2 orders ×
//! 48 × 47 name pairs = 11,550,720 pairs for `ioi`, × 46 third names =
//! 531,333,120 for `ioi-third`; every name is one GPT-2 token with its
//! leading space, so every combination is valid.

use super::{digits, fill, sample, space, Prompts};
use crate::error::Result;
use crate::model::Tokenizer;

/// What replaces the repeated subject in the corrupt prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoiCorruption {
    /// The other name (the indirect object): task `ioi`.
    Hard,
    /// A third name: task `ioi-third`.
    ThirdName,
}

/// `{A}` and `{B}` are the first two names (IO and S in either order), `{S}`
/// the repeated subject; each placeholder of a name stands for " Name".
pub const TEMPLATES: [&str; 10] = [
    "When{A} and{B} went to the {place},{S} gave a {object} to",
    "When{A} and{B} got a {object} at the {place},{S} decided to give it to",
    "Then,{A} and{B} went to the {place}.{S} gave a {object} to",
    "After{A} and{B} went to the {place},{S} handed a {object} to",
    "While{A} and{B} were working at the {place},{S} gave a {object} to",
    "Friends{A} and{B} found a {object} at the {place}.{S} gave it to",
    "Afterwards,{A} and{B} went to the {place}.{S} brought a {object} to",
    "When{A} and{B} arrived at the {place},{S} threw a {object} to",
    "At the {place},{A} and{B} were talking. Then{S} offered a {object} to",
    "The {place} was busy when{A} and{B} arrived, so{S} passed a {object} to",
];

pub const PLACES: [&str; 16] = [
    "store",
    "park",
    "school",
    "station",
    "office",
    "restaurant",
    "hospital",
    "beach",
    "library",
    "market",
    "garden",
    "house",
    "cafe",
    "museum",
    "church",
    "bank",
];

/// Objects that take "a" (no vowel sounds first).
pub const OBJECTS: [&str; 16] = [
    "drink", "book", "ball", "bag", "ring", "snack", "necklace", "gift", "pen", "letter", "cake",
    "computer", "bottle", "flower", "hat", "key",
];

/// Names that are one GPT-2 token with a leading space.
pub const NAMES: [&str; 48] = [
    " Mary", " John", " Alice", " Bob", " Tom", " Kate", " James", " Sarah", " David", " Anna",
    " Michael", " Emma", " Paul", " Laura", " Mark", " Lisa", " Peter", " Rachel", " Daniel",
    " Jessica", " Robert", " Linda", " Steven", " Susan", " Kevin", " Karen", " Brian", " Amy",
    " Jason", " Emily", " Eric", " Sam", " Adam", " Julia", " Ryan", " Grace", " Andrew", " Helen",
    " Jack", " Rose", " Richard", " Anne", " George", " Claire", " Chris", " Maria", " Tim",
    " Jane",
];

fn radices(corruption: IoiCorruption) -> [usize; 7] {
    let third = match corruption {
        IoiCorruption::Hard => 1,
        IoiCorruption::ThirdName => NAMES.len() - 2,
    };
    [
        TEMPLATES.len(),
        PLACES.len(),
        OBJECTS.len(),
        2,
        NAMES.len(),
        NAMES.len() - 1,
        third,
    ]
}

/// The pair of one combination.
fn make(index: u64, corruption: IoiCorruption, bos: bool) -> Prompts {
    let [t, p, o, order, io, s, c] = digits(index, radices(corruption));
    // s and c index the names left after removing the earlier picks
    let s = if s >= io { s + 1 } else { s };
    let c = (0..NAMES.len())
        .filter(|&i| i != io && i != s)
        .nth(c)
        .expect("a third name");
    let (io, s, c) = (NAMES[io], NAMES[s], NAMES[c]);
    let (a, b) = if order == 0 { (io, s) } else { (s, io) };
    let base = [
        ("A", a),
        ("B", b),
        ("place", PLACES[p]),
        ("object", OBJECTS[o]),
    ];
    let prompt = |subject: &str| {
        let mut vars = base.to_vec();
        vars.push(("S", subject));
        fill(TEMPLATES[t], &vars)
    };
    let corrupt_subject = match corruption {
        IoiCorruption::Hard => io,
        IoiCorruption::ThirdName => c,
    };
    Prompts {
        clean: prompt(s),
        corrupt: prompt(corrupt_subject),
        correct: io.to_string(),
        incorrect: s.to_string(),
        bos,
        metric: "logit_diff".into(),
    }
}

/// `n` distinct IOI pairs, the same for the same seed.
pub fn generate(
    tok: &Tokenizer,
    n: usize,
    seed: u64,
    corruption: IoiCorruption,
    bos: bool,
) -> Result<Vec<Prompts>> {
    let task = match corruption {
        IoiCorruption::Hard => "ioi",
        IoiCorruption::ThirdName => "ioi-third",
    };
    sample(task, tok, n, seed, space(radices(corruption)), |i| {
        Some(make(i, corruption, bos))
    })
}

/// The size of the combination space, after checking that every name is one
/// token (which makes every combination valid).
pub fn max_pairs(tok: &Tokenizer, corruption: IoiCorruption) -> Result<usize> {
    for name in NAMES {
        crate::attribution::pair::answer_token(tok, "name", name)?;
    }
    Ok(space(radices(corruption)) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::test_tokenizer::gpt2;
    use std::collections::HashSet;

    #[test]
    fn word_lists_have_no_duplicates() {
        assert_eq!(NAMES.iter().collect::<HashSet<_>>().len(), NAMES.len());
        assert_eq!(PLACES.iter().collect::<HashSet<_>>().len(), PLACES.len());
        assert_eq!(OBJECTS.iter().collect::<HashSet<_>>().len(), OBJECTS.len());
        assert_eq!(
            TEMPLATES.iter().collect::<HashSet<_>>().len(),
            TEMPLATES.len()
        );
    }

    #[test]
    fn templates_use_every_placeholder_once_per_name() {
        for t in TEMPLATES {
            for k in ["{A}", "{B}", "{S}", "{place}", "{object}"] {
                assert_eq!(t.matches(k).count(), 1, "{t} {k}");
            }
        }
    }

    #[test]
    fn every_name_is_one_token() {
        let tok = gpt2();
        for n in NAMES {
            assert_eq!(tok.encode(n, false).unwrap().len(), 1, "{n:?}");
        }
    }

    #[test]
    fn combinations_decode_as_described() {
        let p = make(0, IoiCorruption::Hard, true);
        assert_eq!(
            p.clean,
            "When Mary and John went to the store, John gave a drink to"
        );
        assert_eq!(
            p.corrupt,
            "When Mary and John went to the store, Mary gave a drink to"
        );
        assert_eq!(
            (p.correct.as_str(), p.incorrect.as_str()),
            (" Mary", " John")
        );
        let p = make(0, IoiCorruption::ThirdName, true);
        assert_eq!(
            p.corrupt,
            "When Mary and John went to the store, Alice gave a drink to"
        );
        // the last combination: names 47 and 46, third name 45
        let last = space(radices(IoiCorruption::ThirdName)) - 1;
        let p = make(last, IoiCorruption::ThirdName, false);
        assert_eq!(p.correct, " Jane");
        assert_eq!(p.incorrect, " Tim");
        assert!(p.corrupt.contains(" Maria passed"), "{}", p.corrupt);
    }

    #[test]
    fn third_names_differ_from_both() {
        let len = space(radices(IoiCorruption::ThirdName));
        for i in (0..len).step_by(1_000_003) {
            let p = make(i, IoiCorruption::ThirdName, true);
            assert_ne!(p.correct, p.incorrect);
            let words = |s: &str| -> Vec<String> {
                s.split_whitespace()
                    .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()).to_string())
                    .collect()
            };
            let (c, k) = (words(&p.clean), words(&p.corrupt));
            let diff: Vec<usize> = (0..c.len()).filter(|&j| c[j] != k[j]).collect();
            assert_eq!(diff.len(), 1, "{p:?}");
            let third = &k[diff[0]];
            assert_eq!(c[diff[0]], p.incorrect.trim());
            assert!(
                third != p.correct.trim() && third != p.incorrect.trim(),
                "{p:?}"
            );
        }
    }
}
