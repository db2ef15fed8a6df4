//! The shipped policy case file passes with the shipped policies, covers every default rule,
//! and a failing case is reported with its file and line and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::Command;

use proctor::policy::Policy;
use proctor::policy::cases;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn shipped_cases_pass_and_cover_every_default_rule() {
    let policy = Policy::load(&[root().join("policies")]).expect("default policies load");
    let report =
        cases::run(&policy, &root().join("policies/tests/cases.toml")).expect("case file parses");
    assert!(report.ok(), "{}", report.render());
    assert!(report.cases >= 80, "only {} cases", report.cases);
    assert!(
        report.unexercised.is_empty(),
        "rules without a case: {:?}",
        report.unexercised
    );
}

#[test]
fn failures_name_file_and_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nstatement = \"SELECT 1\"\nexpect = \"allow\"\n\n[[case]]\nname = \"wrong on purpose\"\nstatement = \"DROP TABLE t\"\nprivilege = \"elevated\"\nexpect = \"allow\"\n\n[[case]]\nexec = \"uname\"\nexpect = \"maybe\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["policy", "test"])
        .arg(root().join("policies"))
        .arg(&cases)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cases.toml:5: wrong on purpose: expected allow, got hold (rule pg-hold-ddl"),
        "{text}"
    );
    assert!(
        text.contains("cases.toml:11: uname: expect: \"maybe\""),
        "{text}"
    );
    assert!(
        text.contains("FAILED: 3 cases, 1 passed, 2 failed"),
        "{text}"
    );
    let ok = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["policy", "test"])
        .arg(root().join("policies"))
        .arg(root().join("policies/tests/cases.toml"))
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn redaction_rules_in_policy_files_are_checked_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("40-bad.toml");
    std::fs::write(
        &f,
        "[[rule]]\nname = \"r\"\naction = \"allow\"\n\n[[redact]]\nname = \"bad\"\npattern = '('\n",
    )
    .unwrap();
    let err = Policy::load(&[f]).unwrap_err().to_string();
    assert!(err.contains("40-bad.toml:5: [[redact]] pattern"), "{err}");
    let p = Policy::load(&[root().join("policies")]).unwrap();
    assert!(p.redact.iter().any(|r| r.name == "cards-sealed"));
}
