//! A loaded model and its engines in a long-lived host (the browser lab):
//! each call takes a request, picks its engine and runs the method.

use super::circuit::{reevaluate, run_circuit, CircuitRequest};
use super::dataset::{DatasetObserver, RunStats, Runner};
use super::engine::{AnyEngine, Backend, Engines};
use super::estimate::{
    analysis_cost, calibrate, memory_limit, runs_fit, AnalysisCost, Calibration, SECONDS_PER_CALL,
};
use super::request::{ablation_sets, AblateRequest, AnalyzeRequest};
use crate::attribution::ablation::{ablate_dataset, ablate_pair, AblationReport};
use crate::attribution::run::{analyze_group, predictions, Options};
use crate::attribution::{Observer, Pair, Progress};
use crate::engine::{Engine, Metric};
use crate::error::{Error, Result};
use crate::model::sae::Sae;
use crate::model::{Config, Tokenizer};
use crate::report::circuit::{CircuitChoice, CircuitReport};
use crate::report::SaeInfo;
use crate::report::{Prediction, Prompts, Report};
use serde::Serialize;
use std::cell::RefCell;
use std::sync::Arc;

pub struct Session {
    pub name: String,
    pub tokenizer: Tokenizer,
    pub engines: Engines,
    /// The sparse autoencoders loaded for this model, at most one per hook
    /// (`add_sae`); an analysis scores the ones its request names.
    pub saes: RefCell<Vec<Arc<Sae>>>,
}

/// The metrics of [`Session::ablate`] and where they were computed.
#[derive(Debug, Clone, Serialize)]
pub struct AblateOut {
    #[serde(flatten)]
    pub metrics: crate::attribution::ablation::Ablated,
    /// The engine that computed the three metrics: "cpu" or "gpu".
    pub backend: &'static str,
    /// Why the CPU computed instead of the GPU, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Session {
    pub fn config(&self) -> &Config {
        self.engines.config()
    }

