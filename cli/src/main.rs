//! `tandem`: the one binary. Parses arguments, runs a command, maps failures to exit codes.

mod args;
mod commands;
mod connect;
mod dev;
mod exit;
mod output;
mod scratch;
mod secrets;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Args, Command};
use crate::exit::Failure;

/// mimalloc: `lint` of a 10,000-statement file spends a third of its time in the system
/// allocator (page faults of its arenas); with mimalloc, 127 ms became 78 ms (BENCHMARKS.md §2).
/// Its arenas are committed lazily by default (`.cargo/config.toml`): eagerly, the proxy's 500
/// idle connections took 57 KiB each instead of 12. Every other command commits them eagerly
/// (`arenas`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// glibc passes argc and argv to `.init_array` entries; other C libraries may not.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod arenas {
    //! Which arenas mimalloc commits eagerly, chosen before its first allocation.
    //!
    //! The commands that read a schema and exit (lint, plan, diff, check) parse thousands of
    //! statements into short-lived trees: eagerly committed arenas are backed by transparent
    //! huge pages, which spares them most of their page faults (24,000 to 4,400 for `lint` of
    //! a 10,000-statement file, BENCHMARKS.md §2). Every other command keeps the lazily
    //! committed arenas the build sets (`.cargo/config.toml`): the proxy lives long with many
    //! small connections (eagerly, 500 idle connections took 57 KiB each instead of 12), and
    //! the commands that take locks on a live database (apply, rollback, finalize, demo) keep
    //! the allocator their latency was measured with, with no huge-page compaction while a
    //! swap holds its locks. mimalloc reserves its first arena at the first allocation, before
    //! `main`, so the choice is made in a constructor that reads argv: the first argument that
    //! names a command decides.
    use std::ffi::{c_char, c_int, c_long, CStr};

    extern "C" {
        /// mimalloc's own API, compiled into the binary with the allocator.
        fn mi_option_set(option: c_int, value: c_long);
    }
    /// `mi_option_arena_eager_commit` in mimalloc.h.
    const ARENA_EAGER_COMMIT: c_int = 4;

    /// Run by the loader before `main` (and before Rust's runtime allocates), with the
    /// process's arguments, as glibc passes them to `.init_array` entries.
    extern "C" fn choose(argc: c_int, argv: *const *const c_char, _env: *const *const c_char) {
        if argv.is_null() {
            return;
        }
        let count = usize::try_from(argc).unwrap_or(0);
        // SAFETY: glibc passes argc valid NUL-terminated strings in argv, read-only here.
        let command = (1..count)
            .map(|i| unsafe { *argv.add(i) })
            .filter(|arg| !arg.is_null())
            .map(|arg| unsafe { CStr::from_ptr(arg) }.to_bytes())
            .find(|arg| COMMANDS.contains(arg));
        if command.is_some_and(|c| EAGER.contains(&c)) {
            // SAFETY: sets one integer option; mimalloc reads it when it reserves an arena.
            unsafe { mi_option_set(ARENA_EAGER_COMMIT, 1) };
        }
    }

    /// The commands that get eager arenas.
    const EAGER: &[&[u8]] = &[b"lint", b"plan", b"diff", b"check"];
    /// Every command's name (`args::Command`), so that an argument's value is not taken for
    /// one when a command comes after it.
    const COMMANDS: &[&[u8]] = &[
        b"lint",
        b"plan",
        b"diff",
        b"check",
        b"dev-image",
        b"keygen",
        b"policy",
        b"submit",
        b"approve",
        b"audit",
        b"secrets",
        b"apply",
        b"status",
        b"pause",
        b"resume",
        b"rollback",
        b"finalize",
        b"extend",
        b"demo",
        b"proxy",
    ];

    #[used]
    #[link_section = ".init_array"]
    static CHOOSE: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = choose;

    #[cfg(test)]
    mod tests {
        use clap::CommandFactory;

        #[test]
        fn the_command_list_is_clap_s() {
            let clap: Vec<String> = crate::args::Args::command()
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            let ours: Vec<String> = super::COMMANDS
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            assert_eq!(ours, clap);
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A server logs its life at info by default; a command only its warnings.
    let server = matches!(args.command, Command::Proxy(_));
    init_tracing(args.verbose.saturating_add(u8::from(server)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.render());
            ExitCode::from(failure.code)
        }
    }
}

async fn run(args: Args) -> Result<u8, Failure> {
    let global = args.global;
    match args.command {
        Command::Lint(a) => commands::lint::run(&global, a),
        Command::Plan(a) => commands::plan::run(&global, a).await,
        Command::Diff(a) => commands::diff::run(&global, a).await,
        Command::Check(a) => commands::check::run(&global, a).await,
        Command::DevImage(c) => commands::dev_image::run(c).await,
        Command::Keygen(a) => commands::keys::keygen(a),
        Command::Policy(c) => commands::policy::run(&global, c).await,
        Command::Submit(a) => commands::submit::run(&global, a).await,
        Command::Approve(a) => commands::approve::run(&global, a).await,
        Command::Audit(c) => commands::audit::run(&global, c).await,
        Command::Secrets(c) => commands::secrets::run(&global, c).await,
        Command::Apply(a) => commands::apply::apply(&global, a).await,
        Command::Rollback(a) => commands::apply::rollback(&global, a).await,
        Command::Finalize(a) => commands::apply::finalize(&global, a).await,
        Command::Extend(a) => commands::window::extend(&global, a).await,
        Command::Status(a) => commands::status::status(&global, a).await,
        Command::Pause(a) => commands::status::pause(&global, a, true).await,
        Command::Resume(a) => commands::status::pause(&global, a, false).await,
        Command::Demo(a) => commands::demo::run(&global, a).await,
        Command::Proxy(a) => commands::proxy::run(a).await,
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
