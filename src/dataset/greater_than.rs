//! Greater-Than (Hanna et al. 2023):
//! "The war lasted from the year 1742 to the year 17" → a year above 42.
//!
//! The corrupt prompt starts in the year 1701 (the same century, "01"), so
//! nothing is known about the end year. The metric is `greater_than:YY`
//! (probability on the two-digit tokens above YY minus those at or below it);
//! for a logit difference the correct answer is the smallest year token above
//! YY ("43", no leading space) and the incorrect one YY itself ("42").
//!
//! Centuries 11..=17, start years YY in 02..=98. Only years that GPT-2 splits
//! as " 17" + "42" are used (both the start year and the corrupt "…01"):
//! " 1105" or " 1190", for instance, tokenize otherwise. Combination space:
//! 4 templates × 12 nouns × 7 centuries × 97 years = 32,592; of the 679
//! century–year combinations 618 tokenize as needed, which leaves 29,664
//! valid pairs.

use super::{digits, sample, space, Prompts};
use crate::error::Result;
use crate::model::Tokenizer;
use std::collections::HashMap;

pub const TEMPLATES: [&str; 4] = [
    "The {noun} lasted from the year {start} to the year {century}",
    "The {noun} started in the year {start} and ended in the year {century}",
    "The {noun} ran from the year {start} to the year {century}",
    "The {noun} began in the year {start} and was over by the year {century}",
];

pub const NOUNS: [&str; 12] = [
    "war",
    "dynasty",
    "occupation",
    "pilgrimage",
    "expedition",
    "siege",
    "rebellion",
    "reign",
    "famine",
    "plague",
    "voyage",
    "crusade",
];

pub const CENTURIES: std::ops::RangeInclusive<u32> = 11..=17;
pub const YEARS: std::ops::RangeInclusive<u32> = 2..=98;

fn radices() -> [usize; 4] {
    [
        TEMPLATES.len(),
        NOUNS.len(),
        CENTURIES.count(),
        YEARS.count(),
    ]
}

/// Whether " CCYY" tokenizes as " CC" + "YY".
fn splits(tok: &Tokenizer, century: u32, yy: u32) -> bool {
    let whole = tok.encode(&format!(" {century}{yy:02}"), false);
    let cc = tok.encode(&format!(" {century}"), false);
    let y = tok.encode(&format!("{yy:02}"), false);
    match (whole, cc, y) {
        (Ok(w), Ok(c), Ok(y)) => c.len() == 1 && y.len() == 1 && w == [c[0], y[0]],
        _ => false,
    }
}

/// A pair factory that remembers which years split.
fn maker(tok: &Tokenizer, bos: bool) -> impl FnMut(u64) -> Option<Prompts> + '_ {
    let mut ok: HashMap<(u32, u32), bool> = HashMap::new();
    move |index| {
        let [t, n, c, y] = digits(index, radices());
        let century = CENTURIES.start() + c as u32;
        let yy = YEARS.start() + y as u32;
        for year in [yy, 1] {
            if !*ok
                .entry((century, year))
                .or_insert_with(|| splits(tok, century, year))
            {
                return None;
            }
        }
        let prompt = |start: u32| {
            super::fill(
                TEMPLATES[t],
                &[
                    ("noun", NOUNS[n]),
                    ("start", &format!("{century}{start:02}")),
                    ("century", &century.to_string()),
                ],
            )
        };
        Some(Prompts {
            clean: prompt(yy),
            corrupt: prompt(1),
            correct: format!("{:02}", yy + 1),
            incorrect: format!("{yy:02}"),
            bos,
            metric: format!("greater_than:{yy:02}"),
        })
    }
}

/// `n` distinct Greater-Than pairs, the same for the same seed.
pub fn generate(tok: &Tokenizer, n: usize, seed: u64, bos: bool) -> Result<Vec<Prompts>> {
    sample(
        "greater-than",
        tok,
        n,
        seed,
        space(radices()),
        maker(tok, bos),
    )
}

/// How many valid pairs there are (every combination checked).
pub fn max_pairs(tok: &Tokenizer) -> Result<usize> {
    Ok(super::count(tok, space(radices()), maker(tok, true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::test_tokenizer::gpt2;

    #[test]
    fn years_split_as_the_task_needs() {
        let tok = gpt2();
        assert!(splits(tok, 17, 42));
        assert!(splits(tok, 17, 1));
        // GPT-2 has these as other tokens
        assert!(!splits(tok, 11, 5));
        assert!(!splits(tok, 11, 90));
    }

    #[test]
    fn a_pair_reads_as_described() {
        let tok = gpt2();
        let mut make = maker(tok, true);
        let i = 6 * 97 + 40; // template 0, war, century 17, year 42
        let p = make(i).unwrap();
        assert_eq!(p.clean, "The war lasted from the year 1742 to the year 17");
        assert_eq!(
            p.corrupt,
            "The war lasted from the year 1701 to the year 17"
        );
        assert_eq!((p.correct.as_str(), p.incorrect.as_str()), ("43", "42"));
        assert_eq!(p.metric, "greater_than:42");
        // 1105 is not " 11" + "05"
        assert!(make(3).is_none());
    }
}
