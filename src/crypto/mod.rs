//! Cryptographic building blocks shared by the token service, the users API and the CLI:
//! password hashing on a bounded pool (`password`), random tokens, hashing and
//! constant-time comparison (`token`), and a string type for secrets that never prints
//! and is wiped from memory when dropped (`secret`).

pub mod password;
pub mod secret;
pub mod token;

pub use password::{HashFormat, PasswordError, PasswordHasherPool, Verification};
pub use secret::Secret;
pub use token::{constant_time_eq, random_token, sha256_hex};
