//! Shared parts of the fuzz targets: an in-process stand-in for lanyardd that
//! answers the agent protocol with fuzzer-chosen, well-formed responses, so
//! the PKCS#11 target reaches the argument layer behind a connection.

pub mod agent;
