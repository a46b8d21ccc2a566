//! `make bench`: authban's benchmarks against a real nginx, started with the
//! integration-test harness (`tests/common`). See bench/README.md.
//!
//! `cargo bench --bench authban [-- PART...]` runs every part (or the ones
//! named), prints one markdown table and writes it, with the machine and how
//! to re-run, to bench/results.md. `AUTHBAN_BENCH_QUICK=1` makes every run
//! short (for trying the bench itself; the figures then mean little) and
//! writes bench/tmp/results-quick.md instead.

#[path = "../tests/common/mod.rs"]
mod common;

mod accounts;
mod api;
mod banned;
mod callgrind;
mod crowdsec;
mod density;
mod fleet;
mod flood;
mod machine;
mod report;
mod request_path;
mod stats;
mod time_to_ban;
mod wrk;

use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitCode};
use std::time::Instant;

use report::{Context, Section};

/// Run lengths, full or quick.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub quick: bool,
}

impl Config {
    /// Rounds of alternating wrk runs per comparison.
    pub fn rounds(&self) -> usize {
        if self.quick {
            2
        } else {
            5
        }
    }

    /// Seconds of one wrk run.
    pub fn secs(&self, full: u64) -> u64 {
        if self.quick {
            1
        } else {
            full
        }
    }

    /// Callgrind: requests of the first run (warm-up), and how many more
    /// the second run sends (measured).
    pub fn callgrind_requests(&self) -> (u64, u64) {
        if self.quick {
            (200, 500)
        } else {
            (1000, 2000)
        }
    }

    /// Distinct addresses of the flood.
    pub fn flood_addresses(&self) -> u64 {
        if self.quick {
            100_000
        } else {
            1_000_000
        }
    }
}

/// A part: its name on the command line, its time limit, its body.
struct Part {
    name: &'static str,
    title: &'static str,
    limit_secs: u64,
    run: fn(&Config) -> Section,
}

const PARTS: [Part; 8] = [
    Part {
        name: "request_path",
        title: "1. Request path",
        limit_secs: 240,
        run: request_path::run,
    },
    Part {
        name: "density",
        title: "2. Density",
        limit_secs: 90,
        run: density::run,
    },
    Part {
        name: "flood",
        title: "3. Flood",
        limit_secs: 200,
        run: flood::run,
    },
    Part {
        name: "banned",
        title: "4. Banned traffic",
        limit_secs: 240,
        run: banned::run,
    },
    Part {
        name: "time_to_ban",
        title: "5. Time to ban",
        limit_secs: 90,
        run: time_to_ban::run,
    },
    Part {
        name: "fleet",
        title: "6. Fleet",
        limit_secs: 300,
        run: fleet::run,
    },
    Part {
        name: "crowdsec",
        title: "7. CrowdSec",
        limit_secs: 400,
        run: crowdsec::run,
    },
    Part {
        name: "accounts",
        title: "8. Accounts",
        limit_secs: 400,
        run: accounts::run,
    },
];

fn main() -> ExitCode {
    let started = Instant::now();
    let cfg = Config {
        quick: std::env::var_os("AUTHBAN_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0"),
    };
    // cargo bench passes `--bench`; other words name parts.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !PARTS.iter().any(|p| p.name == *w)) {
        let names: Vec<&str> = PARTS.iter().map(|p| p.name).collect();
        eprintln!("unknown part {bad:?}; parts: {}", names.join(" "));
        return ExitCode::FAILURE;
    }
    for tool in ["wrk", "valgrind", "callgrind_annotate"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            eprintln!("{tool} is missing: run `make bench`, which installs it");
            return ExitCode::FAILURE;
        }
    }
    let load_before = machine::loadavg();
    let mut sections = Vec::new();
    for part in PARTS
        .iter()
        .filter(|p| wanted.is_empty() || wanted.iter().any(|w| w == p.name))
    {
        eprintln!("bench: {} ...", part.title);
        let t = Instant::now();
        let run = part.run;
        let mut section = match panic::catch_unwind(AssertUnwindSafe(|| {
            common::with_timeout(part.limit_secs, move || run(&cfg))
        })) {
            Ok(section) => section,
            Err(payload) => {
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                Section::failed(part.title, &why)
            }
        };
        section.seconds = t.elapsed().as_secs_f64();
        eprintln!("bench: {} done in {:.0} s", part.title, section.seconds);
        sections.push(section);
    }
    let ctx = Context {
        date: machine::date_utc(),
        cpu: machine::cpu_model(),
        cores: machine::cores(),
        kernel: machine::kernel(),
        nginx: machine::nginx_version(),
        pinned: machine::can_pin(),
        load_before,
        load_after: machine::loadavg(),
        seconds: started.elapsed().as_secs_f64(),
        quick: cfg.quick,
    };
    let md = report::results_md(&ctx, &sections);
    let out = if cfg.quick || !wanted.is_empty() {
        machine::tmp_dir().join("results-partial.md")
    } else {
        machine::bench_file("results.md")
    };
    std::fs::write(&out, &md).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    println!("\n{}", report::table(&sections));
    println!("Written to {} ({:.0} s).", out.display(), ctx.seconds);
    let missed: usize = sections.iter().map(Section::missed).sum();
    if missed > 0 {
        println!(
            "{missed} target(s) missed: see the notes in {}.",
            out.display()
        );
    }
    // A missed target is a result, not a failure of the bench; a part that
    // could not run is.
    if sections
        .iter()
        .any(|s| s.rows.iter().any(|r| r.measure == "part completed"))
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
