//! A trained recommender on disk: `recommend.json` (method, settings chosen on validation and
//! their validation metrics, item ids, the training data's sha256) and `model.safetensors`
//! (the item-to-item weights). Written whole or not at all.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::data::{Histories, Split};
use super::ease::{Ease, EaseParams};

pub const CARD_FILE: &str = "recommend.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataRef {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecommendCard {
    pub method: String,
    pub params: EaseParams,
    /// Hold-out used to choose the settings, and the validation NDCG@10 / HR@10 there.
    pub validation_split: Split,
    pub validation_ndcg_at_10: f64,
    pub settings_tried: usize,
    pub customers: usize,
    pub interactions: usize,
    pub items: Vec<String>,
    pub interactions_data: DataRef,
    pub items_data: Option<DataRef>,
    pub train_seconds: f64,
    pub created_at: String,
}

pub struct RecommendModel {
    pub card: RecommendCard,
    pub ease: Ease,
}

impl RecommendModel {
    /// Chooses the settings on a `last` hold-out of `h`, then fits on all of it.
    pub fn train(
        h: &Histories,
        interactions: DataRef,
        items_data: Option<DataRef>,
        n_interactions: usize,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Self> {
        let n = h.items.len();
        let chosen = super::eval::choose(n, &h.seqs, Split::Last, progress)
            .context("interrupted before any setting was tried")?;
        anyhow::ensure!(
            !crate::eval::interrupt_flag().load(std::sync::atomic::Ordering::SeqCst),
            "interrupted: nothing was written"
        );
        let t = std::time::Instant::now();
        let ease = Ease::fit(n, &h.seqs, chosen.params.lambda);
        Ok(Self {
            card: RecommendCard {
                method: "recency_ease".into(),
                params: chosen.params,
                validation_split: Split::Last,
                validation_ndcg_at_10: chosen.validation_ndcg_at_10,
                settings_tried: chosen.tried,
                customers: h.users.len(),
                interactions: n_interactions,
                items: h.items.clone(),
                interactions_data: interactions,
                items_data,
                train_seconds: t.elapsed().as_secs_f64(),
                created_at: crate::kb::entry::now_rfc3339(),
            },
            ease,
        })
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let n = self.ease.n_items;
        let b = Tensor::from_vec(self.ease.b.clone(), (n, n), &Device::Cpu)?;
        crate::atomic::replace_dir(dir, ".recommend-", |tmp| {
            candle_core::safetensors::save(
                &HashMap::from([("ease.b".to_string(), b)]),
                tmp.join(WEIGHTS_FILE),
            )?;
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
        let b = t
            .remove("ease.b")
            .with_context(|| format!("{} has no ease.b", weights.display()))?;
        let n = card.items.len();
        anyhow::ensure!(
            b.dims() == [n, n],
            "{}: ease.b is {:?}, the card lists {n} items",
            weights.display(),
            b.dims()
        );
        let b = b.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self {
            card,
            ease: Ease { n_items: n, b },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::data::Interaction;

    #[test]
    fn a_trained_model_saves_and_loads_to_the_same_scores() {
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
                    ts: k as i64,
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
        assert_eq!(m.card.items.len(), 7);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        m.save(&dir).unwrap();
        let back = RecommendModel::load(&dir).unwrap();
        assert_eq!(back.card.params, m.card.params);
        assert_eq!(back.ease.b, m.ease.b);
        // Someone who bought a phone is shown the case and charger first.
        let phone = h.item_index["phone"];
        let s = back.ease.scores(
            &[(phone, 5.0, 0)],
            back.card.params.tau,
            back.card.params.floor,
        );
        let top = crate::recommend::metrics::top_k(&s, &[phone], 2);
        let names: Vec<&str> = top.iter().map(|&i| h.items[i as usize].as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(
            names.contains(&"case") && names.contains(&"charger"),
            "{names:?}"
        );
        std::fs::write(dir.join(CARD_FILE), "{").unwrap();
        assert!(
            RecommendModel::load(&dir).is_err(),
            "a broken card is refused"
        );
    }
}
