//! The one dataset runner of `patchlab batch` and the page's Dataset tab:
//! which pairs to compute (resume), in which groups (pairs of equal token
//! length and first difference share an engine's passes), what a bad pair
//! does to the run, progress over the whole run, and cancel.
//!
//! **Bad pairs.** A pair whose analysis fails with an input error (prompts
//! of different lengths, an answer that is not one token, a prompt longer
//! than the model's context, …) is reported with its error through
//! [`DatasetObserver::pair`] and the run goes on with the others: one typo
//! in a file of a thousand pairs should not cost the other 999. Front ends
//! say so at the end (the CLI exits non-zero). Any other error (a lost
//! device, a report that cannot be written) and cancel end the run: they are
//! not about one pair, and every later pair would meet them too.
//!
//! The front ends only supply the pairs, earlier reports and an observer
//! that stores or shows each outcome.

use super::engine::Backend;
use crate::attribution::run::{analyze_group, share_groups, Options};
use crate::attribution::{LayerScores, Observer, Pair, Pause, Progress};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Tokenizer;
use crate::report::{Prompts, Report};
use std::ops::Range;

pub use super::engine::GPU_GROUP_SIZE;

/// Pairs analysed together when the caller does not say, for an engine of
/// this backend name (`Engine::backend`): [`Backend::default_group_size`].
pub fn default_group_size(backend: &str) -> usize {
    Backend::parse(backend)
        .unwrap_or(Backend::Cpu)
        .default_group_size()
}

/// What became of one pair of a run.
#[derive(Debug)]
pub enum PairOutcome {
    /// A report of an earlier run with the same prompts, model and settings.
    Kept(Report),
    Computed(Report),
    /// The pair could not be analysed; the run went on without it.
    Bad(Error),
}

/// The work of a run, decided before any of it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Dataset indices of the pairs to compute, one list per group, in the
    /// order they run.
    pub groups: Vec<Vec<usize>>,
    /// Pairs whose earlier report is kept.
    pub kept: usize,
    /// Pairs found bad before any work (they are not in `groups`).
    pub bad: usize,
    pub group_size: usize,
    /// The engine that computes: "cpu" or "gpu" (`Engine::backend`).
    pub backend: &'static str,
}

/// Receives a run's plan, its groups as they start and every pair's outcome
/// as soon as it exists; `progress` (of [`Observer`]) counts the work of the
/// whole run, and returning `false` from it cancels (between groups or inside
/// one). `partial` names pairs by their dataset index.
pub trait DatasetObserver: Observer {
    fn planned(&mut self, _plan: &Plan) {}
    /// The pairs (dataset indices) of the group that starts now.
    fn group(&mut self, _group: &[usize]) {}
    /// One pair's outcome; an error here (e.g. its report cannot be
    /// written) ends the run.
    fn pair(&mut self, index: usize, outcome: PairOutcome) -> Result<()>;
}

/// How a run that was not cancelled ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub computed: usize,
    pub kept: usize,
    /// Dataset indices of the bad pairs, in the order they were found.
    pub bad: Vec<usize>,
}

/// A dataset run on one engine with one set of options.
pub struct Runner<'a, E> {
    engine: &'a E,
    model_name: &'a str,
    tokenizer: &'a Tokenizer,
    opts: &'a Options,
    group_size: usize,
}

impl<'a, E: Engine> Runner<'a, E> {
    /// `group`: pairs per group, or None for the engine's default
    /// ([`default_group_size`]).
    pub fn new(
        engine: &'a E,
        model_name: &'a str,
        tokenizer: &'a Tokenizer,
        opts: &'a Options,
        group: Option<usize>,
    ) -> Result<Self> {
        // options every pair would fail with are the run's error, not each pair's
        opts.check()?;
        let group_size = match group {
            Some(0) => {
                return Err(Error::Input(
                    "--group must be at least 1 (1 analyses the pairs one at a time)".into(),
                ))
            }
            Some(g) => g,
            None => default_group_size(engine.backend()),
        };
        Ok(Runner {
            engine,
            model_name,
            tokenizer,
            opts,
            group_size,
        })
    }

    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// Whether an earlier report of `prompts` stands for this run's: same
    /// prompts, model and settings.
    pub fn reusable(&self, prompts: &Prompts, r: &Report) -> bool {
        r.prompts == *prompts
            && r.model.name == self.model_name
            && r.settings == self.opts.settings()
    }

