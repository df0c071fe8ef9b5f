//! One module per subcommand.

pub mod create;
pub mod manage;
pub mod runner;
pub mod serve;
pub mod show;
