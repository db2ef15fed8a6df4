//! Getting evidence out: JSON lines for tools, asciicast for terminal players, and
//! self-verifying bundles for auditors who have only proctor's public key.

pub mod asciicast;
pub mod bundle;
pub mod json;
pub mod jsonl;
