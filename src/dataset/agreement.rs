//! Subject–verb agreement across an attractor:
//! "The key near the cabinets" → " is" rather than " are".
//!
//! The clean prompt has a singular subject and a plural attractor noun; the
//! corrupt prompt the plural subject ("The keys near the cabinets"). The
//! answers stay the clean prompt's: correct the singular verb form, incorrect
//! the plural one, for three verb pairs (is/are, was/were, has/have), so the
//! logit difference measures the preference for the singular form.
//! Singular and plural subjects are chosen to be the same number of tokens.
//!
//! Combination space: 8 templates × 40 subjects × 22 attractors × 3 verb
//! pairs = 21,120 pairs (7,040 distinct prompt pairs), all valid with GPT-2.

use super::{digits, fill, sample, space, Prompts};
use crate::error::Result;
use crate::model::Tokenizer;

pub const TEMPLATES: [&str; 8] = [
    "The {subject} near the {attractor}",
    "The {subject} behind the {attractor}",
    "The {subject} next to the {attractor}",
    "The {subject} beside the {attractor}",
    "The {subject} across from the {attractor}",
    "The {subject} in front of the {attractor}",
    "The {subject} above the {attractor}",
    "The {subject} between the {attractor}",
];

/// (singular, plural) subjects of equal token length.
pub const SUBJECTS: [(&str, &str); 40] = [
    ("key", "keys"),
    ("book", "books"),
    ("dog", "dogs"),
    ("car", "cars"),
    ("teacher", "teachers"),
    ("house", "houses"),
    ("letter", "letters"),
    ("picture", "pictures"),
    ("bottle", "bottles"),
    ("door", "doors"),
    ("window", "windows"),
    ("table", "tables"),
    ("chair", "chairs"),
    ("box", "boxes"),
    ("boy", "boys"),
    ("girl", "girls"),
    ("student", "students"),
    ("doctor", "doctors"),
    ("painting", "paintings"),
    ("sign", "signs"),
    ("tree", "trees"),
    ("bird", "birds"),
    ("horse", "horses"),
    ("lamp", "lamps"),
    ("author", "authors"),
    ("friend", "friends"),
    ("officer", "officers"),
    ("player", "players"),
    ("computer", "computers"),
    ("gate", "gates"),
    ("bag", "bags"),
    ("phone", "phones"),
    ("farmer", "farmers"),
    ("woman", "women"),
    ("man", "men"),
    ("child", "children"),
    ("clock", "clocks"),
    ("soldier", "soldiers"),
    ("nurse", "nurses"),
    ("worker", "workers"),
];

/// Plural nouns that are not subjects.
pub const ATTRACTORS: [&str; 22] = [
    "cabinets",
    "shelves",
    "walls",
    "stores",
    "streets",
    "mountains",
    "hills",
    "rivers",
    "buildings",
    "schools",
    "farms",
    "gardens",
    "offices",
    "villages",
    "towns",
    "islands",
    "lakes",
    "forests",
    "fields",
    "machines",
    "roofs",
    "desks",
];

/// (singular, plural) verb forms.
pub const VERBS: [(&str, &str); 3] = [(" is", " are"), (" was", " were"), (" has", " have")];

fn radices() -> [usize; 4] {
    [
        TEMPLATES.len(),
        SUBJECTS.len(),
        ATTRACTORS.len(),
        VERBS.len(),
    ]
}

fn make(index: u64, bos: bool) -> Prompts {
    let [t, s, a, v] = digits(index, radices());
    let prompt = |subject: &str| {
        fill(
            TEMPLATES[t],
            &[("subject", subject), ("attractor", ATTRACTORS[a])],
        )
    };
    Prompts {
        clean: prompt(SUBJECTS[s].0),
        corrupt: prompt(SUBJECTS[s].1),
        correct: VERBS[v].0.to_string(),
        incorrect: VERBS[v].1.to_string(),
        bos,
        metric: "logit_diff".into(),
    }
}

/// `n` distinct agreement pairs, the same for the same seed.
pub fn generate(tok: &Tokenizer, n: usize, seed: u64, bos: bool) -> Result<Vec<Prompts>> {
    sample("agreement", tok, n, seed, space(radices()), |i| {
        Some(make(i, bos))
    })
}

/// How many valid pairs there are (every combination checked).
pub fn max_pairs(tok: &Tokenizer) -> Result<usize> {
    Ok(super::count(tok, space(radices()), |i| Some(make(i, true))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::test_tokenizer::gpt2;
    use std::collections::HashSet;

    #[test]
    fn subjects_have_equal_token_lengths_and_attractors_are_not_subjects() {
        let tok = gpt2();
        let n = |w: &str| tok.encode(&format!(" {w}"), false).unwrap().len();
        for (s, p) in SUBJECTS {
            assert_eq!(n(s), n(p), "{s}/{p}");
        }
        let plurals: HashSet<_> = SUBJECTS.iter().map(|s| s.1).collect();
        assert!(ATTRACTORS.iter().all(|a| !plurals.contains(a)));
        assert_eq!(
            ATTRACTORS.iter().collect::<HashSet<_>>().len(),
            ATTRACTORS.len()
        );
    }

    #[test]
    fn a_pair_reads_as_described() {
        let p = make(0, true);
        assert_eq!(p.clean, "The key near the cabinets");
        assert_eq!(p.corrupt, "The keys near the cabinets");
        assert_eq!((p.correct.as_str(), p.incorrect.as_str()), (" is", " are"));
    }
}
