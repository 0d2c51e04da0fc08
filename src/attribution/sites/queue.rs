//! AP's perturbations waiting for their tails, by the point where they
//! enter the residual stream: sites whose patches start at the same point
//! share the engine's passes — every site of layer l but the residual
//! stream's own enters at `resid_mid` l (attn_out, z, q, k, v, pattern,
//! resid_mid), and `mlp_out` of layer l enters where `resid_pre` of layer
//! l + 1 does. Each perturbation's tail is the one it would run alone, so
//! sharing changes the number of passes (and of dispatches and read-backs
//! on a device), never a score beyond float noise.

use super::{Ctx, SiteResults, BATCH};
use crate::attribution::Tracker;
use crate::engine::{Engine, Start};
use crate::error::Result;
use crate::report::{Method, PatchSite, SiteMap};

/// One layer of one site whose AP cells are (partly) still queued.
struct Owed {
    site: PatchSite,
    layer: usize,
    /// Its cells' scores so far (0 for the cells that never run).
    scores: Vec<f32>,
    /// Perturbations not yet run.
    left: usize,
    /// Work units the tracker advances by once it is done.
    units: u64,
    stage: String,
    /// Whether its scores are in their map.
    written: bool,
}

/// Perturbations of one start point, not yet run: [k, n, d] with the
/// (owed, cell) each one scores.
struct Pending {
    start: Start,
    deltas: Vec<f32>,
    cells: Vec<(usize, usize)>,
}

#[derive(Default)]
pub(super) struct ApQueue {
    owed: Vec<Owed>,
    pending: Vec<Pending>,
}

/// What a site-layer's AP adds to the queue.
pub(super) struct ApCells {
    pub site: PatchSite,
    pub layer: usize,
    pub start: Start,
    pub count: usize,
    pub units: u64,
    pub stage: String,
}

impl ApQueue {
    /// Queues a site-layer's `count` perturbations, each filled in by
    /// `fill(i, block)` ([n, d] rows from the first differing position,
    /// zeroed first); one that stays zero scores 0 unrun. Runs the start
    /// point's batch whenever it is full.
    pub(super) async fn add<E: Engine>(
        &mut self,
        cx: &Ctx<'_, E>,
        ask: ApCells,
        out: &mut SiteResults,
        track: &mut Tracker<'_>,
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        let block = cx.n() * cx.d();
        let id = self.owed.len();
        self.owed.push(Owed {
            site: ask.site,
            layer: ask.layer,
            scores: vec![0.0; ask.count],
            left: 0,
            units: ask.units,
            stage: ask.stage,
            written: false,
        });
        for i in 0..ask.count {
            let at = match self.pending.iter().position(|p| p.start == ask.start) {
                Some(at) => at,
                None => {
                    self.pending.push(Pending {
                        start: ask.start,
                        deltas: Vec::with_capacity(BATCH * block),
                        cells: Vec::with_capacity(BATCH),
                    });
                    self.pending.len() - 1
                }
            };
            let p = &mut self.pending[at];
            let from = p.deltas.len();
            p.deltas.resize(from + block, 0.0);
            fill(i, &mut p.deltas[from..])?;
            if p.deltas[from..].iter().any(|&v| v != 0.0) {
                p.cells.push((id, i));
                self.owed[id].left += 1;
            } else {
                p.deltas.truncate(from);
            }
            if p.cells.len() == BATCH {
                let p = self.pending.swap_remove(at);
                self.run(cx, p, track).await?;
            }
        }
        self.finish(cx, out, track)
    }

    /// Runs every queued perturbation whose start point `done` says no
    /// later site will add to.
    pub(super) async fn flush<E: Engine>(
        &mut self,
        cx: &Ctx<'_, E>,
        done: impl Fn(Start) -> bool,
        out: &mut SiteResults,
        track: &mut Tracker<'_>,
    ) -> Result<()> {
        while let Some(at) = self.pending.iter().position(|p| done(p.start)) {
            let p = self.pending.swap_remove(at);
            self.run(cx, p, track).await?;
        }
        self.finish(cx, out, track)
    }

    /// One batch's tails: their metrics, normalised, into their cells.
    async fn run<E: Engine>(
        &mut self,
        cx: &Ctx<'_, E>,
        p: Pending,
        track: &mut Tracker<'_>,
    ) -> Result<()> {
        if p.cells.is_empty() {
            return Ok(());
        }
        track.pause().await?;
        let ms =
            cx.e.resid_metrics(cx.base, p.start, cx.first_diff, &p.deltas)
                .await?;
        for (&(id, cell), m) in p.cells.iter().zip(ms) {
            let o = &mut self.owed[id];
            o.scores[cell] = cx.normalise(m);
            o.left -= 1;
        }
        Ok(())
    }

    /// Writes the site-layers with nothing left to run into their maps and
    /// advances the tracker by their work (once: their scores are taken).
    fn finish<E: Engine>(
        &mut self,
        cx: &Ctx<'_, E>,
        out: &mut SiteResults,
        track: &mut Tracker<'_>,
    ) -> Result<()> {
        for o in self.owed.iter_mut().filter(|o| o.left == 0 && !o.written) {
            o.written = true;
            let scores = std::mem::take(&mut o.scores);
            let map = out
                .entry(Method::Ap.into())
                .or_default()
                .entry(o.site)
                .or_insert_with(|| SiteMap::zeros(o.site.shape(&cx.cfg, cx.t)));
            let per_layer = scores.len();
            map.values[o.layer * per_layer..(o.layer + 1) * per_layer].copy_from_slice(&scores);
            track.advance(&o.stage, o.units)?;
        }
        Ok(())
    }
}
