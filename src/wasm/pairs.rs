//! Datasets of prompt pairs: generated tasks, imported files, groups.

use super::lab::Lab;
use super::{from_js, js_err, seed_of, to_js};
use crate::attribution::run::share_groups;
use crate::dataset::{self, Format, Task};
use crate::error::Error;
use crate::report::Prompts;
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The names of the generated tasks (`ioi`, `ioi-third`, …).
#[wasm_bindgen]
pub fn task_names() -> Result<JsValue, JsValue> {
    to_js(&Task::ALL.map(Task::name))
}

/// A dataset (an array of prompts) as a CSV file that `import_pairs` and
/// `patchlab batch --file` read back.
#[wasm_bindgen]
pub fn pairs_csv(pairs: JsValue) -> Result<String, JsValue> {
    let pairs: Vec<Prompts> = from_js(pairs, "not an array of pairs")?;
    Ok(dataset::to_csv(&pairs))
}

#[derive(Serialize)]
struct BadRowOut<'a> {
    line: usize,
    reason: &'a str,
}

#[derive(Serialize)]
struct ImportOut<'a> {
    pairs: &'a [Prompts],
    bad: Vec<BadRowOut<'a>>,
}

#[derive(Serialize)]
struct BadPairOut {
    index: usize,
    error: String,
}

#[derive(Serialize)]
struct GroupsOut {
    groups: Vec<Vec<usize>>,
    bad: Vec<BadPairOut>,
}

#[wasm_bindgen]
impl Lab {
    /// `n` pairs of a generated task (`task_names()`), the same for the same
    /// seed: an array of prompts `{clean, corrupt, correct, incorrect, bos,
    /// metric}`, each checked with this model's tokenizer.
    pub fn generate_dataset(
        &self,
        task: &str,
        n: usize,
        seed: f64,
        bos: bool,
    ) -> Result<JsValue, JsValue> {
        let task = Task::from_name(task).map_err(js_err)?;
        if n == 0 {
            return Err(js_err(Error::Input("ask for at least one pair".into())));
        }
        let seed = seed_of(seed).map_err(js_err)?;
        let pairs = task
            .generate(&self.session.tokenizer, n, seed, bos)
            .map_err(js_err)?;
        to_js(&pairs)
    }

    /// Reads a pair file (`filename` ends in .csv or .jsonl and says which):
    /// `{pairs: [prompts], bad: [{line, reason}]}`. Bad rows are listed,
    /// never dropped silently; a file without valid rows is an error.
    pub fn import_pairs(&self, text: &str, filename: &str, bos: bool) -> Result<JsValue, JsValue> {
        let format = Format::from_path(filename).map_err(js_err)?;
        let r = dataset::import(text, format, &self.session.tokenizer, bos).map_err(js_err)?;
        let bad = r.bad.iter();
        to_js(&ImportOut {
            pairs: &r.pairs,
            bad: bad
                .map(|b| BadRowOut {
                    line: b.line,
                    reason: &b.reason,
                })
                .collect(),
        })
    }

    /// Groups for `analyze_group`: `{groups: [[index, …]], bad: [{index,
    /// error}]}` — at most `size` pairs of `pairs` (an array of prompts) per
    /// group (by default as the dataset runner on WebGPU: `GPU_GROUP_SIZE`), each group of equal token length and first differing position,
    /// so that the WebGPU engine shares its passes among them; pairs that
    /// are not valid are listed apart with the reason.
    pub fn group_pairs(&self, pairs: JsValue, size: Option<usize>) -> Result<JsValue, JsValue> {
        let pairs: Vec<Prompts> = from_js(pairs, "not an array of prompt pairs")?;
        let size = size.unwrap_or(crate::app::dataset::GPU_GROUP_SIZE);
        let s = &self.session;
        let (groups, bad) = share_groups(&s.tokenizer, s.config(), &pairs, size);
        let bad = bad.into_iter();
        to_js(&GroupsOut {
            groups,
            bad: bad
                .map(|(index, e)| BadPairOut {
                    index,
                    error: e.to_string(),
                })
                .collect(),
        })
    }
}
