//! A clean/corrupt prompt pair, tokenized and checked.

use crate::engine::{check_tokens, Metric};
use crate::error::{Error, Result};
use crate::model::{Config, Token, Tokenizer};

/// A checked prompt pair: equal lengths, single-token answers.
#[derive(Debug, Clone)]
pub struct Pair {
    pub clean: Vec<u32>,
    pub corrupt: Vec<u32>,
    /// The answer tokens (the report's log-probabilities are theirs).
    pub correct: u32,
    pub incorrect: u32,
    /// The metric both runs measure: the answers' logit difference.
    pub metric: Metric,
    /// The first position where the two prompts' tokens differ.
    pub first_diff: usize,
}

fn show(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| format!("[{}]", t.text))
        .collect::<Vec<_>>()
        .join("")
}

/// The single token an answer must be, or an error showing its tokens.
pub fn answer_token(tok: &Tokenizer, which: &str, text: &str) -> Result<u32> {
    if text.is_empty() {
        return Err(Error::Input(format!(
            "the {which} answer is empty: give one token, e.g. \" Mary\" (note the leading space)"
        )));
    }
    let ids = tok.encode(text, false)?;
    if ids.len() == 1 {
        return Ok(ids[0]);
    }
    let mut msg = format!(
        "the {which} answer {text:?} is {} tokens, {}; answers must be exactly one token",
        ids.len(),
        show(&tok.tokens(&ids))
    );
    if !text.starts_with(' ') && tok.encode(&format!(" {text}"), false)?.len() == 1 {
        msg.push_str(&format!(
            " — did you mean {:?} with a leading space?",
            format!(" {text}")
        ));
    } else {
        msg.push_str(": use its first token or another word");
    }
    Err(Error::Input(msg))
}

impl Pair {
    /// Tokenizes and checks a pair as SPEC demands.
    pub fn new(
        tok: &Tokenizer,
        cfg: &Config,
        clean: &str,
        corrupt: &str,
        correct: &str,
        incorrect: &str,
        bos: bool,
    ) -> Result<Pair> {
        let c = tok.encode(clean, bos)?;
        let k = tok.encode(corrupt, bos)?;
        for (name, ids) in [("clean", &c), ("corrupt", &k)] {
            if ids.is_empty() {
                return Err(Error::Input(format!(
                    "the {name} prompt is empty: type a prompt (or keep the BOS token)"
                )));
            }
            check_tokens(cfg, ids).map_err(|e| Error::Input(format!("the {name} prompt: {e}")))?;
        }
        if c.len() != k.len() {
            return Err(Error::Input(format!(
                "the prompts must have the same number of tokens, but clean has {} and corrupt {}:\n  clean:   {}\n  corrupt: {}\nchange words so that both tokenize to the same length",
                c.len(),
                k.len(),
                show(&tok.tokens(&c)),
                show(&tok.tokens(&k))
            )));
        }
        let first_diff = c.iter().zip(&k).position(|(a, b)| a != b).ok_or_else(|| {
            Error::Input(
                "the clean and corrupt prompts are the same tokens: there is nothing to patch"
                    .into(),
            )
        })?;
        let (correct, incorrect) = (
            answer_token(tok, "correct", correct)?,
            answer_token(tok, "incorrect", incorrect)?,
        );
        if correct == incorrect {
            return Err(Error::Input(
                "the correct and incorrect answers are the same token: the logit difference would always be 0".into(),
            ));
        }
        Ok(Pair {
            clean: c,
            corrupt: k,
            correct,
            incorrect,
            metric: Metric::logit_diff(correct, incorrect),
            first_diff,
        })
    }
}
