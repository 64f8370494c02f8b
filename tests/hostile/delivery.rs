//! Hostile cases: see the list in `tests/hostile.rs`.
