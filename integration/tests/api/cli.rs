//! Tests of the cli (to be written).
