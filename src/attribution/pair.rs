//! A clean/corrupt prompt pair, tokenized and checked, and the metric it is
//! measured with.

use crate::engine::{check_tokens, Metric};
use crate::error::{Error, Result};
use crate::model::{Config, Token, Tokenizer};
use crate::report::{Prompts, Tokens};

/// A checked prompt pair: equal lengths, single-token answers.
#[derive(Debug, Clone)]
pub struct Pair {
    pub clean: Vec<u32>,
    pub corrupt: Vec<u32>,
    /// The answer tokens (the report's log-probabilities are theirs).
    pub correct: u32,
    pub incorrect: u32,
    /// The metric both runs measure: the answers' logit difference unless
    /// [`Pair::with_metric`] chose another.
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
    /// Tokenizes and checks a pair: both prompts the same number of tokens,
    /// single-token answers (docs/methods.md, "The model and its hook points").
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

    /// A report's or dataset's prompts as a checked pair, measured with
    /// their metric.
    pub fn from_prompts(tok: &Tokenizer, cfg: &Config, p: &Prompts) -> Result<Pair> {
        Pair::new(
            tok,
            cfg,
            &p.clean,
            &p.corrupt,
            &p.correct,
            &p.incorrect,
            p.bos,
        )?
        .with_metric(tok, &p.metric)
    }

    /// The pair's tokens as reports show them.
    pub fn tokens(&self, tok: &Tokenizer) -> Tokens {
        Tokens {
            clean: tok.tokens(&self.clean),
            corrupt: tok.tokens(&self.corrupt),
            first_diff: self.first_diff,
            correct: tok.tokens(&[self.correct]).remove(0),
            incorrect: tok.tokens(&[self.incorrect]).remove(0),
        }
    }

    /// The pair measured with the metric `spec` names (see [`MetricSpec`]).
    pub fn with_metric(mut self, tok: &Tokenizer, spec: &str) -> Result<Pair> {
        self.metric = parse_metric(spec, tok, self.correct, self.incorrect)?;
        Ok(self)
    }
}

/// A metric as prompts and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricSpec {
    /// `logit_diff`: logits[last, correct] − logits[last, incorrect].
    LogitDiff,
    /// `greater_than:YY`: the Greater-Than task's probability difference,
    /// Σ p("YY+1".."99") − Σ p("00".."YY") over two-digit year tokens.
    GreaterThan(u8),
}

impl MetricSpec {
    /// Parses `logit_diff` or `greater_than:YY` (YY two digits, 00..98).
    pub fn parse(spec: &str) -> Result<MetricSpec> {
        let s = spec.trim();
        if s == "logit_diff" {
            return Ok(MetricSpec::LogitDiff);
        }
        let Some(yy) = s.strip_prefix("greater_than:") else {
            return Err(Error::Input(format!(
                "unknown metric `{s}`: use logit_diff or greater_than:YY"
            )));
        };
        match yy.parse::<u8>() {
            Ok(y) if yy.len() == 2 && yy.bytes().all(|b| b.is_ascii_digit()) && y <= 98 => {
                Ok(MetricSpec::GreaterThan(y))
            }
            _ => Err(Error::Input(format!(
                "metric `{s}`: greater_than needs the start year's last two digits YY, 00 to 98 \
                 (e.g. greater_than:42 for \"The war lasted from the year 1742 to the year 17\")"
            ))),
        }
    }

    /// The name reports carry: "logit_diff" or "greater_than:YY".
    pub fn name(&self) -> String {
        match self {
            MetricSpec::LogitDiff => "logit_diff".into(),
            MetricSpec::GreaterThan(y) => format!("greater_than:{y:02}"),
        }
    }

    /// The engine's metric: the answers' logit difference, or the
    /// probability difference of the two-digit year tokens, "YY+1".."99"
    /// above and "00".."YY" below (each must be one token, no leading space).
    pub fn resolve(&self, tok: &Tokenizer, correct: u32, incorrect: u32) -> Result<Metric> {
        let y = match *self {
            MetricSpec::LogitDiff => return Ok(Metric::logit_diff(correct, incorrect)),
            MetricSpec::GreaterThan(y) => y as usize,
        };
        let mut ids = Vec::with_capacity(100);
        for year in 0..100 {
            let text = format!("{year:02}");
            let t = tok.encode(&text, false)?;
            if t.len() != 1 {
                return Err(Error::Input(format!(
                    "the metric greater_than needs every two-digit year \"00\"..\"99\" to be one token, \
                     but this tokenizer splits {text:?} into {} tokens, {}: use logit_diff with this model",
                    t.len(),
                    show(&tok.tokens(&t))
                )));
            }
            ids.push(t[0]);
        }
        Ok(Metric::ProbDiff {
            above: ids[y + 1..].to_vec(),
            below: ids[..=y].to_vec(),
        })
    }
}

/// The engine metric a spec names for a pair's answer tokens:
/// `MetricSpec::parse(spec)?.resolve(tok, correct, incorrect)`.
pub fn parse_metric(spec: &str, tok: &Tokenizer, correct: u32, incorrect: u32) -> Result<Metric> {
    MetricSpec::parse(spec)?.resolve(tok, correct, incorrect)
}
