//! `edgespec bench` end to end on a synthetic pair: a threads sweep with
//! repetitions produces every column, speculative runs equal target-only,
//! the order interleaves, and the JSON, Markdown and charts are written.

use std::process::Command;

use edgespec::synthetic::SyntheticSpec;

#[test]
fn a_threads_sweep_with_repetitions_reports_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        weight_scale: 3.0,
        ..SyntheticSpec::default()
    };
    let target = dir.path().join("target.gguf");
    let draft = dir.path().join("draft.gguf");
    spec.write(&target).unwrap();
    SyntheticSpec {
        seed: 2,
        n_layer: 1,
        ..spec
    }
    .write(&draft)
    .unwrap();
    let prompts = dir.path().join("set.txt");
    std::fs::write(&prompts, "hello world\nthe quick brown fox\n").unwrap();
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_edgespec"))
        .args(["bench", "-m"])
        .arg(&target)
        .arg("-d")
        .arg(&draft)
        .arg("-f")
        .arg(&prompts)
        .args([
            "-n",
            "12",
            "--reps",
            "2",
            "--modes",
            "target,model:2,lookup:2",
        ])
        .args(["--sweep", "threads=1,2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");

    let mut runs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("runs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The first line names the machine.
    let machine = runs.remove(0);
    assert_eq!(machine["machine"]["threads"], serde_json::json!([1, 2]));
    // 2 repetitions × 2 prompts × 3 modes × 2 thread counts.
    assert_eq!(runs.len(), 24);
    let column = |r: &serde_json::Value| {
        (
            r["mode"].as_str().unwrap().to_owned(),
            r["threads"].as_i64().unwrap(),
        )
    };
    // First repetition, first prompt: both target columns run first.
    assert_eq!(column(&runs[0]).0, "target");
    assert_eq!(column(&runs[1]).0, "target");
    assert_ne!(column(&runs[0]).1, column(&runs[1]).1);
    // Later repetitions rotate the order.
    let first_of = |rep: u64, prompt: u64| {
        runs.iter()
            .find(|r| r["rep"] == rep && r["prompt"] == prompt)
            .map(column)
            .unwrap()
    };
    assert_ne!(first_of(1, 0), first_of(1, 1));

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let summaries = report["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 6);
    for s in summaries {
        let (mode, threads) = (s["mode"].as_str().unwrap(), s["threads"].as_i64().unwrap());
        assert!(threads == 1 || threads == 2, "{s}");
        assert!(s["tok_s"]["median"].as_f64().unwrap() > 0.0, "{s}");
        // Greedy speculation is lossless: every run equals target-only.
        assert_eq!(
            s["identical"],
            serde_json::json!([4, 4]),
            "{mode} at {threads}: {s}"
        );
        if mode != "target" {
            assert!(s["alpha"].as_f64().is_some(), "{s}");
        }
    }
    assert_eq!(report["machine"]["threads"], serde_json::json!([1, 2]));
    let bandwidth = &report["roofline"]["bandwidth"];
    assert!(bandwidth["passes"].as_u64().unwrap() >= 10, "{bandwidth}");
    assert!(bandwidth["best"].as_f64().unwrap() >= bandwidth["median"].as_f64().unwrap());

    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        markdown.contains("| set | mode | threads | tok/s |"),
        "{markdown}"
    );
    assert!(markdown.contains("threads-tok_s-set.svg"), "{markdown}");
    assert!(out.join("threads-tok_s-set.svg").is_file());
    assert!(out.join("tok_s-set.svg").is_file());

    // A report rebuilt elsewhere from these runs names the machine they
    // were measured on, not the one rebuilding it.
    let runs_text = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let cpu = machine["machine"]["cpu"].as_str().unwrap();
    let moved = dir.path().join("measured-elsewhere.jsonl");
    std::fs::write(&moved, runs_text.replacen(cpu, "Board CPU rev 1", 1)).unwrap();
    let rebuilt = dir.path().join("rebuilt");
    let status = Command::new(env!("CARGO_BIN_EXE_edgespec"))
        .args(["bench", "--target"]) // the spelling of the last release still works
        .arg(&target)
        .arg("-d")
        .arg(&draft)
        .arg("--from-runs")
        .arg(&moved)
        .arg("--out")
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rebuilt.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["machine"]["cpu"], "Board CPU rev 1");
    assert_eq!(report["summaries"].as_array().unwrap().len(), 6);
    // The atomic writers leave nothing beside their files.
    for entry in std::fs::read_dir(&rebuilt)
        .unwrap()
        .chain(std::fs::read_dir(&out).unwrap())
    {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "{name:?} left behind"
        );
    }
}
