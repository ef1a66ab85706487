//! `imagestreams ref parse`: Docker's reference normalization on the command line.

use std::process::ExitCode;

use imagestreams_common::reference::ParseReport;

use crate::cli::{RefCommand, RefOutput};

/// Runs a `ref` verb: exit 0 when the reference is valid, 1 when not.
pub fn run(cmd: RefCommand) -> ExitCode {
    let RefCommand::Parse { reference, output } = cmd;
    let report = ParseReport::of(&reference);
    match output {
        RefOutput::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        RefOutput::Text => {
            let fields = [
                ("name", &report.name),
                ("domain", &report.domain),
                ("path", &report.path),
                ("tag", &report.tag),
                ("digest", &report.digest),
                ("familiar", &report.familiar),
            ];
            if let Some(error) = &report.error {
                eprintln!("error: {error}");
            }
            for (key, value) in fields {
                if let Some(value) = value {
                    println!("{key}: {value}");
                }
            }
        }
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