    /// The backends this build offers.
    pub fn backends(&self) -> Vec<&'static str> {
        vec!["cpu", "gpu"]
    }

    /// The engine for `backend`; a fallback to the CPU is said in the
    /// observer's progress (a stage text, nothing done yet).
    async fn engine(&self, backend: Backend, obs: &mut dyn Observer) -> AnyEngine {
        let (engine, note) = self.engines.get(backend).await;
        if let Some(note) = note {
            obs.progress(&Progress {
                stage: &note.to_string(),
                done: 0,
                total: 0,
            });
        }
        engine
    }

    /// The circuit report of the request's pairs on the request's engine
    /// (exact patching's tails and the graph's own passes).
    pub async fn circuit(
        &self,
        req: &CircuitRequest,
        obs: &mut dyn Observer,
    ) -> Result<CircuitReport> {
        let backend = Backend::parse(req.backend.as_deref().unwrap_or("auto"))?;
        let engine = self.engine(backend, obs).await;
        run_circuit(&engine, &engine, &self.name, &self.tokenizer, req, obs).await
    }

    /// The circuit of `n` edges that a circuit report's `method` scores
    /// select, with its faithfulness on this model (the Circuit tab's slider).
    pub async fn reevaluate_circuit(
        &self,
        report: &CircuitReport,
        method: &str,
        select: &str,
        n: usize,
    ) -> Result<CircuitChoice> {
        let host = self.engines.cpu_engine();
        reevaluate(&*host, &self.tokenizer, report, method, select, n).await
    }

    /// The report of the request's one pair.
    pub async fn analyze(&self, req: &AnalyzeRequest, obs: &mut dyn Observer) -> Result<Report> {
        let prompts = req.prompts()?;
        let mut reports = self
            .analyze_pairs(req, std::slice::from_ref(&prompts), obs)
            .await?;
        Ok(reports.pop().expect("one report per pair"))
    }

    /// The reports of the request's pairs, in order (analysed together, so
    /// that the GPU shares its passes among them).
    pub async fn analyze_group(
        &self,
        req: &AnalyzeRequest,
        obs: &mut dyn Observer,
    ) -> Result<Vec<Report>> {
        self.analyze_pairs(req, req.pairs()?, obs).await
    }

    /// Every pair of the request through the dataset runner (the one of
    /// `patchlab batch`: groups, resume, bad pairs passed over, progress,
    /// cancel) on the request's engine. `group`: pairs per group (the
    /// engine's default when `None`); `earlier[i]`: pair i's report of an
    /// earlier run, kept if its prompts, model and settings are the same.
    pub async fn run_dataset(
        &self,
        req: &AnalyzeRequest,
        group: Option<usize>,
        mut earlier: Vec<Option<Report>>,
        obs: &mut dyn DatasetObserver,
    ) -> Result<RunStats> {
        let pairs = req.pairs()?;
        let engine = self.engine(req.backend()?, obs).await;
        let opts = self.options_for(req, &engine)?;
        let runner = Runner::new(&engine, &self.name, &self.tokenizer, &opts, group)?;
        let take = |i: usize| earlier.get_mut(i).and_then(Option::take);
        runner.run(pairs, 0..pairs.len(), take, obs).await
    }

    async fn analyze_pairs(
        &self,
        req: &AnalyzeRequest,
        pairs: &[Prompts],
        obs: &mut dyn Observer,
    ) -> Result<Vec<Report>> {
        let engine = self.engine(req.backend()?, obs).await;
        let opts = self.options_for(req, &engine)?;
        if let Some(limit) = memory_limit() {
            // two runs a pair; a pair that does not tokenize is refused by
            // the analysis, in its words
            let runs: Vec<usize> = pairs
                .iter()
                .filter_map(|p| Pair::from_prompts(&self.tokenizer, self.config(), p).ok())
                .flat_map(|p| [p.clean.len(); 2])
                .collect();
            // the loaded SAEs' weights take their share of the memory
            let saes: usize = self.saes.borrow().iter().map(|s| s.bytes()).sum();
            runs_fit(
                self.config(),
                &runs,
                Some(limit - saes as f64),
                "this analysis",
            )?;
        }
        analyze_group(&engine, &self.name, &self.tokenizer, pairs, &opts, obs).await
    }

    /// Adds an SAE (replacing the one on its hook, if any) once it fits
    /// the model and, in WebAssembly, the memory left beside the model and
    /// the other SAEs; returns what reports will record of it.
    pub fn add_sae(&self, sae: Sae) -> Result<SaeInfo> {
        sae.check_model(self.config())?;
        self.check_room(&sae.name, &sae.hook_name, sae.bytes() as f64)?;
        let info = SaeInfo::of(&sae);
        let mut saes = self.saes.borrow_mut();
        saes.retain(|s| s.hook_name != sae.hook_name);
        saes.push(Arc::new(sae));
        saes.sort_by_key(|s| (s.layer, s.hook_name.clone()));
        Ok(info)
    }

    /// Bytes of SAE weights that still fit beside the model and the loaded
    /// SAEs (those on `replacing`, which a new one would replace, freed), or
    /// None where nothing bounds memory: what the page checks before it
    /// downloads an SAE.
    pub fn sae_room(&self, replacing: Option<&str>) -> Option<f64> {
        let limit = memory_limit()?;
        let model = self.config().weight_bytes() as f64;
        let others: usize = self
            .saes
            .borrow()
            .iter()
            .filter(|s| Some(s.hook_name.as_str()) != replacing)
            .map(|s| s.bytes())
            .sum();
        Some((limit - SAE_RUN_RESERVE - model - others as f64).max(0.0))
    }

    /// Checks an SAE's `cfg.json` against this model and the memory left,
    /// before its weights are fetched: what [`Session::add_sae`] would
    /// refuse from the config alone. Returns the SAE (without weights) and
    /// the bytes its weights will take.
    pub fn check_sae(
        &self,
        name: &str,
        cfg_json: &str,
        norm_scaling_factor: Option<f64>,
    ) -> Result<(SaeInfo, u64)> {
        let sae = Sae::from_config(name, cfg_json, norm_scaling_factor)?;
        sae.check_model(self.config())?;
        let bytes = sae.weight_bytes();
        self.check_room(name, &sae.hook_name, bytes as f64)?;
        Ok((SaeInfo::of(&sae), bytes))
    }

    /// Refuses SAE weights of `bytes` on `hook` that do not fit beside the
    /// model and the other SAEs (`sae_room`), with the sizes.
    fn check_room(&self, name: &str, hook: &str, bytes: f64) -> Result<()> {
        match self.sae_room(Some(hook)) {
            Some(room) if bytes > room => Err(Error::Input(format!(
                "SAE {name} ({} MB of weights as f32) does not fit: {} MB are left in this tab beside the model, the other SAEs and room for the runs ({} MB); remove an SAE first",
                (bytes / 1e6).round(),
                (room / 1e6).round(),
                (SAE_RUN_RESERVE / 1e6).round()
            ))),
            _ => Ok(()),
        }
    }

    /// Removes the SAE on `hook_name`; false if none was loaded there.
    pub fn remove_sae(&self, hook_name: &str) -> bool {
        let mut saes = self.saes.borrow_mut();
        let before = saes.len();
        saes.retain(|s| s.hook_name != hook_name);
        saes.len() != before
    }

    /// The loaded SAEs, in layer order.
    pub fn sae_infos(&self) -> Vec<SaeInfo> {
        self.saes.borrow().iter().map(|s| SaeInfo::of(s)).collect()
    }

    /// The request's options, each engine call held to about
    /// `SECONDS_PER_CALL` of work where the engine was calibrated.
    fn options_for(&self, req: &AnalyzeRequest, engine: &AnyEngine) -> Result<Options> {
        let mut opts = req.options()?;
        opts.saes = self.requested_saes(req)?;
        opts.work_per_call = self
            .engines
            .rate(engine.backend())
            .map(|r| r * SECONDS_PER_CALL);
        Ok(opts)
    }

    /// The loaded SAEs a request names (`saes`: hook names, or `all`).
    fn requested_saes(&self, req: &AnalyzeRequest) -> Result<Vec<Arc<Sae>>> {
        let Some(names) = &req.saes else {
            return Ok(vec![]);
        };
        let loaded = self.saes.borrow();
        let mut out = Vec::new();
        for n in names {
            if n == "all" {
                out.extend(loaded.iter().cloned());
                continue;
            }
            match loaded.iter().find(|s| &s.hook_name == n) {
                Some(s) => out.push(s.clone()),
                None => {
                    let have: Vec<&str> = loaded.iter().map(|s| s.hook_name.as_str()).collect();
                    return Err(Error::Input(format!(
                        "no SAE is loaded for {n}; loaded: {}",
                        if have.is_empty() {
                            "none (load one first)".to_string()
                        } else {
                            have.join(", ")
                        }
                    )));
                }
            }
        }
        // each SAE once, in layer order, whatever the request's order
        out.sort_by_key(|s| (s.layer, s.hook_name.clone()));
        out.dedup_by(|a, b| a.hook_name == b.hook_name);
        Ok(out)
    }

    /// Times a small real workload on the engine for `backend` and keeps
    /// its rate: estimates then say seconds, and analyses on that engine
    /// pause about every `SECONDS_PER_CALL`.
    pub async fn calibrate(&self, backend: Backend) -> Result<Calibration> {
        let (engine, _) = self.engines.get(backend).await;
        let c = calibrate(&engine).await?;
        self.engines.set_rate(c.backend, c.flops_per_s);
        Ok(c)
    }

    /// What the request's analysis will cost on the engine it would run
    /// on (a GPU not yet started counts as the GPU, one that failed to
    /// start as the CPU), in FLOPs per phase,
    /// in seconds where that engine was calibrated, and in memory.
    pub fn estimate(&self, req: &AnalyzeRequest) -> Result<AnalysisCost> {
        let one;
        let pairs = match &req.pairs {
            Some(_) => req.pairs()?,
            None => {
                one = [req.prompts()?];
                &one[..]
            }
        };
        let backend = self.engines.would_use(req.backend()?);
        let rate = self.engines.rate(backend);
        let mut opts = req.options()?;
        opts.saes = self.requested_saes(req)?;
        analysis_cost(self.config(), &self.tokenizer, pairs, &opts, backend, rate)
    }

    /// The clean metric with the request's heads and neurons held at the
    /// pair's own corrupt activations, and the clean and corrupt metrics on
    /// the same engine. When the GPU engine cannot ablate, the CPU engine
    /// computes (and repeats the error if the request itself is bad).
    pub async fn ablate(&self, req: &AblateRequest) -> Result<AblateOut> {
        let pair = Pair::from_prompts(&self.tokenizer, self.config(), &req.prompts)?;
        let components = req.components();
        let (engine, fallback) = self.engines.get(req.backend).await;
        let mut note = fallback.map(|f| f.to_string());
        let (metrics, backend) = match ablate_pair(&engine, &pair, &components).await {
            Ok(m) => (m, engine.backend()),
            Err(err) if engine.kind() == Backend::Gpu => {
                note = Some(format!(
                    "the WebGPU engine could not ablate ({err}); computed on the CPU"
                ));
                let cpu = self.engines.cpu();
                (ablate_pair(&cpu, &pair, &components).await?, cpu.backend())
            }
            Err(err) => return Err(err),
        };
        Ok(AblateOut {
            metrics,
            backend,
            note,
        })
    }

    /// Mean ablation over a dataset, as `patchlab ablate` computes it: each
    /// set of `specs` ("and:both", "h9.6,n0.12", …) in every pair of
    /// `reports` (dataset index, report).
    pub async fn ablate_dataset(
        &self,
        reports: &[(usize, Report)],
        specs: &[String],
        backend: Backend,
        obs: &mut dyn Observer,
    ) -> Result<AblationReport> {
        if reports.is_empty() {
            return Err(Error::Input(
                "no finished pairs to ablate: run the dataset first".into(),
            ));
        }
        if specs.is_empty() {
            return Err(Error::Input(
                "choose at least one set of components to ablate".into(),
            ));
        }
        let sets = ablation_sets(specs)?;
        let (engine, _) = self.engines.get(backend).await;
        ablate_dataset(&engine, &self.tokenizer, reports, &sets, obs).await
    }

    /// The `k` most likely next tokens after `text`, as the report's predictions.
    pub async fn predict(
        &self,
        text: &str,
        bos: bool,
        k: usize,
        backend: Backend,
    ) -> Result<Vec<Prediction>> {
        let ids = self.tokenizer.encode(text, bos)?;
        runs_fit(
            self.config(),
            &[ids.len()],
            memory_limit(),
            "the prompt's run",
        )?;
        let (engine, _) = self.engines.get(backend).await;
        let run = engine.run(&ids, &Metric::logit_diff(0, 0)).await?;
        let logits = engine.last_logits(&run).await?;
        Ok(predictions(&self.tokenizer, &logits, k))
    }
}

/// Memory kept free for a pair's runs when SAEs are loaded (GPT-2 small's
/// runs of a 100-token pair take about 150 MB).
pub const SAE_RUN_RESERVE: f64 = 256e6;
