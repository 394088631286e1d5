//! The load generator's command line: bounded runs, and bad arguments
//! refused with a message naming the flag.

#[path = "../benches/args.rs"]
#[allow(dead_code)]
mod args;

use args::parse_args;

fn parse(line: &str) -> Result<args::Args, String> {
    parse_args(line.split_whitespace().map(String::from))
}

#[test]
fn a_run_is_bounded_by_the_seconds_and_requests_given() {
    let a = parse("--scenario inclusion --concurrency 8 --seconds 3 --requests 500").unwrap();
    assert_eq!(a.scenario, "inclusion");
    assert_eq!((a.concurrency, a.seconds, a.requests), (8, 3, 500));
    let d = parse("--bench").unwrap();
    assert_eq!(d.scenario, "append", "cargo bench's own flag is skipped");
    assert!(d.seconds > 0 && d.seconds < 3600, "bounded by default");
}

#[test]
fn bad_arguments_are_refused_naming_the_flag() {
    for (line, says) in [
        ("--scenario bogus", "--scenario \"bogus\": one of"),
        ("--requests x", "--requests \"x\" is not a number"),
        ("--concurrency -1", "--concurrency \"-1\" is not a number"),
        ("--seconds 0", "must be at least 1"),
        ("--batch 0", "must be at least 1"),
        ("--seconds", "--seconds needs a value"),
        ("--speed 9", "unknown flag --speed"),
        (
            "--token-file /nonexistent/token",
            "--token-file /nonexistent/token",
        ),
    ] {
        let err = parse(line)
            .err()
            .unwrap_or_else(|| panic!("{line:?} accepted"));
        assert!(err.contains(says), "{line:?}: {err}");
    }
}
