//! shardcast-bench: the load generator of shardcast — idle connections, fan-out,
//! API rate, client messages — and the same fan-out against any WebSocket server with an HTTP publish
//! endpoint (nchan), so that both can be measured on one machine from a clean checkout.
//!
//! Subscribers are driven by a few epoll threads (one per worker process; more
//! processes when the open-file limit requires, spread over several loopback source
//! addresses). Each message carries its send time (CLOCK_MONOTONIC, shared by all
//! processes) as a marker inside its payload; receivers find the frame boundary from the
//! WebSocket header and the marker by a byte search, without parsing JSON.
//!
//! # Modules
//!
//! In layers: a module imports only modules listed below it, so there is no import
//! circle (`layering` checks every `crate::` path against this order). From the top:
//!
//! The runs, one per subcommand:
//! - `idle`: N idle connections: connect rate, handshake latency, server memory each.
//! - `traffic`: `idle --traffic`: pushes to the open connections, server memory after.
//! - `fanout`: `fanout` (shardcast's API) and `generic` (any subscribe/publish server).
//! - `chat`: clients sending client messages: acks/s, ack latency, /metrics moves.
//! - `resume`: clients dropped and resumed at once: resumes/s, latency, server CPU.
//! - `api`: request rate and latency of the HTTP API over keep-alive connections.
//! - `compare`: medians and ratios of the labelled JSON results of several runs.
//!
//! The parent's side of a run:
//! - `fleet`: starts the workers (a thread, child processes) and talks to them.
//! - `plan`: spreads a run's connections over worker processes and source addresses.
//!
//! The worker's side (one epoll thread per worker):
//! - `worker`: the phases of a fanout, idle or chat worker.
//! - `resume_worker`: the phases of a resume worker.
//! - `sender`: a chat worker's client messages, paced and windowed.
//! - `subscriber`: the subscriber connections of fanout, idle and chat.
//! - `resume_conns`: the connections of a resume worker.
//! - `setup`: what both kinds of worker do first: connect, bind to a group, settle.
//! - `ws_client`: what the two connection sets share: upgrade, frames, writes.
//! - `http_client`: a pool of pipelined keep-alive HTTP/1.1 connections.
//! - `poller`: a level-triggered epoll set.
//!
//! Beneath both sides:
//! - `cli`: the command line: every subcommand's arguments.
//! - `ipc`: the messages between parent and workers: specs, commands, events, reports.
//! - `metrics`: a server's Prometheus page, and how series moved between two readings.
//! - `report`: human summaries, number formats, merged error samples.
//! - `histogram`: the latency histogram, merged across threads and processes.
//! - `clock`: CLOCK_MONOTONIC nanoseconds, the same in every process.
//! - `deflate`: permessage-deflate: the offer, the server's answer, inflating.
//! - `json_body`: `--payload-json`: a JSON body of a given size, marked.
//! - `marker`: the send-time marker inside payloads, found by a byte search.
//! - `envelope`: shardcast's answer `code`, checked by a byte search.
//! - `procstat`: CPU time and resident memory of processes, from /proc.
//! - `sock`: non-blocking TCP sockets through libc, the open-file limit.
//! - `sources`: the loopback source addresses and each worker's share.
//! - `url`: `ws://` and `http://` URLs.
//! - `receive_log`: `--receive-log`: one line per marked frame received.

// serde_json's json! recurses once per key: fanout's result has more than the
// default limit of 128 allows.
#![recursion_limit = "256"]

mod api;
mod chat;
mod cli;
mod clock;
mod compare;
mod deflate;
mod envelope;
mod fanout;
mod fleet;
mod histogram;
mod http_client;
mod idle;
mod ipc;
mod json_body;
#[cfg(test)]
mod layering;
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
