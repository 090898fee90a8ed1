//! Knowledge base storage and `kefu kb import/export`.

mod common;

use kefu::kb::import::{self, Format};
use kefu::kb::{FaqEntry, KbStore};

fn entry(id: &str, question: &str, category: &str) -> FaqEntry {
    serde_json::from_value(serde_json::json!({
        "id": id, "question": question, "answer": format!("answer to {question}"), "category": category
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_revisions_and_persistence() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KbStore::open(tmp.path()).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), 0);
    let s = store
        .upsert_all(&[
            entry("r-1", "退款多久到账", "refunds"),
            entry("s-1", "多久发货", "shipping"),
        ])
        .await
        .unwrap();
    assert_eq!((s.created, s.updated, s.revision), (2, 0, 1));
    let mut changed = entry("r-1", "退款多久能到账", "refunds");
    changed.similar = vec!["钱什么时候退".into()];
    let s = store.upsert_all(&[changed.clone()]).await.unwrap();
    assert_eq!((s.created, s.updated, s.revision), (0, 1, 2));
    let got = store.get("r-1").await.unwrap().unwrap();
    assert_eq!(got.entry, changed);
    assert!(got.updated_at >= got.created_at);
    let (refunds, total) = store.list(0, 10, Some("refunds"), None).await.unwrap();
    assert_eq!((refunds.len(), total), (1, 1));
    let (page, total) = store.list(1, 10, None, None).await.unwrap();
    assert_eq!(page[0].entry.id, "s-1", "ordered by id, offset");
    assert_eq!(total, 2, "the total counts every entry, not the page");
    // Search: in ids, questions (similar ones too) and answers; LIKE's wildcards are literal.
    let ids = |(v, n): (Vec<kefu::kb::StoredEntry>, i64)| {
        (v.into_iter().map(|e| e.entry.id).collect::<Vec<_>>(), n)
    };
    let q = |q: &'static str| store.list(0, 10, None, Some(q));
    assert_eq!(ids(q("钱什么时候").await.unwrap()), (vec!["r-1".into()], 1));
    assert_eq!(ids(q("s-1").await.unwrap()), (vec!["s-1".into()], 1));
    assert_eq!(
        ids(q("%").await.unwrap()).1,
        2,
        "a bare wildcard is no filter"
    );
    assert_eq!(ids(q("没有这个").await.unwrap()), (vec![], 0));
    assert_eq!(
        ids(store
            .list(0, 10, Some("shipping"), Some("退款"))
            .await
            .unwrap()),
        (vec![], 0),
        "category and text together"
    );
    assert!(store.delete("s-1").await.unwrap());
    assert!(
        !store.delete("s-1").await.unwrap(),
        "deleting twice reports the entry is gone"
    );
    assert!(store.get("s-1").await.unwrap().is_none());
    assert_eq!(store.revision().await.unwrap(), 3);
    drop(store);
    let reopened = KbStore::open(tmp.path()).await.unwrap();
    assert_eq!(reopened.count().await.unwrap(), 1);
    assert_eq!(reopened.get("r-1").await.unwrap().unwrap().entry, changed);
}

fn kb(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::kefu()
        .arg("kb")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn import_is_all_or_nothing_and_names_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let good = tmp.path().join("good.jsonl");
    std::fs::write(
        &good,
        import::write(Format::Jsonl, &[entry("a-1", "怎么退货", "returns")]),
    )
    .unwrap();
    let out = kb(&data, &["import", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"b-1\", \"question\": \"q\", \"answer\": \"a\"}\n{\"id\": \"b-2\", \"question\": \"\", \"answer\": \"a\"}\n{\"id\": \"b-3\", \"question\": \"q\"}\n",
    )
    .unwrap();
    let newer = tmp.path().join("newer.csv");
    std::fs::write(&newer, "id,question,answer\na-1,怎么退货呢,changed\n").unwrap();
    let out = kb(
        &data,
        &["import", newer.to_str().unwrap(), bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:line 2: question: is empty"),
        "{err}"
    );
    assert!(
        err.contains("bad.jsonl:line 3") && err.contains("answer"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");

    let out = kb(&data, &["export"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let entries = import::parse(Format::Jsonl, &text, "kb").unwrap();
    assert_eq!(
        entries,
        [entry("a-1", "怎么退货", "returns")],
        "the valid file in the failed import was not applied"
    );
}

#[test]
fn demo_kb_round_trips_through_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/demo/faq.jsonl");
    let first = tmp.path().join("first");
    let out = kb(&first, &["import", demo]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("166 new"));
    let reference = String::from_utf8(kb(&first, &["export"]).stdout).unwrap();
    assert_eq!(reference.lines().count(), 166);
    for (fmt, ext) in [("csv", "csv"), ("md", "md"), ("jsonl", "jsonl")] {
        let file = tmp.path().join(format!("export.{ext}"));
        let out = kb(
            &first,
            &["export", "--format", fmt, "--out", file.to_str().unwrap()],
        );
        assert!(out.status.success());
        let second = tmp.path().join(format!("second-{fmt}"));
        let out = kb(&second, &["import", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{fmt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again = String::from_utf8(kb(&second, &["export"]).stdout).unwrap();
        // CSV and Markdown carry no per-channel answers or validity dates; the demo has none.
        assert_eq!(again, reference, "{fmt} round trip");
    }
}

#[test]
fn out_of_scope_examples_are_stored_printed_and_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("oos.jsonl");
    std::fs::write(
        &file,
        "{\"text\": \"明天北京天气怎么样\"}\n{\"query\": \"book me a flight to Paris\"}\n{\"text\": \"明天北京天气怎么样\"}\n",
    )
    .unwrap();
    let out = kb(&data, &["out-of-scope", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = kb(&data, &["out-of-scope"]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed, "{\"text\":\"明天北京天气怎么样\"}\n{\"text\":\"book me a flight to Paris\"}\n",
        "duplicates kept once, in order"
    );
    // What it prints reads back.
    let again = tmp.path().join("again.jsonl");
    std::fs::write(&again, &printed).unwrap();
    assert!(
        kb(&data, &["out-of-scope", again.to_str().unwrap()])
            .status
            .success()
    );

    // A bad line: refused with its line, the stored examples untouched.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let out = kb(&data, &["out-of-scope", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    let out = kb(&data, &["out-of-scope"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);

    assert!(kb(&data, &["out-of-scope", "--clear"]).status.success());
    let out = kb(&data, &["out-of-scope"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn reading_commands_refuse_a_data_directory_without_kefu_data() {
    let tmp = tempfile::tempdir().unwrap();
    // A mistyped --data-dir (missing) and an empty directory: neither holds a KB.
    let missing = tmp.path().join("dta");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let readers: [&[&str]; 5] = [
        &["kb", "export"],
        &["kb", "calibrate"],
        &["kb", "out-of-scope"],
        &["model", "active"],
        &["match", "退款多久到账"],
    ];
    for dir in [&missing, &empty] {
        for args in readers {
            let out = common::kefu()
                .args(args)
                .arg("--data-dir")
                .arg(dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {}: {err}", dir.display());
            assert!(
                err.contains(&format!(
                    "{} holds no kefu data (no kb.sqlite)",
                    dir.display()
                )) && err.contains("kefu kb import"),
                "{args:?}: {err}"
            );
        }
    }
    assert!(!missing.exists(), "nothing was created");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // Commands that write a KB still create the directory, and the readers then find it.
    let file = tmp.path().join("faq.jsonl");
    std::fs::write(
        &file,
        import::write(Format::Jsonl, &[entry("a-1", "怎么退货", "returns")]),
    )
    .unwrap();
    assert!(
        kb(&missing, &["import", file.to_str().unwrap()])
            .status
            .success()
    );
    let out = kb(&missing, &["export"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("a-1"));
    let out = common::kefu()
        .args(["model", "active", "--data-dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no model activated"),
        "{out:?}"
    );
}
