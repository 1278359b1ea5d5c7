//! The `cpm-iwf` command.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};

use cpm_iwf::config::Config;
use cpm_iwf::inspect::{self, Format};
use cpm_iwf::mapping::Mappings;
use cpm_iwf::translate::state::Side;

/// The node runs on jemalloc (feature `jemalloc`, on by default): each size class on pages
/// of its own, and emptied pages given back by its background thread. On glibc's heap a held
/// chat session kept ~3x its live bytes resident: the small allocations it keeps sat on the
/// same pages as the setup's SIP messages and transactions, freed 32 s later (RFC 6026 Timer
/// L/M) and never returned while one live object stays on a page (BENCHMARKS.md, issue 9).
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (before `main`); `_RJEM_MALLOC_CONF` in
/// the environment adds to and overrides them. `background_thread`: a thread of jemalloc's
/// own purges freed pages, so an idle node gives memory back too; `dirty_decay_ms:1000`,
/// `muzzy_decay_ms:0`: freed pages go back to the system within about a second instead of
/// ten. The arenas are left at jemalloc's default (4 per core): one or eight made no
/// difference to the resident size of 10,000 held sessions here.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

#[derive(Parser)]
#[command(
    name = "cpm-iwf",
    version,
    about = "OMA CPM 2.0 <-> OMA SIMPLE IM 2.0 interworking gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway and serve until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file; without it, the embedded loopback defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log lines as JSON objects (one per line) or as text, on standard error. The level
        /// comes from `RUST_LOG`, else the configuration's `log_level`.
        #[arg(long, value_enum, default_value = "json")]
        log_format: LogFormat,
        /// Runtime threads (default: one per core; 1 runs everything on one thread).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Validate a configuration file and the mappings it names; exit 2 on the first fault.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Conformance cases (`conformance/cases/`).
    Conformance {
        #[command(subcommand)]
        action: ConformanceAction,
    },
    /// Translate one message (SIP or MSRP, detected; from a file or `-`) and print what would
    /// be sent.
    Translate {
        /// The side the message comes from.
        #[arg(long, value_enum)]
        from: SideArg,
        /// A JSON file holding the correlation table between runs (created when absent).
        #[arg(long)]
        state: Option<PathBuf>,
        /// For a SIP response: the request the gateway received from the other side, which
        /// the response answers (through the request the gateway sent on).
        #[arg(long)]
        request: Option<PathBuf>,
        /// The message, or `-` for standard input.
        input: PathBuf,
    },
    /// Read the store-and-forward store (read-only, safe while the node runs).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Parse one message and print it as JSON.
    Inspect {
        /// The format of the input.
        #[arg(value_enum)]
        format: Format,
        /// The file to read, or `-` for standard input.
        input: PathBuf,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The two networks, as named on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SideArg {
    Cpm,
    Simple,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Messages, bytes and users kept, and the oldest message's age; then per user.
    Stats {
        /// The node's configuration file (its `[store] location`); without it, the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Most users listed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The users with messages kept, or with `--user`, that user's messages, oldest first.
    List {
        /// The node's configuration file; without it, the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A user's address of record (`sip:bob@example.net`).
        #[arg(long)]
        user: Option<String>,
        /// Most lines.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ConformanceAction {
    /// Run the cases and print one line per case, then `N passed, M failed`.
    Run {
        /// Run them through the translator alone, with no network.
        #[arg(long, conflicts_with = "target")]
        offline: bool,
        /// Play them against a running node (`cpm-iwf run`) whose SIP addresses (UDP) are
        /// `<cpm-addr>,<simple-addr>`, the runner acting as both networks' peers.
        #[arg(long, value_name = "CPM-ADDR,SIMPLE-ADDR", value_parser = parse_addr_pair)]
        target: Option<(SocketAddr, SocketAddr)>,
        /// Target mode: the node's MSRP listeners; default the `--target` hosts, ports 2855
        /// and 2856 (the default configuration's).
        #[arg(long, value_name = "CPM-ADDR,SIMPLE-ADDR", value_parser = parse_addr_pair, requires = "target")]
        target_msrp: Option<(SocketAddr, SocketAddr)>,
        /// Target mode: the addresses the runner binds as the node's next hops (SIP over UDP).
        #[arg(
            long,
            value_name = "CPM-PEER,SIMPLE-PEER",
            value_parser = parse_addr_pair,
            default_value = "127.0.0.1:5070,127.0.0.1:5072",
            requires = "target"
        )]
        peers: (SocketAddr, SocketAddr),
        /// Target mode: how long a step waits for what the node sends, in milliseconds.
        #[arg(long, default_value_t = 2000, requires = "target")]
        wait_ms: u64,
        /// Target mode: the whole run's limit, in seconds.
        #[arg(long, default_value_t = 600, requires = "target")]
        run_timeout_s: u64,
        /// The directory of case files.
        #[arg(default_value = "conformance/cases")]
        dir: PathBuf,
    },
}

/// Largest input `inspect` reads: well above every codec limit, so that the codec, not the
/// reader, reports an over-long message.
const MAX_INSPECT_INPUT: u64 = 16 * 1024 * 1024;

/// `println!` through [`out`].
macro_rules! outln {
    ($($t:tt)*) => {
        out(format_args!("{}\n", format_args!($($t)*)))
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_format,
            workers,
        } => match load_config(config.as_deref()) {
            Ok((config, mappings)) => run_node(config, mappings, log_format, workers),
            Err(e) => fail(&e),
        },
        Command::Conformance {
            action:
                ConformanceAction::Run {
                    offline,
                    target,
                    target_msrp,
                    peers,
                    wait_ms,
                    run_timeout_s,
                    dir,
                },
        } => match target {
            Some((cpm, simple)) => {
                let mut node =
                    cpm_iwf::conformance::target::NodeAddrs::with_default_msrp(cpm, simple);
                if let Some((cpm_msrp, simple_msrp)) = target_msrp {
                    node.cpm_msrp = cpm_msrp;
                    node.simple_msrp = simple_msrp;
                }
                let opts = cpm_iwf::conformance::target::TargetOptions {
                    wait: std::time::Duration::from_millis(wait_ms),
                    run_timeout: std::time::Duration::from_secs(run_timeout_s),
                    ..Default::default()
                };
                run_conformance_target(node, peers, opts, &dir)
            }
            None => run_conformance(offline, &dir),
        },
        Command::Translate {
            from,
            state,
            request,
            input,
        } => {
            let side = match from {
                SideArg::Cpm => Side::Cpm,
                SideArg::Simple => Side::Simple,
            };
            match run_translate(side, state.as_deref(), request.as_deref(), &input) {
                Ok(text) => {
                    out(format_args!("{text}"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { file } => match load_config(Some(&file)) {
            Ok(_) => {
                outln!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Store { action } => match run_store(action) {
            Ok(text) => {
                out(format_args!("{text}"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Inspect { format, input } => match run_inspect(format, &input) {
            Ok(json) => {
                outln!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

/// Write to standard output. A reader that went away (`| head`) ends the output quietly: a
/// closed pipe is not an error worth a panic or a message.
fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write output: {e}");
        std::process::exit(2);
    }
}

/// One line on stderr, exit status 2: what every failing command does.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// `<addr>,<addr>`.
fn parse_addr_pair(s: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected <cpm-addr>,<simple-addr>"))?;
    let addr = |x: &str| {
        x.trim()
            .parse::<SocketAddr>()
            .map_err(|e| format!("{x:?}: {e}"))
    };
    Ok((addr(a)?, addr(b)?))
}

/// `conformance run --target`: the cases against a live node; `N passed, M failed` last,
/// skipped cases and expectations not checked on lines of their own before it.
fn run_conformance_target(
    node: cpm_iwf::conformance::target::NodeAddrs,
    peers: (SocketAddr, SocketAddr),
    opts: cpm_iwf::conformance::target::TargetOptions,
    dir: &std::path::Path,
) -> ExitCode {
    use cpm_iwf::conformance::target::{Outcome, Peers, run_target_dir};
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let results = runtime.block_on(async move {
        let peers = Peers::bind(peers.0, peers.1)
            .await
            .map_err(|e| format!("cannot bind the peers {peers:?}: {e}"))?;
        // The run's own limit, and a little more for the case in progress.
        let limit = opts.run_timeout + opts.wait * 8;
        tokio::time::timeout(limit, run_target_dir(dir, peers, node, opts))
            .await
            .map_err(|_| "the run did not finish in time".to_string())?
            .map_err(|e| e.to_string())
    });
    let results = match results {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let (mut passed, mut failed, mut not_checked) = (0usize, 0usize, 0usize);
    let mut skipped = Vec::new();
    for r in &results {
        not_checked += r.not_checked.len();
        match &r.outcome {
            Outcome::Passed => {
                passed += 1;
                if r.not_checked.is_empty() {
                    outln!("ok   {} ({})", r.name, r.clause);
                } else {
                    outln!(
                        "ok   {} ({}); not checked: {}",
                        r.name,
                        r.clause,
                        r.not_checked.join(", ")
                    );
                }
            }
            Outcome::Failed(why) => {
                failed += 1;
                outln!("FAIL {} ({}): {why}", r.name, r.clause);
            }
            Outcome::Skipped(why) => {
                skipped.push(r.name.as_str());
                outln!("skip {} ({}): {why}", r.name, r.clause);
            }
        }
    }
    if not_checked > 0 {
        outln!(
            "{not_checked} expectations not checked (the node's table and the Via it writes \
             cannot be seen from outside)"
        );
    }
    if !skipped.is_empty() {
        outln!(
            "{} skipped (offline only: {})",
            skipped.len(),
            skipped.join(", ")
        );
    }
    outln!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_conformance(offline: bool, dir: &std::path::Path) -> ExitCode {
    if !offline {
        return fail(
            &"say how to run the cases: `--offline`, or `--target <cpm-addr>,<simple-addr>`",
        );
    }
    let mappings = match Mappings::embedded() {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let results = match cpm_iwf::conformance::run_dir(dir, &mappings) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for r in &results {
        match &r.failure {
            None => outln!("ok   {} ({})", r.name, r.clause),
            Some(why) => outln!("FAIL {} ({}): {why}", r.name, r.clause),
        }
    }
    outln!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The configuration (a file, or the defaults) and the mappings it names, both validated.
/// `cpm-iwf run`: start the node, print where it listens, serve until SIGTERM or Ctrl-C, then
/// stop gracefully (RFC 3261 transactions in progress get a few seconds).
fn run_node(
    config: Config,
    mappings: Mappings,
    log_format: LogFormat,
    workers: Option<usize>,
) -> ExitCode {
    use cpm_iwf::node::run::Node;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    #[cfg(all(feature = "jemalloc", target_os = "linux"))]
    cpm_iwf::node::memory::jemalloc_is_global();
    // Before any runtime thread exists (`node::memory::single_arena` says why).
    if !cpm_iwf::node::memory::single_arena() {
        tracing::debug!("malloc arenas left as they are (not glibc)");
    }
    let runtime = match workers {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let node = match Node::start(config, mappings).await {
            Ok(n) => n,
            Err(e) => return fail(&format!("cannot start: {e}")),
        };
        // The handlers are in place before the line that says the node is up, so that a stop
        // asked for right after it is not the default action of SIGTERM (death, exit 143).
        let stop = StopSignals::install();
        let l = &node.listening;
        outln!(
            "cpm-iwf {} listening: CPM side SIP udp {:?} tcp {:?} MSRP {}; SIMPLE side SIP udp {:?} \
             tcp {:?} MSRP {}; metrics http://{}/metrics",
            env!("CARGO_PKG_VERSION"),
            l.cpm_udp,
            l.cpm_tcp,
            l.cpm_msrp,
            l.simple_udp,
            l.simple_tcp,
            l.simple_msrp,
            l.admin
        );
        tracing::info!("serving");
        stop.wait().await;
        tracing::info!("stopping");
        node.shutdown(std::time::Duration::from_secs(5)).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM (how service managers stop a daemon) or Ctrl-C (SIGINT), registered when made.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Registers both handlers now (tokio's `ctrl_c()` would only register when first polled).
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.term.is_none() && self.interrupt.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = recv(self.term) => {}
                _ = recv(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `cpm-iwf store stats|list`.
fn run_store(action: StoreAction) -> Result<String, String> {
    use cpm_iwf::store::{self, Location, Reader};
    let (config, limit) = match &action {
        StoreAction::Stats { config, limit } | StoreAction::List { config, limit, .. } => {
            (config.clone(), *limit)
        }
    };
    let config = match &config {
        Some(f) => Config::load(f).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let location = config
        .store
        .location
        .as_deref()
        .ok_or("store-and-forward is off in this configuration ([store] location = \"\")")?;
    let location = Location::parse(location).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let reader = Reader::open(&location).await.map_err(|e| e.to_string())?;
        let now = store::unix_ms_now();
        match action {
            StoreAction::Stats { .. } => {
                let stats = reader.stats(limit).await.map_err(|e| e.to_string())?;
                Ok(store::format_stats(&stats, now))
            }
            StoreAction::List {
                user: Some(user), ..
            } => {
                let user = cpm_iwf::translate::addr::aor(&user);
                let list = reader
                    .pending(Bytes::from(user), 0, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(store::format_pending(&list, now))
            }
            StoreAction::List { user: None, .. } => {
                let users = reader
                    .users_with_pending(None, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(users
                    .iter()
                    .map(|u| format!("{}\n", String::from_utf8_lossy(u)))
                    .collect())
            }
        }
    })
}

fn load_config(file: Option<&std::path::Path>) -> Result<(Config, Mappings), String> {
    let config = match file {
        Some(f) => Config::load(f).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let mappings = match &config.mappings {
        // A relative mappings directory is relative to the configuration file.
        Some(dir) => {
            let base = file
                .and_then(|f| f.parent())
                .unwrap_or(std::path::Path::new("."));
            Mappings::load_dir(&base.join(dir))
        }
        None => Mappings::embedded(),
    }
    .map_err(|e| e.to_string())?;
    Ok((config, mappings))
}

/// Read a whole input file, or standard input for `-`, refusing more than
/// [`MAX_INSPECT_INPUT`] bytes.
fn read_input(input: &std::path::Path) -> Result<Bytes, String> {
    let mut buf = Vec::new();
    // Read one byte past the limit so that an over-long input is refused, not cut short.
    let read = if input.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_INSPECT_INPUT + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(input).and_then(|f| f.take(MAX_INSPECT_INPUT + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    if buf.len() as u64 > MAX_INSPECT_INPUT {
        return Err(format!(
            "{} is larger than {MAX_INSPECT_INPUT} bytes",
            input.display()
        ));
    }
    Ok(Bytes::from(buf))
}

fn run_inspect(format: Format, input: &std::path::Path) -> Result<String, String> {
    let value = inspect::inspect(format, read_input(input)?).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}

/// `cpm-iwf translate`: one message through the translator, with the table loaded from and
/// saved to `state`.
fn run_translate(
    from: Side,
    state: Option<&std::path::Path>,
    request: Option<&std::path::Path>,
    input: &std::path::Path,
) -> Result<String, String> {
    use cpm_iwf::correlate::{Millis, Table, TableLimits};
    use cpm_iwf::node::ids::{RandomIds, rfc3339_utc};
    use cpm_iwf::translate::state::{Change, Entry};
    use cpm_iwf::translate::{self, Env};
    use cpm_iwf::wire::sip::{Limits, SipMessage, parse_datagram};

    let parse_sip = |data: bytes::Bytes| -> Result<SipMessage, String> {
        parse_datagram(data.clone(), &Limits::default())
            .map_err(|e| inspect::InspectError::from_wire(&e, &data).to_string())
    };
    let data = read_input(input)?;
    let (config, mappings) = load_config(None)?;
    let addrs = config.addresses();
    let now = Millis(0);
    let table = Table::new(TableLimits::default());
    if let Some(path) = state.filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let entries: Vec<Entry> =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let inserts: Vec<Change> = entries.into_iter().map(Change::Insert).collect();
        table.apply(&inserts, now).map_err(|e| e.to_string())?;
    }
    let mut ids = RandomIds::new();
    let datetime = rfc3339_utc(std::time::SystemTime::now());
    let mut env = Env {
        now,
        ids: &mut ids,
        datetime: &datetime,
    };
    let view = table.view(now);
    let refused = |e: translate::TranslateError| format!("{e} (answer {})", e.status());
    let mut out = String::new();
    let changes = if data.starts_with(b"MSRP ") {
        let msg = cpm_iwf::wire::msrp::parse(data.clone(), &Default::default())
            .map_err(|e| inspect::InspectError::from_wire(&e, &data).to_string())?;
        let (to, chat) = translate::chat::msrp_request(&msg, &view, &mappings, &addrs, &mut env)
            .map_err(refused)?;
        out.push_str(&format!("--> {to:?}\n"));
        out.push_str(&String::from_utf8_lossy(&chat.send.to_bytes()));
        out.push('\n');
        chat.changes
    } else {
        let msg = parse_sip(data)?;
        let outcome = if msg.is_request() {
            translate::sip_request(&msg, from, &view, &mappings, &addrs, &mut env)
        } else {
            let path = request.ok_or(
                "a response is translated with the request it answers: give it with --request",
            )?;
            let received = parse_sip(read_input(path)?)?;
            translate::session::session_response(
                &received,
                from.other(),
                &msg,
                &view,
                &mappings,
                &addrs,
                &mut env,
            )
        }
        .map_err(refused)?;
        if let Some(reply) = outcome.reply {
            out.push_str(&format!("<-- reply {} {}\n", reply.status, reply.reason));
        }
        for (side, m) in &outcome.send {
            out.push_str(&format!("--> {side:?}\n"));
            out.push_str(&String::from_utf8_lossy(&m.serialize()));
            out.push('\n');
        }
        outcome.changes.into_vec()
    };
    table.apply(&changes, now).map_err(|e| e.to_string())?;
    if let Some(path) = state {
        let json = serde_json::to_string_pretty(&table.entries(now)).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(out)
}
