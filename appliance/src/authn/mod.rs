//! Who a person is: secrets checked against the store ([`verifier`]) and
//! the lockout after repeated wrong ones ([`lockout`]). Shared by the
//! release API's logins at a printer and IPP's Basic authentication
//! (`ipp::auth`), so both pay argon2 on the same bounded threads.

pub mod lockout;
pub mod verifier;
