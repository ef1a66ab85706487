//! Tests of the store (to be written).
