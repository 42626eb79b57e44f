#![allow(clippy::unwrap_used)]
//! The kill harness's short variant, as CI runs it: `opora-bench kill --kills 3` against
//! real PostgreSQL (DATABASE_URL, or the embedded cluster). The long variant is the same
//! command with `--kills 20` (README, «What Opora promises»).

use std::process::Command;

#[test]
fn three_sigkills_under_load_lose_nothing_acknowledged() {
    let out = Command::new(env!("CARGO_BIN_EXE_opora-bench"))
        .args(["kill", "--kills", "3", "--seed", "7"])
        .output()
        .expect("opora-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("no JSON line: {stdout}\n{stderr}"));
    assert!(out.status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["ours"], 3, "{report:#}");
    // The load really ran across the kills: each actor had calls acknowledged.
    for actor in ["signals", "case_facts", "weekly_filings"] {
        assert!(
            report["acknowledged"][actor].as_u64().unwrap_or(0) > 0,
            "no {actor} acknowledged: {report:#}"
        );
    }
    assert_eq!(report["missing_from_log"], 0);
    assert_eq!(report["chain"]["problems"], 0);
    // Every rebuildable projection was compared with its rebuild.
    let compared = report["projections_equal_to_rebuild"].as_array().unwrap();
    assert_eq!(compared.len(), 9, "{report:#}");
}
