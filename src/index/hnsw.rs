//! Approximate nearest neighbours over L2-normalised vectors: an hnsw_rs graph (dot-product
//! distance) that only grows. hnsw_rs cannot delete or update, so each index generation says
//! which rows are alive and searches with that filter (tombstones); when too many rows are
//! dead the builder starts a fresh graph.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use anyhow::Context;
use hnsw_rs::prelude::{AnnT, DistDot, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

/// Graph parameters (`[index]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Neighbours kept per node (hnsw_rs `max_nb_connection`).
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

/// Layers hnsw_rs may use (its maximum).
const MAX_LAYER: usize = 16;

/// hnsw_rs asserts `dot <= 1`; shrinking vectors a hair keeps rounding from tripping it without
/// changing any ranking.
const SHRINK: f32 = 1.0 - 1e-5;

pub struct Graph {
    hnsw: Hnsw<'static, f32, DistDot>,
    params: AnnParams,
    /// Row → the text its vector was computed from. Rows are never removed.
    rows: RwLock<Vec<String>>,
    /// Text → its row, so a later generation reuses rows for texts it still has.
    by_text: RwLock<HashMap<String, u32>>,
    /// hnsw_rs does not support inserting while other threads search: inserts take this
    /// exclusively, searches shared.
    gate: RwLock<()>,
}

impl Graph {
    pub fn new(params: AnnParams, expected: usize) -> Self {
        let mut hnsw = Hnsw::new(
            params.m,
            expected.max(1024),
            MAX_LAYER,
            params.ef_construction,
            DistDot,
        );
        hnsw.set_searching_mode(true);
        Self {
            hnsw,
            params,
            rows: RwLock::default(),
            by_text: RwLock::default(),
            gate: RwLock::default(),
        }
    }

    pub fn params(&self) -> AnnParams {
        self.params
    }

    pub fn len(&self) -> usize {
        self.rows.read().expect("rows lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row_text(&self, row: u32) -> Option<String> {
        self.rows
            .read()
            .expect("rows lock")
            .get(row as usize)
            .cloned()
    }

    pub fn row_of(&self, text: &str) -> Option<u32> {
        self.by_text
            .read()
            .expect("by_text lock")
            .get(text)
            .copied()
    }

    /// Adds `(text, vector)` rows (texts not yet in the graph), in parallel; returns their rows.
    pub fn insert(&self, items: &[(&str, &[f32])]) -> Vec<u32> {
        let start = {
            let mut rows = self.rows.write().expect("rows lock");
            let mut by_text = self.by_text.write().expect("by_text lock");
            let start = rows.len();
            for (i, (t, _)) in items.iter().enumerate() {
                rows.push(t.to_string());
                by_text.insert(t.to_string(), (start + i) as u32);
            }
            start
        };
        let shrunk: Vec<Vec<f32>> = items
            .iter()
            .map(|(_, v)| v.iter().map(|x| x * SHRINK).collect())
            .collect();
        let data: Vec<(&Vec<f32>, usize)> = shrunk
            .iter()
            .enumerate()
            .map(|(i, v)| (v, start + i))
            .collect();
        let _exclusive = self.gate.write().expect("gate lock");
        self.hnsw.parallel_insert(&data);
        (start..start + items.len()).map(|r| r as u32).collect()
    }

    /// The `k` nearest live rows with their cosine, best first.
    pub fn search(&self, q: &[f32], k: usize, alive: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        self.search_ef(q, k, self.params.ef_search, alive)
    }

    /// [`Graph::search`] with another candidate list size than the configured one.
    pub fn search_ef(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        alive: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let q: Vec<f32> = q.iter().map(|x| x * SHRINK).collect();
        let filter = |id: &usize| alive(*id as u32);
        let ef = ef.max(k);
        let _shared = self.gate.read().expect("gate lock");
        self.hnsw
            .search_filter(&q, k, ef, Some(&filter))
            .into_iter()
            .map(|n| (n.d_id as u32, (1.0 - n.distance) / (SHRINK * SHRINK)))
            .collect()
    }

    /// Writes the graph (hnsw_rs dump files named `graph.*`) and its row texts into `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let name = self
            .hnsw
            .file_dump(dir, "graph")
            .context("writing the HNSW graph")?;
        anyhow::ensure!(
            name == "graph",
            "HNSW dump went to {name:?}: the snapshot directory was not empty"
        );
        let meta = GraphFile {
            params: self.params,
            rows: self.rows.read().expect("rows lock").clone(),
        };
        std::fs::write(dir.join("graph.rows.json"), serde_json::to_vec(&meta)?)?;
        Ok(())
    }

    /// Loads what [`Graph::save`] wrote.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let meta: GraphFile = serde_json::from_slice(
            &std::fs::read(dir.join("graph.rows.json")).context("reading graph.rows.json")?,
        )
        .context("parsing graph.rows.json")?;
        // A loaded hnsw_rs graph borrows from its loader; the loader is small and a graph is
        // loaded once per start, so it is leaked to give the graph a 'static lifetime.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, "graph")));
        let mut hnsw: Hnsw<'static, f32, DistDot> =
            io.load_hnsw().context("loading the HNSW graph")?;
        hnsw.set_searching_mode(true);
        anyhow::ensure!(
            hnsw.get_nb_point() == meta.rows.len(),
            "HNSW graph has {} points but {} row texts",
            hnsw.get_nb_point(),
            meta.rows.len()
        );
        let by_text = meta
            .rows
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Ok(Self {
            hnsw,
            params: meta.params,
            rows: RwLock::new(meta.rows),
            by_text: RwLock::new(by_text),
            gate: RwLock::default(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct GraphFile {
    params: AnnParams,
    rows: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32, dim: usize) -> Vec<f32> {
        // Deterministic pseudo-random unit vectors.
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    const P: AnnParams = AnnParams {
        m: 16,
        ef_construction: 100,
        ef_search: 64,
    };

    #[test]
    fn finds_itself_respects_tombstones_and_survives_save_load() {
        let vs: Vec<Vec<f32>> = (0..500).map(|i| unit(i, 32)).collect();
        let texts: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        let g = Graph::new(P, 500);
        let items: Vec<(&str, &[f32])> = texts
            .iter()
            .zip(&vs)
            .map(|(t, v)| (t.as_str(), v.as_slice()))
            .collect();
        assert_eq!(g.insert(&items), (0..500).collect::<Vec<u32>>());
        let hit = g.search(&vs[42], 3, &|_| true);
        assert_eq!(hit[0].0, 42);
        assert!((hit[0].1 - 1.0).abs() < 1e-4, "{hit:?}");
        let hit = g.search(&vs[42], 3, &|r| r != 42);
        assert!(hit.iter().all(|h| h.0 != 42));
        assert_eq!(g.row_of("t7"), Some(7));

        let dir = tempfile::tempdir().unwrap();
        g.save(dir.path()).unwrap();
        let back = Graph::load(dir.path()).unwrap();
        assert_eq!(back.len(), 500);
        assert_eq!(back.row_of("t7"), Some(7));
        for i in [0, 99, 250, 499] {
            assert_eq!(
                back.search(&vs[i], 5, &|_| true),
                g.search(&vs[i], 5, &|_| true)
            );
        }
        // A reloaded graph still takes inserts.
        let extra = unit(9999, 32);
        assert_eq!(back.insert(&[("new", &extra)]), vec![500]);
        assert_eq!(back.search(&extra, 1, &|_| true)[0].0, 500);
    }
}
