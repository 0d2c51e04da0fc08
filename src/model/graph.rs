//! GPT-2's computational graph as edge attribution patching sees it
//! (`hannamw/EAP-IG`'s `Graph.from_model`, sequential attention and MLP):
//!
//! - upstream ("forward") nodes write to the residual stream: the input
//!   (token embedding), every attention head (its `hook_result`) and every
//!   MLP (`hook_mlp_out`);
//! - downstream ("backward") slots read it: each head's q, k and v input
//!   (TransformerLens's split q / k / v input), each MLP's input
//!   (`hook_mlp_in`) and the logits (the final residual stream).
//!
//! An edge u → v exists when u writes before v reads. The indices are the
//! reference's, so that a score matrix [n_forward, n_backward] means the
//! same thing in both, and edges are listed in the reference's order.

use super::Config;
use crate::error::{Error, Result};

/// The q, k or v input of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Qkv {
    Q = 0,
    K = 1,
    V = 2,
}

impl Qkv {
    pub const ALL: [Qkv; 3] = [Qkv::Q, Qkv::K, Qkv::V];
    pub fn letter(self) -> char {
        ['q', 'k', 'v'][self as usize]
    }
}

/// An upstream node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Input,
    Head { layer: usize, head: usize },
    Mlp { layer: usize },
}

/// A downstream input slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Head { layer: usize, head: usize, qkv: Qkv },
    Mlp { layer: usize },
    Logits,
}

/// The graph of one model shape: sizes, indices and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphLayout {
    pub n_layers: usize,
    pub n_heads: usize,
}

impl GraphLayout {
    pub fn new(cfg: &Config) -> GraphLayout {
        GraphLayout {
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
        }
    }

    /// 1 + L·(H + 1): the input, then per layer its heads and its MLP.
    pub fn n_forward(&self) -> usize {
        1 + self.n_layers * (self.n_heads + 1)
    }

    /// L·(3H + 1) + 1: per layer the heads' q, then k, then v inputs and
    /// the MLP's, then the logits.
    pub fn n_backward(&self) -> usize {
        self.n_layers * (3 * self.n_heads + 1) + 1
    }

    pub fn forward_index(&self, n: Node) -> usize {
        let h = self.n_heads;
        match n {
            Node::Input => 0,
            Node::Head { layer, head } => 1 + layer * (h + 1) + head,
            Node::Mlp { layer } => 1 + layer * (h + 1) + h,
        }
    }

    pub fn backward_index(&self, s: Slot) -> usize {
        let h = self.n_heads;
        match s {
            Slot::Head { layer, head, qkv } => layer * (3 * h + 1) + qkv as usize * h + head,
            Slot::Mlp { layer } => layer * (3 * h + 1) + 3 * h,
            Slot::Logits => self.n_backward() - 1,
        }
    }

    pub fn node(&self, i: usize) -> Node {
        if i == 0 {
            return Node::Input;
        }
        let (layer, j) = ((i - 1) / (self.n_heads + 1), (i - 1) % (self.n_heads + 1));
        if j == self.n_heads {
            Node::Mlp { layer }
        } else {
            Node::Head { layer, head: j }
        }
    }

    pub fn slot(&self, i: usize) -> Slot {
        if i + 1 == self.n_backward() {
            return Slot::Logits;
        }
        let per = 3 * self.n_heads + 1;
        let (layer, j) = (i / per, i % per);
        if j == 3 * self.n_heads {
            Slot::Mlp { layer }
        } else {
            Slot::Head {
                layer,
                head: j % self.n_heads,
                qkv: Qkv::ALL[j / self.n_heads],
            }
        }
    }

    /// The number of upstream nodes that write before slot `s` reads: the
    /// edges into `s` come from forward indices 0..prev_index(s).
    pub fn prev_index(&self, s: Slot) -> usize {
        let h = self.n_heads;
        match s {
            Slot::Head { layer, .. } => 1 + layer * (h + 1),
            Slot::Mlp { layer } => 1 + layer * (h + 1) + h,
            Slot::Logits => self.n_forward(),
        }
    }

    /// The slots a node feeds into its own computation (a head's q, k, v;
    /// an MLP's input): how pruning tells whether a node has inputs.
    pub fn own_slots(&self, n: Node) -> Vec<usize> {
        match n {
            Node::Input => vec![],
            Node::Head { layer, head } => Qkv::ALL
                .iter()
                .map(|&qkv| self.backward_index(Slot::Head { layer, head, qkv }))
                .collect(),
            Node::Mlp { layer } => vec![self.backward_index(Slot::Mlp { layer })],
        }
    }

    /// The node whose input a slot is (None for the logits).
    pub fn slot_owner(&self, s: Slot) -> Option<Node> {
        match s {
            Slot::Head { layer, head, .. } => Some(Node::Head { layer, head }),
            Slot::Mlp { layer } => Some(Node::Mlp { layer }),
            Slot::Logits => None,
        }
    }

    pub fn node_name(&self, n: Node) -> String {
        match n {
            Node::Input => "input".into(),
            Node::Head { layer, head } => format!("a{layer}.h{head}"),
            Node::Mlp { layer } => format!("m{layer}"),
        }
    }

