//! The load generator's command line (`loadgen.rs`), apart so that
//! `tests/loadgen_args.rs` can check what it refuses.

pub struct Args {
    pub url: String,
    pub token: String,
    pub scenario: String,
    pub batch: usize,
    pub concurrency: usize,
    pub seconds: u64,
    pub requests: u64,
    pub events: u64,
    pub data: Option<String>,
    pub server_pid: Option<u32>,
}

/// The scenarios `main` knows.
pub const SCENARIOS: [&str; 9] = [
    "append",
    "noop",
    "inclusion",
    "leaf",
    "tiles",
    "read-floor",
    "risk",
    "query",
    "fill",
];

/// The command line, or what is wrong with it (naming the flag).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        token: String::new(),
        scenario: "append".into(),
        batch: 1,
        concurrency: 64,
        seconds: 20,
        requests: u64::MAX,
        events: 1_000_000,
        data: None,
        server_pid: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // cargo bench passes this
        }
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag} {v:?} is not a number"))
        }
        match flag.as_str() {
            "--url" => a.url = val,
            "--token" => a.token = val,
            "--token-file" => {
                a.token = std::fs::read_to_string(&val)
                    .map_err(|e| format!("--token-file {val}: {e}"))?
                    .trim()
                    .to_string()
            }
            "--scenario" => a.scenario = val,
            "--batch" => a.batch = number(&flag, &val)?,
            "--concurrency" => a.concurrency = number(&flag, &val)?,
            "--seconds" => a.seconds = number(&flag, &val)?,
            "--requests" => a.requests = number(&flag, &val)?,
            "--events" => a.events = number(&flag, &val)?,
            "--data" => a.data = Some(val),
            "--server-pid" => a.server_pid = Some(number(&flag, &val)?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !SCENARIOS.contains(&a.scenario.as_str()) {
        return Err(format!("--scenario {:?}: one of {SCENARIOS:?}", a.scenario));
    }
    if a.batch == 0 || a.concurrency == 0 || a.seconds == 0 || a.requests == 0 || a.events == 0 {
        return Err(
            "--batch, --concurrency, --seconds, --requests and --events must be at least 1".into(),
        );
    }
    Ok(a)
}
