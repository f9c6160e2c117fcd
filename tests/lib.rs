//! Intentionally empty: this crate only holds end-to-end tests (see `agent.rs`) and their helpers in `common/`.
