//! Recommendations: interaction histories, hold-out splits and top-k metrics (the protocol of
//! `kefu eval recommend`), the recommenders, and their serving side (catalogue, events,
//! profiles, `/v1/recommend`).

pub mod als;
pub mod cooc;
pub mod data;
pub mod ease;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod serving;
pub mod store;
