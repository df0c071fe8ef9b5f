//! `corral template-worker` (hidden): renders chat templates for the server, one JSON
//! [`RenderJob`] line in on stdin, one [`corral_template::RenderReply`] line out on stdout, until
//! stdin closes.
//!
//! A template is code from whoever published the model, so this process runs with a kernel limit
//! on its memory (`RLIMIT_DATA`: heap and anonymous mappings). A template that builds up more gets
//! a failed allocation, which aborts this process and nothing else; the server reads the
//! allocator's last words on stderr and tells the user. See `corral_server`'s `render` module.

use std::io::{BufRead, Write};

use anyhow::Context;
use corral_template::{Cache, RenderJob, RenderReply, TemplateError};

#[derive(clap::Args)]
pub struct Args {
    /// Most memory this process may hold, in bytes
    #[arg(long)]
    memory: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // A render the server gave up on (past its deadline) is killed, but a server killed with -9
    // cannot do that: one slow render must not leave this process running on alone.
    super::runner::exit_with_parent("template worker");
    limit_memory(args.memory).context("could not limit the template worker's memory")?;
    let mut cache = Cache::default();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading a render job")?;
        let reply: RenderReply = match serde_json::from_str::<RenderJob>(&line) {
            Ok(job) => cache.run(&job),
            Err(e) => Err(TemplateError(format!("malformed render job: {e}"))),
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

/// Caps this process's data segment and anonymous mappings (what a render allocates) at `bytes`.
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
