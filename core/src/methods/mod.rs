//! The methods the core runs, one module each, as anonymizer/methods/ has them: what the Python
//! plan exports as an action (plan.rs `Action`) is applied here to one normalised value.

pub mod cryptohash;
pub mod dateshift;
pub mod encrypt;
pub mod redact;
