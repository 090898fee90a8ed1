//! A trained recommender on disk: `recommend.json` (the chosen collaborative method, every
//! method's settings chosen on validation and their validation NDCG@10, item ids, the training
//! data's sha256) and `model.safetensors` (EASE's item-to-item weights `ease.b`, ALS's item
//! factors `als.item_factors`, the co-occurrence cosines `cooc.sim` and the decayed
//! `popularity`). Written whole or not at all.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::als::{self, Als, AlsParams};
use super::cooc::{Cooc, CoocParams, PopularityParams, decayed_popularity, latest_ts};
use super::data::{Event, Histories, Split};
use super::ease::{Ease, EaseParams, recency_weights};
use super::eval::Chosen;

pub const CARD_FILE: &str = "recommend.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataRef {
    pub path: String,
    pub sha256: String,
}

/// One method's settings as chosen on validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodChoice {
    pub name: String,
    pub params: serde_json::Value,
    pub validation_ndcg_at_10: f64,
    pub tried: usize,
}

impl<P: Serialize> From<&Chosen<P>> for MethodChoice {
    fn from(c: &Chosen<P>) -> Self {
        Self {
            name: c.method.to_string(),
            params: super::eval::params_json(&c.params),
            validation_ndcg_at_10: c.validation_ndcg_at_10,
            tried: c.tried,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecommendCard {
    /// The collaborative method behind [`RecommendModel::cf_scores`]: `recency_ease` or `als`,
    /// whichever had the better validation NDCG@10.
    pub method: String,
    /// Recency-EASE's settings.
    pub params: EaseParams,
    pub als: AlsParams,
    pub cooc: CoocParams,
    pub popularity: PopularityParams,
    /// The time (Unix seconds) the popularity is decayed to: the log's latest event.
    pub popularity_at: i64,
    /// Hold-out used to choose the settings, and `method`'s validation NDCG@10 there.
    pub validation_split: Split,
    pub validation_ndcg_at_10: f64,
    /// Every method's choice (recency_ease, als, cooccurrence, decayed_popularity).
    pub methods: Vec<MethodChoice>,
    pub settings_tried: usize,
    pub customers: usize,
    pub interactions: usize,
    pub items: Vec<String>,
    pub interactions_data: DataRef,
    pub items_data: Option<DataRef>,
    /// Seconds to fit every method on the whole log (after choosing).
    pub train_seconds: f64,
    pub created_at: String,
}

pub struct RecommendModel {
    pub card: RecommendCard,
    pub ease: Ease,
    pub als: Als,
    pub cooc: Cooc,
    /// Decayed popularity per item at `card.popularity_at`.
    pub popularity: Vec<f32>,
}

impl RecommendModel {
    /// Chooses every method's settings on a `last` hold-out of `h`, then fits them all on all of
    /// it. `progress` counts settings tried.
    pub fn train(
        h: &Histories,
        interactions: DataRef,
        items_data: Option<DataRef>,
        n_interactions: usize,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Self> {
        use super::eval::{all_settings, choose, choose_als, choose_cooc, choose_decayed};
        let n = h.items.len();
        let how = Split::Last;
        progress.set_length(all_settings() as u64);
        let nothing = "interrupted before any setting was tried";
        let ease_c = choose(n, &h.seqs, how, progress).context(nothing)?;
        let als_c = choose_als(n, &h.seqs, how, progress);
        let cooc_c = choose_cooc(n, &h.seqs, how, progress);
        let pop_c = choose_decayed(n, &h.seqs, how, progress);
        anyhow::ensure!(
            !crate::eval::interrupt_flag().load(std::sync::atomic::Ordering::SeqCst),
            "interrupted: nothing was written"
        );
        let (als_c, cooc_c, pop_c) = (
            als_c.context("no ALS setting to try")?,
            cooc_c.context("no co-occurrence setting to try")?,
            pop_c.context("no half-life to try")?,
        );
        let t = std::time::Instant::now();
        let ease = Ease::fit(n, &h.seqs, ease_c.params.lambda);
        let als = Als::fit(n, &h.seqs, als_c.params, als::SEED);
        let cooc = Cooc::fit(n, &h.seqs);
        let now = latest_ts(&h.seqs);
        let popularity =
            decayed_popularity(n, &h.seqs, now, pop_c.params.half_life_days * 86_400.0);
        let train_seconds = t.elapsed().as_secs_f64();
        let (method, validation_ndcg_at_10) =
            if als_c.validation_ndcg_at_10 > ease_c.validation_ndcg_at_10 {
                ("als", als_c.validation_ndcg_at_10)
            } else {
                ("recency_ease", ease_c.validation_ndcg_at_10)
            };
        Ok(Self {
            card: RecommendCard {
                method: method.into(),
                params: ease_c.params,
                als: als_c.params,
                cooc: cooc_c.params,
                popularity: pop_c.params,
                popularity_at: now,
                validation_split: how,
                validation_ndcg_at_10,
                methods: vec![
                    (&ease_c).into(),
                    (&als_c).into(),
                    (&cooc_c).into(),
                    (&pop_c).into(),
                ],
                settings_tried: ease_c.tried + als_c.tried + cooc_c.tried + pop_c.tried,
                customers: h.users.len(),
                interactions: n_interactions,
                items: h.items.clone(),
                interactions_data: interactions,
                items_data,
                train_seconds,
                created_at: crate::kb::entry::now_rfc3339(),
            },
            ease,
            als,
            cooc,
            popularity,
        })
    }

    fn n_items(&self) -> usize {
        self.card.items.len()
    }

    /// `history` without items outside the model.
    fn known(&self, history: &[Event]) -> Vec<Event> {
        let n = self.n_items();
        history
            .iter()
            .filter(|e| (e.0 as usize) < n)
            .copied()
            .collect()
    }

    /// The chosen collaborative method's scores for a customer's history (fold-in: works for
    /// histories never seen in training).
    pub fn cf_scores(&self, history: &[Event]) -> Vec<f32> {
        let history = self.known(history);
        if self.card.method == "als" {
            self.als.scores(&history)
        } else {
            let p = &self.card.params;
            self.ease.scores(&history, p.tau, p.floor)
        }
    }

    /// Co-occurrence scores with the card's tau/floor.
    pub fn cooc_scores(&self, history: &[Event]) -> Vec<f32> {
        let p = &self.card.cooc;
        self.cooc.scores(&self.known(history), p.tau, p.floor)
    }

    /// The history item that most supports recommending `item` under the chosen method (EASE:
    /// largest w_j·B[j,item]; ALS: highest item_similarity), None for an empty history. Ties go
    /// to the more recent item; `item` itself is never its own reason.
    pub fn explain(&self, history: &[Event], item: u32) -> Option<u32> {
        if item as usize >= self.n_items() {
            return None;
        }
        let p = &self.card.params;
        let mut best: Option<(u32, f32)> = None;
        for (j, w) in recency_weights(&self.known(history), p.tau, p.floor) {
            if j == item {
                continue;
            }
            let support = if self.card.method == "als" {
                self.als.item_similarity(j, item)
            } else {
                w * self.ease.row(j)[item as usize]
            };
            if best.is_none_or(|(_, s)| support > s) {
                best = Some((j, support));
            }
        }
        best.map(|(j, _)| j)
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let n = self.n_items();
        let f = self.als.params.factors;
        let cpu = &Device::Cpu;
        let tensors = HashMap::from([
            (
                "ease.b".to_string(),
                Tensor::from_vec(self.ease.b.clone(), (n, n), cpu)?,
            ),
            (
                "als.item_factors".to_string(),
                Tensor::from_vec(self.als.item_factors.clone(), (n, f), cpu)?,
            ),
            (
                "cooc.sim".to_string(),
                Tensor::from_vec(self.cooc.sim.clone(), (n, n), cpu)?,
            ),
            (
                "popularity".to_string(),
                Tensor::from_vec(self.popularity.clone(), n, cpu)?,
            ),
        ]);
        crate::atomic::replace_dir(dir, ".recommend-", |tmp| {
            candle_core::safetensors::save(&tensors, tmp.join(WEIGHTS_FILE))?;
            std::fs::write(
                tmp.join(CARD_FILE),
                serde_json::to_string_pretty(&self.card)?,
            )?;
            Ok(())
        })
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let card: RecommendCard = serde_json::from_str(
            &std::fs::read_to_string(dir.join(CARD_FILE))
                .with_context(|| format!("reading {}", dir.join(CARD_FILE).display()))?,
        )
        .with_context(|| {
            format!(
                "{} is not a recommender card",
                dir.join(CARD_FILE).display()
            )
        })?;
        let weights = dir.join(WEIGHTS_FILE);
        let mut t = candle_core::safetensors::load(&weights, &Device::Cpu)
            .with_context(|| format!("reading {}", weights.display()))?;
        let n = card.items.len();
        let f = card.als.factors;
        let mut take = |key: &str, shape: &[usize]| -> anyhow::Result<Vec<f32>> {
            let x = t
                .remove(key)
                .with_context(|| format!("{} has no {key}", weights.display()))?;
            anyhow::ensure!(
                x.dims() == shape,
                "{}: {key} is {:?}, expected {shape:?} (the card lists {n} items{})",
                weights.display(),
                x.dims(),
                if key.starts_with("als.") {
                    format!(", {f} ALS factors")
                } else {
                    String::new()
                }
            );
            x.flatten_all()?
                .to_vec1::<f32>()
                .with_context(|| format!("{}: {key} is not f32", weights.display()))
        };
        let b = take("ease.b", &[n, n])?;
        let item_factors = take("als.item_factors", &[n, f])?;
        let sim = take("cooc.sim", &[n, n])?;
        let popularity = take("popularity", &[n])?;
        let als = Als::from_item_factors(card.als, n, item_factors);
        Ok(Self {
            ease: Ease { n_items: n, b },
            als,
            cooc: Cooc { n_items: n, sim },
            popularity,
            card,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::data::Interaction;

    fn two_cluster_model() -> (Histories, RecommendModel) {
        let mut log = vec![];
        for u in 0..30 {
            let items: [&str; 3] = if u % 2 == 0 {
                ["phone", "case", "charger"]
            } else {
                ["plush", "gift_box", "card"]
            };
            for (k, item) in items.iter().enumerate() {
                log.push(Interaction {
                    user: format!("c{u}"),
                    item: item.to_string(),
                    rating: 5.0,
                    ts: 1_000 + k as i64,
                    line: log.len() + 2,
                });
            }
        }
        let h = Histories::build(&log, &["unsold".to_string()]);
        let data = DataRef {
            path: "log.csv".into(),
            sha256: "0".into(),
        };
        let m = RecommendModel::train(&h, data, None, log.len(), &indicatif::ProgressBar::hidden())
            .unwrap();
        (h, m)
    }

    #[test]
    fn a_trained_model_saves_and_loads_to_the_same_scores() {
        let (h, m) = two_cluster_model();
        assert_eq!(m.card.items.len(), 7);
        assert!(["recency_ease", "als"].contains(&m.card.method.as_str()));
        let names: Vec<&str> = m.card.methods.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["recency_ease", "als", "cooccurrence", "decayed_popularity"]
        );
        assert_eq!(m.card.popularity_at, 1_002);
        // Every sale is within a few seconds of the last: popularity is plain counts.
        assert!((m.popularity[h.item_index["phone"] as usize] - 15.0).abs() < 1e-3);
        assert_eq!(m.popularity[h.item_index["unsold"] as usize], 0.0);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        m.save(&dir).unwrap();
        let back = RecommendModel::load(&dir).unwrap();
        assert_eq!(back.card.params, m.card.params);
        assert_eq!(back.card.als, m.card.als);
        assert_eq!(back.card.cooc, m.card.cooc);
        assert_eq!(back.card.method, m.card.method);
        assert_eq!(back.ease.b, m.ease.b);
        assert_eq!(back.als.item_factors, m.als.item_factors);
        assert_eq!(back.cooc.sim, m.cooc.sim);
        assert_eq!(back.popularity, m.popularity);
        // Someone who bought a phone is shown the case and charger first, by the chosen
        // method and by co-occurrence, before and after the round trip.
        let phone = h.item_index["phone"];
        let history = [(phone, 5.0, 0)];
        assert_eq!(back.cf_scores(&history), m.cf_scores(&history));
        for s in [back.cf_scores(&history), back.cooc_scores(&history)] {
            let top = crate::recommend::metrics::top_k(&s, &[phone], 2);
            let names: Vec<&str> = top.iter().map(|&i| h.items[i as usize].as_str()).collect();
            assert!(
                names.contains(&"case") && names.contains(&"charger"),
                "{names:?}"
            );
        }
        std::fs::write(dir.join(CARD_FILE), "{").unwrap();
        assert!(
            RecommendModel::load(&dir).is_err(),
            "a broken card is refused"
        );
    }

    #[test]
    fn both_methods_explain_by_the_related_history_item() {
        let (h, mut m) = two_cluster_model();
        let id = |s: &str| h.item_index[s];
        // The phone is older than the plush, yet it is what explains the case.
        let history = [(id("phone"), 5.0, 0), (id("plush"), 5.0, 1)];
        for method in ["recency_ease", "als"] {
            m.card.method = method.into();
            assert_eq!(
                m.explain(&history, id("case")),
                Some(id("phone")),
                "{method}"
            );
            assert_eq!(
                m.explain(&history, id("card")),
                Some(id("plush")),
                "{method}"
            );
            assert_eq!(m.explain(&[], id("case")), None, "{method}");
            assert_eq!(m.explain(&[(id("case"), 5.0, 0)], id("case")), None);
            // A brand-new customer's history is folded in.
            let s = m.cf_scores(&[(id("gift_box"), 5.0, 0)]);
            let top = crate::recommend::metrics::top_k(&s, &[id("gift_box")], 2);
            assert!(
                top.contains(&id("plush")) && top.contains(&id("card")),
                "{method}"
            );
        }
    }

    #[test]
    fn mis_shaped_or_corrupted_weights_are_refused() {
        let (_, m) = two_cluster_model();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        m.save(&dir).unwrap();
        let weights = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        // Truncated.
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let e = RecommendModel::load(&dir)
            .err()
            .expect("truncated file refused");
        assert!(format!("{e:#}").contains(WEIGHTS_FILE), "{e:#}");
        // Well-formed, but popularity has one value too many.
        let n = m.card.items.len();
        let f = m.als.params.factors;
        let cpu = &Device::Cpu;
        let mut tensors = HashMap::from([
            (
                "ease.b".to_string(),
                Tensor::from_vec(m.ease.b.clone(), (n, n), cpu).unwrap(),
            ),
            (
                "als.item_factors".to_string(),
                Tensor::from_vec(m.als.item_factors.clone(), (n, f), cpu).unwrap(),
            ),
            (
                "cooc.sim".to_string(),
                Tensor::from_vec(m.cooc.sim.clone(), (n, n), cpu).unwrap(),
            ),
            (
                "popularity".to_string(),
                Tensor::from_vec(vec![0f32; n + 1], n + 1, cpu).unwrap(),
            ),
        ]);
        candle_core::safetensors::save(&tensors, &weights).unwrap();
        let e = RecommendModel::load(&dir)
            .err()
            .expect("mis-shaped refused");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(WEIGHTS_FILE) && msg.contains("popularity"),
            "{msg}"
        );
        // ALS factors of another width than the card says.
        tensors.insert(
            "popularity".to_string(),
            Tensor::from_vec(m.popularity.clone(), n, cpu).unwrap(),
        );
        tensors.insert(
            "als.item_factors".to_string(),
            Tensor::from_vec(vec![0f32; n * (f + 1)], (n, f + 1), cpu).unwrap(),
        );
        candle_core::safetensors::save(&tensors, &weights).unwrap();
        let e = RecommendModel::load(&dir)
            .err()
            .expect("wrong factors refused");
        assert!(format!("{e:#}").contains("als.item_factors"), "{e:#}");
        // A missing part.
        tensors.remove("als.item_factors");
        candle_core::safetensors::save(&tensors, &weights).unwrap();
        assert!(RecommendModel::load(&dir).is_err());
    }
}
