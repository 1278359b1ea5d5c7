//! The `cpm-iwf` command.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};

use cpm_iwf::inspect::{self, Format};

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
    /// Start the gateway (the node is not built yet: prints its version and exits).
    Run,
    /// Parse one message and print it as JSON.
    Inspect {
        /// The format of the input.
        #[arg(value_enum)]
        format: Format,
        /// The file to read, or `-` for standard input.
        input: PathBuf,
    },
}

/// Largest input `inspect` reads: well above every codec limit, so that the codec, not the
/// reader, reports an over-long message.
const MAX_INSPECT_INPUT: u64 = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => {
            println!(
                "cpm-iwf {}: the node is not built yet; `cpm-iwf inspect` parses messages",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Command::Inspect { format, input } => match run_inspect(format, &input) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_inspect(format: Format, input: &std::path::Path) -> Result<String, String> {
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
    let value = inspect::inspect(format, Bytes::from(buf)).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}
