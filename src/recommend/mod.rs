//! Recommendations: interaction histories, hold-out splits and top-k metrics (the protocol of
//! `kefu eval recommend`), and the recommenders.

pub mod data;
pub mod ease;
pub mod eval;
pub mod metrics;
pub mod model;
