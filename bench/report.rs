//! The results: one markdown table for every part, printed and written to
//! `bench/results.md` with the machine and how to re-run.

use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A figure reported without a target.
    Info,
}

impl Verdict {
    pub fn of(met: bool) -> Self {
        if met {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**MISSED**",
            Verdict::Info => "",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub measure: String,
    pub result: String,
    pub target: String,
    pub verdict: Verdict,
}

/// One part of the benchmark: its rows and the notes that explain them.
#[derive(Clone, Debug)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Section {
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
            seconds: 0.0,
        }
    }

    /// A figure with a target.
    pub fn check(&mut self, measure: &str, result: String, target: &str, met: bool) {
        self.rows.push(Row {
            measure: measure.into(),
            result,
            target: target.into(),
            verdict: Verdict::of(met),
        });
    }

    /// A figure without a target.
    pub fn info(&mut self, measure: &str, result: String) {
        self.rows.push(Row {
            measure: measure.into(),
            result,
            target: String::new(),
            verdict: Verdict::Info,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// A part that could not finish: one missed row saying why.
    pub fn failed(title: &str, why: &str) -> Self {
        let mut s = Section::new(title);
        s.check(
            "part completed",
            format!("failed: {why}"),
            "completes",
            false,
        );
        s
    }

    pub fn missed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .count()
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The table of every part's rows.
pub fn table(sections: &[Section]) -> String {
    let mut t = String::from("| Part | Measure | Result: median (min–max) | Target | |\n");
    t += "| --- | --- | --- | --- | --- |\n";
    for s in sections {
        for (i, r) in s.rows.iter().enumerate() {
            let part = if i == 0 { s.title.as_str() } else { "" };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} |",
                cell(part),
                cell(&r.measure),
                cell(&r.result),
                cell(&r.target),
                r.verdict.mark()
            );
        }
    }
    t
}

/// Where the figures come from, for the head of results.md.
pub struct Context {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub nginx: String,
    pub pinned: bool,
    pub load_before: String,
    pub load_after: String,
    pub seconds: f64,
    pub quick: bool,
}

pub fn results_md(ctx: &Context, sections: &[Section]) -> String {
    let mut md = String::from("# authban benchmark results\n\n");
    md += "Written by `make bench` (`bench/main.rs`); see [README.md](README.md) for what \
           each part measures and how.\n\n";
    if ctx.quick {
        md += "**Quick run (`AUTHBAN_BENCH_QUICK=1`): too short to be meaningful.**\n\n";
    }
    let _ = writeln!(md, "- Date: {}", ctx.date);
    let _ = writeln!(
        md,
        "- Machine: {}, {} cores, Linux {}",
        ctx.cpu, ctx.cores, ctx.kernel
    );
    let _ = writeln!(
        md,
        "- nginx: {} (the same binary, `build/sbin/nginx`, for every side)",
        ctx.nginx
    );
    let pinning = if ctx.pinned {
        "nginx worker on CPU 0 (`worker_cpu_affinity`), wrk on CPU 1 (`taskset`)"
    } else {
        "none (fewer than 2 cores or no taskset)"
    };
    let _ = writeln!(md, "- Pinning: {pinning}");
    let _ = writeln!(
        md,
        "- Load average (1 min) before / after: {} / {}",
        ctx.load_before, ctx.load_after
    );
    let _ = writeln!(md, "- Duration: {:.0} s", ctx.seconds);
    md += "\nTo re-run: `make bench` (builds first; needs root or the packages \
           `wrk valgrind util-linux redis-server`), or, with the build in place, \
           `cargo bench --bench authban`. One part only: \
           `cargo bench --bench authban -- request_path` (also `density`, `flood`, \
           `banned`, `time_to_ban`, `fleet`, `crowdsec`, `accounts`).\n\n";
    md += &table(sections);
    for s in sections {
        if s.notes.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n## {} ({:.0} s)\n", s.title, s.seconds);
        for n in &s.notes {
            let _ = writeln!(md, "{n}\n");
        }
    }
    md
}
