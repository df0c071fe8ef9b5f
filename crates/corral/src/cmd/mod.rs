//! One module per subcommand.

mod attach;
pub mod create;
pub mod launch;
pub mod manage;
mod output;
pub mod repl;
pub mod rpc;
pub mod run;
pub mod runner;
pub mod serve;
pub mod show;
pub mod template_worker;
pub mod transfer;
