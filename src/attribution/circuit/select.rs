//! Picking a circuit from edge scores, as the reference's `Graph.apply_topn`
//! and `Graph.apply_greedy` do, each followed by `Graph.prune`.

use crate::error::{Error, Result};
use crate::model::graph::GraphLayout;
pub use crate::report::circuit::Select;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A circuit: which edges ([n_forward × n_backward], the scores' layout)
/// and which upstream nodes it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    pub edges: Vec<bool>,
    pub nodes: Vec<bool>,
}

impl Circuit {
    pub fn n_edges(&self) -> usize {
        self.edges.iter().filter(|&&e| e).count()
    }
    pub fn n_nodes(&self) -> usize {
        self.nodes.iter().filter(|&&n| n).count()
    }
}

/// |score| as the order of edges; NaN sorts last.
fn key(s: f32) -> f32 {
    if s.is_nan() {
        f32::NEG_INFINITY
    } else {
        s.abs()
    }
}

/// Selects `n` edges by `how` and prunes the result.
pub fn select(layout: &GraphLayout, scores: &[f32], how: Select, n: usize) -> Result<Circuit> {
    let (nf, nb) = (layout.n_forward(), layout.n_backward());
    if scores.len() != nf * nb {
        return Err(Error::Input(format!(
            "edge scores of another model: {} values, but this model's graph has {nf}×{nb}",
            scores.len()
        )));
    }
    let total = layout.n_edges();
    if n > total {
        return Err(Error::Input(format!(
            "a circuit of {n} edges was asked for, but the graph has only {total} edges"
        )));
    }
    let mut c = Circuit {
        edges: vec![false; nf * nb],
        nodes: vec![false; nf],
    };
    match how {
        Select::Topn => {
            let mut order: Vec<usize> = (0..nf * nb)
                .filter(|&i| layout.is_edge(i / nb, i % nb))
                .collect();
            order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])).then(a.cmp(&b)));
            for &i in &order[..n] {
                c.edges[i] = true;
            }
        }
        Select::Greedy => greedy(layout, scores, n, &mut c),
    }
    prune(layout, &mut c);
    Ok(c)
}

/// A candidate edge in the greedy search's queue: largest |score| first.
struct Candidate {
    key: f32,
    index: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.total_cmp(&o.key).then(o.index.cmp(&self.index))
    }
}

/// `apply_greedy`: start with the edges into the logits; take the best
/// candidate; when its source joins the circuit, its own input edges
/// become candidates.
fn greedy(layout: &GraphLayout, scores: &[f32], n: usize, c: &mut Circuit) {
    let nb = layout.n_backward();
    let mut heap = BinaryHeap::new();
    let push_into = |heap: &mut BinaryHeap<Candidate>, slot: usize| {
        for u in 0..layout.prev_index(layout.slot(slot)) {
            let index = u * nb + slot;
            heap.push(Candidate {
                key: key(scores[index]),
                index,
            });
        }
    };
    push_into(&mut heap, nb - 1);
    for _ in 0..n {
        let Some(top) = heap.pop() else { break };
        c.edges[top.index] = true;
        let parent = top.index / nb;
        if !c.nodes[parent] {
            c.nodes[parent] = true;
            for slot in layout.own_slots(layout.node(parent)) {
                push_into(&mut heap, slot);
            }
        }
    }
}

/// `Graph.prune`: repeatedly drop nodes without an edge in (the input
/// always has one) or out, and edges whose source or target node is gone,
/// until nothing changes.
pub fn prune(layout: &GraphLayout, c: &mut Circuit) {
    let (nf, nb) = (layout.n_forward(), layout.n_backward());
    loop {
        let mut has_out = vec![false; nf];
        let mut slot_in = vec![false; nb];
        for (i, _) in c.edges.iter().enumerate().filter(|(_, &e)| e) {
            has_out[i / nb] = true;
            slot_in[i % nb] = true;
        }
        let nodes: Vec<bool> = (0..nf)
            .map(|u| {
                let has_in = u == 0 || layout.own_slots(layout.node(u)).iter().any(|&s| slot_in[s]);
                has_out[u] && has_in
            })
            .collect();
        let slot_kept: Vec<bool> = (0..nb)
            .map(|s| match layout.slot_owner(layout.slot(s)) {
                Some(owner) => nodes[layout.forward_index(owner)],
                None => true,
            })
            .collect();
        let edges: Vec<bool> = c
            .edges
            .iter()
            .enumerate()
            .map(|(i, &e)| e && nodes[i / nb] && slot_kept[i % nb])
            .collect();
        let same = nodes == c.nodes && edges == c.edges;
        c.nodes = nodes;
        c.edges = edges;
        if same {
            return;
        }
    }
}
