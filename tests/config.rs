//! Configuration layering: defaults < kefu.toml < KEFU_* environment < flags; invalid values
//! stop startup naming the key.

mod common;

fn effective(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = common::kefu();
    cmd.current_dir(dir).arg("config").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn value(toml_text: &str, section: &str, key: &str) -> toml::Value {
    let v: toml::Value = toml::from_str(toml_text).unwrap();
    v[section][key].clone()
}

#[test]
fn defaults_file_env_flags_in_that_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out, err) = effective(tmp.path(), &[], &[]);
    assert!(ok, "{err}");
    assert_eq!(value(&out, "server", "port").as_integer(), Some(8080));
    assert_eq!(value(&out, "embed", "max_queue").as_integer(), Some(512));

    std::fs::write(
        tmp.path().join("kefu.toml"),
        "[server]\nport = 9001\nhost = \"0.0.0.0\"\n[embed]\nmax_queue = 7\n[model]\npath = \"from-file\"\n",
    )
    .unwrap();
    let (ok, out, err) = effective(tmp.path(), &[], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        value(&out, "server", "port").as_integer(),
        Some(9001),
        "file beats defaults"
    );
    assert_eq!(value(&out, "server", "host").as_str(), Some("0.0.0.0"));
    assert_eq!(value(&out, "embed", "max_queue").as_integer(), Some(7));

    let env = [
        ("KEFU_SERVER__PORT", "9002"),
        ("KEFU_EMBED__CACHE_SIZE", "3"),
        ("KEFU_MODEL__PATH", "from-env"),
    ];
    let (ok, out, err) = effective(tmp.path(), &[], &env);
    assert!(ok, "{err}");
    assert_eq!(
        value(&out, "server", "port").as_integer(),
        Some(9002),
        "environment beats file"
    );
    assert_eq!(value(&out, "embed", "cache_size").as_integer(), Some(3));
    assert_eq!(
        value(&out, "embed", "max_queue").as_integer(),
        Some(7),
        "file value kept where env is silent"
    );
    assert_eq!(value(&out, "model", "path").as_str(), Some("from-env"));

    let (ok, out, err) = effective(tmp.path(), &["--model", "from-flag"], &env);
    assert!(ok, "{err}");
    assert_eq!(
        value(&out, "model", "path").as_str(),
        Some("from-flag"),
        "flag beats environment"
    );

    // An explicit --config file replaces ./kefu.toml.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, "[server]\nport = 9100\n").unwrap();
    let (ok, out, err) = effective(tmp.path(), &["--config", other.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert_eq!(value(&out, "server", "port").as_integer(), Some(9100));
    assert_eq!(value(&out, "embed", "max_queue").as_integer(), Some(512));
}

#[test]
fn invalid_config_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    // (kefu.toml, environment, the key the error must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("[server]\nport = \"eighty\"\n", &[], "server.port"),
        ("[embed]\nmax_queue = 0\n", &[], "embed.max_queue"),
        ("[embed]\nengine = \"onnx\"\n", &[], "embed.engine"),
        ("[server]\nprot = 1\n", &[], "prot"),
        (
            "",
            &[("KEFU_LIMITS__MAX_INPUTS", "lots")],
            "limits.max_inputs",
        ),
        (
            "",
            &[("KEFU_SERVER__HOST", "not an address")],
            "server.host",
        ),
    ];
    for (file, env, key) in cases {
        std::fs::write(tmp.path().join("kefu.toml"), file).unwrap();
        let (ok, _, err) = effective(tmp.path(), &[], env);
        assert!(!ok, "{file} {env:?} should be refused");
        assert!(
            err.contains(key),
            "error for {file:?} {env:?} names {key}: {err}"
        );
    }
    let (ok, _, err) = effective(tmp.path(), &["--config", "/nonexistent/kefu.toml"], &[]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn serve_refuses_invalid_config_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kefu.toml"),
        "[limits]\nmax_body_bytes = 10\n",
    )
    .unwrap();
    let out = common::kefu()
        .current_dir(tmp.path())
        .args(["serve", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_body_bytes"), "{err}");
}

#[test]
fn missing_non_default_model_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::kefu()
        .current_dir(tmp.path())
        .args(["serve", "--port", "0", "--model", "no-such-model"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-model") && err.contains("model.path"),
        "{err}"
    );
}

#[test]
fn documented_example_is_valid_and_matches_the_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/kefu.example.toml");
    let (ok, from_example, err) = effective(tmp.path(), &["--config", example], &[]);
    assert!(ok, "{err}");
    let (ok, defaults, err) = effective(tmp.path(), &[], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        from_example, defaults,
        "kefu.example.toml documents the defaults"
    );
}

/// `kefu serve` with `args` in `dir`: (succeeded, stderr). Every case here fails before the
/// server would need a model.
fn serve(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = common::kefu()
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_does_not_hide_a_bad_file_value() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("kefu.toml"), "[server]\nport = \"abc\"\n").unwrap();
    let (ok, err) = serve(tmp.path(), &["--port", "0"]);
    assert!(!ok, "a bad port in kefu.toml is refused even with --port");
    assert!(err.contains("server.port"), "{err}");
    let (ok, _, err) = effective(tmp.path(), &[], &[("KEFU_SERVER__PORT", "9000")]);
    assert!(
        !ok && err.contains("server.port"),
        "nor by the environment: {err}"
    );
}

#[test]
fn data_dir_must_be_a_writable_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data");
    std::fs::write(&file, "not a directory").unwrap();
    let (ok, err) = serve(
        tmp.path(),
        &["--port", "0", "--data-dir", file.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "server.data_dir {} is a file, not a directory",
            file.display()
        )),
        "{err}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root writes in a read-only directory anyway: nothing to refuse there.
        if std::fs::write(ro.join("probe"), "").is_ok() {
            eprintln!("skipping the read-only case: this user writes in read-only directories");
            return;
        }
        let (ok, err) = serve(
            tmp.path(),
            &["--port", "0", "--data-dir", ro.to_str().unwrap()],
        );
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ok);
        assert!(
            err.contains(&format!(
                "server.data_dir {} is not writable (",
                ro.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn matching_section_is_the_calibration_with_its_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kefu.toml"),
        "[matching]\nanswer_threshold = 0.9\n",
    )
    .unwrap();
    let (ok, out, err) = effective(tmp.path(), &[], &[]);
    assert!(ok, "{err}");
    let m: kefu::matcher::Calibration = toml::from_str::<toml::Value>(&out).unwrap()["matching"]
        .clone()
        .try_into()
        .unwrap();
    assert_eq!(
        m,
        kefu::matcher::Calibration {
            answer_threshold: 0.9,
            ..Default::default()
        }
    );
    std::fs::write(
        tmp.path().join("kefu.toml"),
        "[matching]\nanswer_weigth = 0.1\n",
    )
    .unwrap();
    let (ok, _, err) = effective(tmp.path(), &[], &[]);
    assert!(!ok && err.contains("answer_weigth"), "{err}");
}
