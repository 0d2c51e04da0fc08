//! Capital of a country: "The capital of France is" → " Paris".
//!
//! The corrupt prompt names another country whose name has the same number
//! of tokens and whose capital differs ("The capital of Spain is"); the
//! incorrect answer is that country's capital (" Madrid"). Every capital in
//! the list is one GPT-2 token with its leading space.
//!
//! Combination space: 5 templates × 51 × 50 ordered country pairs = 12,750;
//! pairs of countries whose names tokenize to different lengths (France /
//! the United States) or share a capital are skipped, which leaves 8,790
//! valid pairs.

use super::{digits, fill, sample, space, Prompts};
use crate::error::Result;
use crate::model::Tokenizer;

pub const TEMPLATES: [&str; 5] = [
    "The capital of {country} is",
    "The capital city of {country} is",
    "The government of {country} is based in",
    "Q: What is the capital of {country}? A:",
    "In {country}, the capital city is",
];

/// (country as it reads after "of", capital with its leading space).
pub const COUNTRIES: [(&str, &str); 51] = [
    ("France", " Paris"),
    ("Spain", " Madrid"),
    ("Italy", " Rome"),
    ("Germany", " Berlin"),
    ("Japan", " Tokyo"),
    ("China", " Beijing"),
    ("Russia", " Moscow"),
    ("Egypt", " Cairo"),
    ("Greece", " Athens"),
    ("Canada", " Ottawa"),
    ("Australia", " Canberra"),
    ("Ireland", " Dublin"),
    ("England", " London"),
    ("Poland", " Warsaw"),
    ("Austria", " Vienna"),
    ("Hungary", " Budapest"),
    ("Portugal", " Lisbon"),
    ("Norway", " Oslo"),
    ("Sweden", " Stockholm"),
    ("Finland", " Helsinki"),
    ("Denmark", " Copenhagen"),
    ("Belgium", " Brussels"),
    ("Switzerland", " Bern"),
    ("Turkey", " Ankara"),
    ("Iran", " Tehran"),
    ("Iraq", " Baghdad"),
    ("Syria", " Damascus"),
    ("Lebanon", " Beirut"),
    ("Israel", " Jerusalem"),
    ("Afghanistan", " Kabul"),
    ("Pakistan", " Islamabad"),
    ("Thailand", " Bangkok"),
    ("Indonesia", " Jakarta"),
    ("Peru", " Lima"),
    ("Chile", " Santiago"),
    ("Cuba", " Havana"),
    ("Ukraine", " Kiev"),
    ("Scotland", " Edinburgh"),
    ("Wales", " Cardiff"),
    ("Libya", " Tripoli"),
    ("Tunisia", " Tunis"),
    ("Jamaica", " Kingston"),
    ("the Netherlands", " Amsterdam"),
    ("the Philippines", " Manila"),
    ("New Zealand", " Wellington"),
    ("Saudi Arabia", " Riyadh"),
    ("North Korea", " Pyongyang"),
    ("South Korea", " Seoul"),
    ("the United States", " Washington"),
    ("the United Kingdom", " London"),
    ("the Czech Republic", " Prague"),
];

fn radices() -> [usize; 3] {
    [TEMPLATES.len(), COUNTRIES.len(), COUNTRIES.len() - 1]
}

fn make(index: u64, bos: bool) -> Option<Prompts> {
    let [t, a, b] = digits(index, radices());
    let b = if b >= a { b + 1 } else { b };
    let ((clean, correct), (corrupt, incorrect)) = (COUNTRIES[a], COUNTRIES[b]);
    if correct == incorrect {
        return None;
    }
    let prompt = |country: &str| fill(TEMPLATES[t], &[("country", country)]);
    Some(Prompts {
        clean: prompt(clean),
        corrupt: prompt(corrupt),
        correct: correct.to_string(),
        incorrect: incorrect.to_string(),
        bos,
        metric: "logit_diff".into(),
    })
}

/// `n` distinct capital pairs, the same for the same seed.
pub fn generate(tok: &Tokenizer, n: usize, seed: u64, bos: bool) -> Result<Vec<Prompts>> {
    sample("capitals", tok, n, seed, space(radices()), |i| make(i, bos))
}

/// How many valid pairs there are (every combination checked).
pub fn max_pairs(tok: &Tokenizer) -> Result<usize> {
    Ok(super::count(tok, space(radices()), |i| make(i, true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::test_tokenizer::gpt2;
    use std::collections::HashSet;

    #[test]
    fn every_capital_is_one_token() {
        let tok = gpt2();
        for (country, capital) in COUNTRIES {
            assert_eq!(tok.encode(capital, false).unwrap().len(), 1, "{country}");
        }
        let names: HashSet<_> = COUNTRIES.iter().map(|c| c.0).collect();
        assert_eq!(names.len(), COUNTRIES.len());
    }

    #[test]
    fn shared_capitals_are_skipped() {
        let england = COUNTRIES.iter().position(|c| c.0 == "England").unwrap();
        let uk = COUNTRIES
            .iter()
            .position(|c| c.0 == "the United Kingdom")
            .unwrap();
        let index = (england * (COUNTRIES.len() - 1) + uk - 1) as u64;
        assert!(make(index, true).is_none());
        let p = make(0, true).unwrap();
        assert_eq!(p.clean, "The capital of France is");
        assert_eq!(p.corrupt, "The capital of Spain is");
        assert_eq!(
            (p.correct.as_str(), p.incorrect.as_str()),
            (" Paris", " Madrid")
        );
    }
}
