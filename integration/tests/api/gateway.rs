//! Tests of the gateway (to be written).
