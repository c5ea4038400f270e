//! shardcast-bench: the load generator of shardcast — idle connections, fan-out,
//! API rate, client messages — and the same fan-out against any WebSocket server with an HTTP publish
//! endpoint (nchan), so that both can be measured on one machine from a clean checkout.
//!
//! Subscribers are driven by a few epoll threads (one per worker process; more
//! processes when the open-file limit requires, spread over several loopback source
//! addresses). Each message carries its send time (CLOCK_MONOTONIC, shared by all
//! processes) as a marker inside its payload; receivers find the frame boundary from the
//! WebSocket header and the marker by a byte search, without parsing JSON.

mod api;
mod chat;
mod cli;
mod clock;
mod compare;
mod envelope;
mod fanout;
mod fleet;
mod histogram;
mod http_client;
mod idle;
mod ipc;
mod marker;
mod metrics;
mod plan;
mod poller;
mod procstat;
mod receive_log;
mod report;
mod resume;
mod resume_conns;
mod resume_worker;
mod sender;
mod setup;
mod sock;
mod sources;
mod subscriber;
mod traffic;
mod url;
mod worker;
mod ws_client;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = report::Out {
        json: cli.json,
        label: cli.label,
    };
    let r = match cli.command {
        Command::Idle(a) => idle::run(a, &out),
        Command::Fanout(a) => fanout::run_shardcast(a, &out),
        Command::Api(a) => api::run(a, &out),
        Command::Chat(a) => chat::run(a, &out),
        Command::Resume(a) => resume::run(a, &out),
        Command::Generic(a) => fanout::run_generic(a, &out),
        Command::Compare(a) => compare::run(a, &out),
        Command::Worker => fleet::child_main(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
