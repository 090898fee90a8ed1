//! Did recommendations convert? Each item `/v1/recommend` showed is an impression; a later
//! click or purchase of that item by the same customer within the conversion window counts
//! once for the latest such impression, credited to the strategy, source, channel and
//! experiment arm that showed it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::stats::Window;
use super::turns::Impression;

/// Impressions of one group and what came of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Funnel {
    pub impressions: u64,
    /// Impressions clicked, and bought, within the window.
    pub clicked: u64,
    pub purchased: u64,
    /// `clicked / impressions`.
    pub ctr: Option<f64>,
    /// `purchased / impressions`.
    pub conversion_rate: Option<f64>,
}

impl Funnel {
    fn add(&mut self, clicked: bool, purchased: bool) {
        self.impressions += 1;
        self.clicked += u64::from(clicked);
        self.purchased += u64::from(purchased);
    }

    fn finish(&mut self) {
        let n = self.impressions as f64;
        self.ctr = (self.impressions > 0).then(|| self.clicked as f64 / n);
        self.conversion_rate = (self.impressions > 0).then(|| self.purchased as f64 / n);
    }
}

/// The control against the recommender.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Lift {
    pub treatment: Funnel,
    pub control: Funnel,
    /// Conversion rate of the treatment minus the control's.
    pub difference: Option<f64>,
    /// 95% confidence interval of the difference (normal approximation).
    pub ci95: Option<[f64; 2]>,
    /// `difference / control conversion rate`: +0.15 is 15% more conversions.
    pub lift: Option<f64>,
    /// The lift's interval (the difference's, over the control's rate).
    pub lift_ci95: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct RecommendationStats {
    #[serde(flatten)]
    pub window: Window,
    pub conversion_window_secs: u64,
    /// Customers shown something.
    pub customers: u64,
    pub total: Funnel,
    pub by_strategy: BTreeMap<String, Funnel>,
    pub by_source: BTreeMap<String, Funnel>,
    pub by_channel: BTreeMap<String, Funnel>,
    /// While `recommend.experiment` runs (or ran in the window).
    pub experiment: Option<Lift>,
}

/// Credits `events` (`(customer, type, item, ts seconds)`, clicks and purchases) to
/// `shown` (sorted by time) within `window_secs`.
pub fn conversions(
    window: Window,
    shown: &[Impression],
    events: &[(String, String, String, i64)],
    window_secs: u64,
) -> RecommendationStats {
    // Impressions of each (customer, item), oldest first.
    let mut of: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, s) in shown.iter().enumerate() {
        of.entry((s.customer_id.as_str(), s.item_id.as_str()))
            .or_default()
            .push(i);
    }
    let (mut clicked, mut purchased) = (vec![false; shown.len()], vec![false; shown.len()]);
    for (customer, kind, item, ts) in events {
        let Some(list) = of.get(&(customer.as_str(), item.as_str())) else {
            continue;
        };
        // The latest impression at or before the event, inside the window.
        let hit = list.iter().rev().find(|&&i| {
            let at = shown[i].at_ms.div_euclid(1000);
            at <= *ts && ts - at <= window_secs as i64
        });
        if let Some(&i) = hit {
            match kind.as_str() {
                "purchase" => purchased[i] = true,
                _ => clicked[i] = true,
            }
        }
    }
    let mut r = RecommendationStats {
        window,
        conversion_window_secs: window_secs,
        ..Default::default()
    };
    let mut customers = std::collections::HashSet::new();
    let mut arms: BTreeMap<&str, Funnel> = BTreeMap::new();
    for (i, s) in shown.iter().enumerate() {
        let (c, p) = (clicked[i], purchased[i]);
        customers.insert(s.customer_id.as_str());
        r.total.add(c, p);
        r.by_strategy
            .entry(s.strategy.clone())
            .or_default()
            .add(c, p);
        r.by_source.entry(s.source.clone()).or_default().add(c, p);
        r.by_channel
            .entry(s.channel.clone().unwrap_or_else(|| "unknown".into()))
            .or_default()
            .add(c, p);
        if let Some(a) = &s.arm {
            arms.entry(a.as_str()).or_default().add(c, p);
        }
    }
    r.customers = customers.len() as u64;
    r.total.finish();
    for m in [&mut r.by_strategy, &mut r.by_source, &mut r.by_channel] {
        m.values_mut().for_each(Funnel::finish);
    }
    if !arms.is_empty() {
        let mut t = arms.remove("treatment").unwrap_or_default();
        let mut c = arms.remove("control").unwrap_or_default();
        t.finish();
        c.finish();
        r.experiment = Some(lift(t, c));
    }
    r
}

fn lift(treatment: Funnel, control: Funnel) -> Lift {
    let mut l = Lift {
        treatment,
        control,
        ..Default::default()
    };
    if let (Some(pt), Some(pc)) = (l.treatment.conversion_rate, l.control.conversion_rate) {
        let (nt, nc) = (l.treatment.impressions as f64, l.control.impressions as f64);
        let d = pt - pc;
        let se = (pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc).sqrt();
        l.difference = Some(d);
        l.ci95 = Some([d - 1.96 * se, d + 1.96 * se]);
        if pc > 0.0 {
            l.lift = Some(d / pc);
            l.lift_ci95 = Some([(d - 1.96 * se) / pc, (d + 1.96 * se) / pc]);
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(at_s: i64, customer: &str, item: &str, arm: &str) -> Impression {
        Impression {
            at_ms: at_s * 1000 + 500,
            customer_id: customer.into(),
            item_id: item.into(),
            position: 0,
            strategy: "cold_start".into(),
            source: "popularity".into(),
            channel: Some("web".into()),
            arm: Some(arm.into()),
        }
    }

    #[test]
    fn a_purchase_counts_for_the_latest_impression_inside_the_window() {
        let w = Window {
            from_ms: 0,
            to_ms: 1_000_000_000,
        };
        let s = vec![
            shown(100, "a", "x", "treatment"),
            shown(200, "a", "x", "treatment"),
            shown(100, "b", "y", "control"),
            shown(100, "c", "z", "control"),
        ];
        let e = vec![
            // Same second as the impression: counts.
            (
                "a".to_string(),
                "purchase".to_string(),
                "x".to_string(),
                200,
            ),
            ("b".into(), "click".into(), "y".into(), 150),
            // After the window: does not count.
            ("c".into(), "purchase".into(), "z".into(), 100 + 3601),
            // Another item: does not count.
            ("b".into(), "purchase".into(), "q".into(), 150),
        ];
        let r = conversions(w, &s, &e, 3600);
        assert_eq!(r.total.impressions, 4);
        assert_eq!((r.total.clicked, r.total.purchased), (1, 1));
        assert_eq!(r.customers, 3);
        let x = r.experiment.unwrap();
        assert_eq!((x.treatment.impressions, x.treatment.purchased), (2, 1));
        assert_eq!((x.control.impressions, x.control.purchased), (2, 0));
        assert_eq!(x.difference, Some(0.5));
        assert_eq!(x.lift, None, "no lift over a control that never converts");
    }
}