    /// The reference's edge name: `a9.h6->a10.h7<q>`, `m3->logits`.
    pub fn edge_name(&self, e: Edge) -> String {
        let from = self.node_name(self.node(e.from));
        match self.slot(e.to) {
            Slot::Head { layer, head, qkv } => {
                format!("{from}->a{layer}.h{head}<{}>", qkv.letter())
            }
            Slot::Mlp { layer } => format!("{from}->m{layer}"),
            Slot::Logits => format!("{from}->logits"),
        }
    }

    /// Every edge, in the order `Graph.from_model` adds them (and
    /// `Graph.to_json` writes them): per layer, each earlier node to each
    /// head's q, k, v; then each node so far (this layer's heads too) to
    /// the MLP; finally every node to the logits.
    pub fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::with_capacity(self.n_edges());
        for layer in 0..self.n_layers {
            let heads_slot = Slot::Head {
                layer,
                head: 0,
                qkv: Qkv::Q,
            };
            for from in 0..self.prev_index(heads_slot) {
                for head in 0..self.n_heads {
                    for qkv in Qkv::ALL {
                        let to = self.backward_index(Slot::Head { layer, head, qkv });
                        out.push(Edge { from, to });
                    }
                }
            }
            let mlp = Slot::Mlp { layer };
            for from in 0..self.prev_index(mlp) {
                out.push(Edge {
                    from,
                    to: self.backward_index(mlp),
                });
            }
        }
        for from in 0..self.n_forward() {
            out.push(Edge {
                from,
                to: self.backward_index(Slot::Logits),
            });
        }
        out
    }

    /// Σ over slots of prev_index: 32,491 for GPT-2 small.
    pub fn n_edges(&self) -> usize {
        (0..self.n_backward())
            .map(|b| self.prev_index(self.slot(b)))
            .sum()
    }

    /// Whether u → v is an edge of the graph.
    pub fn is_edge(&self, from: usize, to: usize) -> bool {
        from < self.prev_index(self.slot(to))
    }

    /// Parses a reference edge name back into an edge of this graph.
    pub fn parse_edge(&self, name: &str) -> Result<Edge> {
        let bad = |why: &str| {
            Error::Input(format!(
                "edge {name:?} {why} (a model with {} layers and {} heads; names look like \
                 \"a9.h6->a10.h7<q>\", \"m3->logits\" or \"input->a0.h1<v>\")",
                self.n_layers, self.n_heads
            ))
        };
        let (from, to) = name.split_once("->").ok_or_else(|| bad("has no \"->\""))?;
        let node = |s: &str| -> Option<Node> {
            if s == "input" {
                return Some(Node::Input);
            }
            if let Some(l) = s.strip_prefix('m') {
                let layer = l.parse().ok()?;
                return (layer < self.n_layers).then_some(Node::Mlp { layer });
            }
            let (l, h) = s.strip_prefix('a')?.split_once(".h")?;
            let (layer, head) = (l.parse().ok()?, h.parse().ok()?);
            (layer < self.n_layers && head < self.n_heads).then_some(Node::Head { layer, head })
        };
        let from = node(from).ok_or_else(|| bad("names no node of this model as its source"))?;
        let slot = if to == "logits" {
            Slot::Logits
        } else if let Some((n, q)) = to.strip_suffix('>').and_then(|t| t.split_once('<')) {
            let Some(Node::Head { layer, head }) = node(n) else {
                return Err(bad("names no head of this model as its target"));
            };
            let qkv = match q {
                "q" => Qkv::Q,
                "k" => Qkv::K,
                "v" => Qkv::V,
                _ => return Err(bad("has a target input other than <q>, <k> or <v>")),
            };
            Slot::Head { layer, head, qkv }
        } else {
            match node(to) {
                Some(Node::Mlp { layer }) => Slot::Mlp { layer },
                _ => {
                    return Err(bad(
                        "names no MLP, head input or logits of this model as its target",
                    ))
                }
            }
        };
        let e = Edge {
            from: self.forward_index(from),
            to: self.backward_index(slot),
        };
        if !self.is_edge(e.from, e.to) {
            return Err(bad(
                "goes backwards: its source writes after its target reads",
            ));
        }
        Ok(e)
    }
}

/// An edge: forward index → backward index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::published::Repo;

    #[test]
    fn gpt2_small_has_the_reference_counts() {
        let g = GraphLayout::new(&Repo::Gpt2.config());
        assert_eq!(g.n_forward(), 157);
        assert_eq!(g.n_backward(), 445);
        assert_eq!(g.n_edges(), 32_491);
        let edges = g.edges();
        assert_eq!(edges.len(), 32_491);
        assert_eq!(g.edge_name(edges[0]), "input->a0.h0<q>");
        assert_eq!(g.edge_name(edges[1]), "input->a0.h0<k>");
        assert_eq!(g.edge_name(*edges.last().unwrap()), "m11->logits");
        for e in &edges {
            assert!(g.is_edge(e.from, e.to));
            assert_eq!(g.parse_edge(&g.edge_name(*e)).unwrap(), *e);
        }
        for i in 0..g.n_forward() {
            assert_eq!(g.forward_index(g.node(i)), i);
        }
        for i in 0..g.n_backward() {
            assert_eq!(g.backward_index(g.slot(i)), i);
        }
        for bad in [
            "a9.h6->a2.h7<q>",
            "a12.h0->logits",
            "x->m1",
            "m3->a4.h1<z>",
            "m3",
        ] {
            assert!(g.parse_edge(bad).is_err(), "{bad}");
        }
    }
}
