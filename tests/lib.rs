//! Intentionally empty: this crate only holds end-to-end tests, one test binary (`tests.rs`, declaring a module per area) and their helpers in `common/`.
