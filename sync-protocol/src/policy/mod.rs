//! The policy model both ends share: users and their credentials as
//! stored (hashes, never secrets), and the CSV format users are imported
//! from. Credential hashes travel as stored, so how they are made is part
//! of the protocol: central makes them, sites verify them.

pub mod credentials;
pub mod users;
