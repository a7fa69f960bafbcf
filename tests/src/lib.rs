//! Test harness: real processes and real servers on loopback.

pub mod s3server;
