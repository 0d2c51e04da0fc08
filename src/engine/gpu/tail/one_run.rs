//! Sweeps over one base run: the gradient at every layer's components
//! (`sweep_base_gradients`) or at chosen residual points
//! (`sweep_resid_base_gradients`), and tails from perturbed residual rows
//! (`sweep_resid`).

use super::{Pass, Stacked, Window, WorkKey};
use crate::engine::gpu::context::{At, Enc, Slice};
use crate::engine::gpu::forward::Forward;
use crate::engine::gpu::ops::Batch;
use crate::engine::gpu::GpuEngine;
use crate::engine::hooks::unknown_hook;
use crate::engine::plan::{Start, TailPlan};
use crate::engine::{Component, LayerComponents};
use crate::error::Result;

/// The base run's residual stream at `start` (every position).
fn resid_at(base: &Forward, start: Start) -> Result<&wgpu::Buffer> {
    Ok(match start {
        Start::Mid(l) => &base.layers[l].resid_mid,
        Start::Post(l) => &base.layers[l].resid_post,
        Start::Embed => {
            let name = "blocks.0.hook_resid_pre";
            &base.hooks.get(name).ok_or_else(|| unknown_hook(name))?.buf
        }
    })
}

impl GpuEngine {
    /// ∂m/∂(hook_result or hook_post) at the base run for every layer, rows
    /// first_diff.. ([n, width] each): the gradient at every layer's
    /// resid_mid (heads) or resid_post (neurons) from one tail and one
    /// backward, through W_out for the neurons.
    pub(in crate::engine::gpu) async fn sweep_base_gradients(
        &self,
        base: &Forward,
        component: Component,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (dm, n) = (c.d_mlp, win.n());
        let g = &self.gpu;
        // heads: ∂m/∂attn_out = ∂m/∂resid_mid; neurons: ∂m/∂mlp_out = ∂m/∂resid_post
        let starts: Vec<Start> = (0..c.n_layers)
            .map(|layer| Start::of(LayerComponents { layer, component }))
            .collect();
        let mut enc = Enc::new(g);
        let (acc, key, ws) = self.encode_gradients_at(&mut enc, base, &starts, win)?;
        let out = match component {
            Component::Heads => acc,
            Component::Neurons => acc
                .iter()
                .enumerate()
                .map(|(l, a)| {
                    let gp = g.buffer(n * dm, "gradient")?;
                    enc.linear_backward(a, n, &self.w.blocks[l].mlp_proj, &gp);
                    Ok(gp)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        enc.submit();
        let width = component.grad_width(c);
        let ranges: Vec<_> = out.iter().map(|b| Slice::first(b, n * width)).collect();
        let r = g.read(&ranges).await?;
        self.put_work(key, ws);
        Ok(r)
    }

    /// ∂m/∂(the residual rows first_diff.. at each of `starts`) at the base
    /// run, [n, d] each.
    pub(in crate::engine::gpu) async fn sweep_resid_base_gradients(
        &self,
        base: &Forward,
        starts: &[Start],
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let n = win.n() * self.cfg.d_model;
        let mut enc = Enc::new(&self.gpu);
        let (acc, key, ws) = self.encode_gradients_at(&mut enc, base, starts, win)?;
        enc.submit();
        let ranges: Vec<_> = acc.iter().map(|a| Slice::first(a, n)).collect();
        let r = self.gpu.read(&ranges).await?;
        self.put_work(key, ws);
        Ok(r)
    }

    /// Records one tail of the base run from the earliest of `starts` and
    /// its backward, reading the gradient at every other start on its way
    /// down: ∂m/∂(the residual rows first_diff.. at each start) in its own
    /// [n, d] buffer, with the workspace to give back once read.
    fn encode_gradients_at(
        &self,
        enc: &mut Enc,
        base: &Forward,
        starts: &[Start],
        win: Window,
    ) -> Result<(Vec<wgpu::Buffer>, WorkKey, super::Work)> {
        let c = &self.cfg;
        let (d, n, first_diff) = (c.d_model, win.n(), win.first_diff);
        let g = &self.gpu;
        let first = starts
            .iter()
            .copied()
            .min_by_key(|s| s.order())
            .unwrap_or(Start::Embed);
        let plan = TailPlan::new(first, c.n_layers);
        let resid = resid_at(base, first)?;
        let key = WorkKey {
            cap: 1,
            n,
            t: win.t,
            record: true,
            logits: base.readout.is_signs(),
        };
        let (key, ws) = self.take_work(key)?;
        let b = Batch::new(1, 1, n, d, first_diff);
        let metric = g.buffer(1, "metric")?;
        let stacked = Stacked::of(base);
        let one = g.upload(&[1.0], "one")?;
        let acc = starts
            .iter()
            .map(|_| g.buffer(n * d, "gradient"))
            .collect::<Result<Vec<_>>>()?;
        for a in &acc {
            enc.clear(a);
        }
        enc.copy(At::new(resid, first_diff * d), At::start(&ws.x[0]), n * d);
        let pass = Pass {
            ws: &ws,
            base: &stacked,
            plan: &plan,
            b,
        };
        self.encode_tail(enc, &pass, At::start(&metric));
        let gx = self.encode_tail_backward(enc, &pass, &mut |enc, point, gx| {
            for (s, a) in starts.iter().zip(&acc) {
                if *s == point && point != first {
                    enc.weighted_sum(gx, b, At::start(&one), a);
                }
            }
        });
        // the earliest start's is where the backward ends
        for (s, a) in starts.iter().zip(&acc) {
            if *s == first {
                enc.weighted_sum(gx, b, At::start(&one), a);
            }
        }
        Ok((acc, key, ws))
    }
}

impl GpuEngine {
    /// Tails from `start` of one base run for a batch of perturbations of
    /// its residual rows there (`deltas`: k blocks of [n, d]): each element's
    /// metric and, with `record`, ∂m/∂(its start rows) ([k, n, d]).
    pub(in crate::engine::gpu) async fn sweep_resid(
        &self,
        base: &Forward,
        start: Start,
        win: Window,
        deltas: &[f32],
        record: bool,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = &self.cfg;
        let (d, n, first_diff) = (c.d_model, win.n(), win.first_diff);
        let block = n * d;
        let k = deltas.len() / block;
        let g = &self.gpu;
        let plan = TailPlan::new(start, c.n_layers);
        let resid = resid_at(base, start)?;
        let key = WorkKey {
            cap: k.clamp(1, self.capacity(win, record)),
            n,
            t: win.t,
            record,
            logits: base.readout.is_signs(),
        };
        let (key, ws) = self.take_work(key)?;
        let stacked = Stacked::of(base);
        let metrics = g.buffer(k.max(1), "metrics")?;
        let one = g.upload(&[1.0], "one")?;
        let mut enc = Enc::new(g);
        let mut grads = Vec::new();
        for (ci, chunk) in deltas.chunks(key.cap * block).enumerate() {
            let kk = chunk.len() / block;
            let pert = g.upload(chunk, "perturbations")?;
            // start rows: the base run's rows first_diff.. plus each perturbation
            for e in 0..kk {
                enc.copy(
                    At::new(resid, first_diff * d),
                    At::new(&ws.x[1], e * block),
                    block,
                );
            }
            enc.add(&ws.x[1], &pert, kk * block, &ws.x[0]);
            let b = Batch::new(1, kk, n, d, first_diff);
            let pass = Pass {
                ws: &ws,
                base: &stacked,
                plan: &plan,
                b,
            };
            self.encode_tail(&mut enc, &pass, At::new(&metrics, ci * key.cap));
            if record {
                let gx = self.encode_tail_backward(&mut enc, &pass, &mut |_, _, _| {});
                let out = g.buffer(kk * block, "gradients")?;
                enc.clear(&out);
                // each element its own "pair" with weight 1: out[e] = g[e]
                enc.weighted_sum(
                    gx,
                    Batch::new(kk, 1, n, d, first_diff),
                    At::start(&one),
                    &out,
                );
                grads.push((out, kk * block));
            }
        }
        enc.submit();
        let mut ranges = vec![Slice::first(&metrics, k)];
        ranges.extend(grads.iter().map(|(b, len)| Slice::first(b, *len)));
        let mut r = g.read(&ranges).await?;
        self.put_work(key, ws);
        let metrics = r.remove(0);
        Ok((metrics, r.concat()))
    }
}