    /// Analyses `pairs[range]` (dataset indices are indices of `pairs`),
    /// keeping the report `earlier(index)` gives where it is reusable.
    /// Outcomes go to `obs` as they arrive: the kept and the bad pairs found
    /// before any work first, then each group's pairs as it finishes.
    /// Err(Cancelled) when `obs` cancels; the outcomes delivered stand.
    pub async fn run(
        &self,
        pairs: &[Prompts],
        range: Range<usize>,
        mut earlier: impl FnMut(usize) -> Option<Report>,
        obs: &mut dyn DatasetObserver,
    ) -> Result<RunStats> {
        if range.end > pairs.len() {
            return Err(Error::Input(format!(
                "pairs {}..{} asked of a dataset of {}",
                range.start,
                range.end,
                pairs.len()
            )));
        }
        let mut stats = RunStats::default();
        let mut kept = Vec::new();
        let mut todo = Vec::new();
        for index in range {
            match earlier(index).filter(|r| self.reusable(&pairs[index], r)) {
                Some(r) => kept.push((index, r)),
                None => todo.push(index),
            }
        }
        let chosen: Vec<Prompts> = todo.iter().map(|&i| pairs[i].clone()).collect();
        let (groups, bad) = share_groups(
            self.tokenizer,
            self.engine.config(),
            &chosen,
            self.group_size,
        );
        let groups: Vec<Vec<usize>> = groups
            .into_iter()
            .map(|g| g.into_iter().map(|k| todo[k]).collect())
            .collect();
        obs.planned(&Plan {
            groups: groups.clone(),
            kept: kept.len(),
            bad: bad.len(),
            group_size: self.group_size,
            backend: self.engine.backend(),
        });
        stats.kept = kept.len();
        for (index, r) in kept {
            obs.pair(index, PairOutcome::Kept(r))?;
        }
        for (k, e) in bad {
            stats.bad.push(todo[k]);
            obs.pair(todo[k], PairOutcome::Bad(e))?;
        }

        // a group's pairs share their token length (`share_groups`)
        let cfg = self.engine.config();
        let work = |g: &[usize]| -> u64 {
            let shapes: Vec<(usize, usize)> = g
                .iter()
                .filter_map(|&i| Pair::from_prompts(self.tokenizer, cfg, &pairs[i]).ok())
                .map(|p| (p.clean.len(), p.first_diff))
                .collect();
            self.opts.work(cfg, &shapes)
        };
        let total: u64 = groups.iter().map(|g| work(g)).sum();
        let mut done = 0;
        for g in &groups {
            // the cancel check between groups
            let start = Progress {
                stage: "forward",
                done,
                total,
            };
            if !obs.progress(&start) {
                return Err(Error::Cancelled);
            }
            obs.group(g);
            let prompts: Vec<Prompts> = g.iter().map(|&i| pairs[i].clone()).collect();
            let mut inner = InGroup {
                obs: &mut *obs,
                group: g,
                base: done,
                total,
            };
            let result = analyze_group(
                self.engine,
                self.model_name,
                self.tokenizer,
                &prompts,
                self.opts,
                &mut inner,
            )
            .await;
            match result {
                Ok(reports) => {
                    for (&index, r) in g.iter().zip(reports) {
                        stats.computed += 1;
                        obs.pair(index, PairOutcome::Computed(r))?;
                    }
                }
                // pairs were checked when grouped, so this is rare; the
                // message names the pair of the group it is about
                Err(Error::Input(m)) => {
                    for &index in g {
                        stats.bad.push(index);
                        obs.pair(index, PairOutcome::Bad(Error::Input(m.clone())))?;
                    }
                }
                Err(e) => return Err(e),
            }
            done += work(g);
        }
        Ok(stats)
    }
}

/// One group's observer: its progress as progress of the whole run, its
/// partial results under their dataset indices.
struct InGroup<'o, 'g> {
    obs: &'o mut dyn DatasetObserver,
    group: &'g [usize],
    base: u64,
    total: u64,
}

impl Observer for InGroup<'_, '_> {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.obs.progress(&Progress {
            stage: p.stage,
            done: (self.base + p.done).min(self.total),
            total: self.total,
        })
    }

    fn pause(&mut self) -> Option<Pause<'_>> {
        self.obs.pause()
    }

    fn partial(&mut self, s: &LayerScores<'_>) {
        self.obs.partial(&LayerScores {
            pair: self.group[s.pair],
            ..*s
        });
    }
}
