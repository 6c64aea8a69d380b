//! `credshift qr`: a bundle as numbered QR codes (terminal and PNG) and
//! `qr --join` back to the same bytes. The PNGs are read with a QR decoder
//! (rqrr), as a phone would scan them.

use crate::support;

use std::path::{Path, PathBuf};

use credshift::credential::{Credential, CredentialId, Kind, Secret};
use credshift::crypto::envelope::{KeySource, seal_credentials};
use support::{credshift, run};

/// A real bundle with `n` credentials (a few kilobytes: several parts).
fn bundle(dir: &Path, name: &str, n: usize) -> PathBuf {
    let creds: Vec<Credential> = (0..n)
        .map(|i| {
            Credential::new(
                CredentialId::new(format!("account:acc_{i}"), "api_key"),
                Kind::ApiKey,
                format!("sk-ant-api03-{i:04}-{}", "x".repeat(90)),
            )
        })
        .collect();
    let bytes = seal_credentials(
        &creds,
        &KeySource::Passphrase(Secret::new("qr test passphrase")),
        100_000,
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Decode one PNG as a scanner would: pixels in, text out.
fn scan(png_path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "{}: one code per image", png_path.display());
    grids[0].decode().unwrap().1
}

fn draw(dir: &Path, bundle: &Path, png_dir: &Path) -> (String, Vec<String>) {
    let (o, stdout, stderr) = run(credshift(&dir.join("state"))
        .args(["qr", "--bundle"])
        .arg(bundle)
        .arg("--png")
        .arg(png_dir));
    assert!(o.status.success(), "{stderr}");
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(png_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pngs.sort();
    (stdout, pngs.iter().map(|p| scan(p)).collect())
}

fn join(dir: &Path, parts: &[&str], out: &Path) -> (bool, String) {
    let (o, _, stderr) = run(credshift(&dir.join("state"))
        .args(["qr", "--out"])
        .arg(out)
        .arg("--join")
        .args(parts));
    (o.status.success(), stderr)
}

#[test]
fn pngs_scan_back_to_the_bundle_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = bundle(d, "t.bundle", 12);
    let original = std::fs::read(&b).unwrap();
    let (stdout, texts) = draw(d, &b, &d.join("png"));
    let n = texts.len();
    assert!(n >= 5, "a {}-byte bundle in {n} parts", original.len());
    assert_eq!(n, original.len().div_ceil(credshift::qr::CHUNK));
    for i in 1..=n {
        assert!(
            stdout.contains(&format!("part {i} of {n}")),
            "part {i} not drawn"
        );
    }
    // Drawn for the terminal with half blocks, at most 80 columns.
    assert!(stdout.contains('▀') || stdout.contains('▄'));
    assert!(stdout.lines().all(|l| l.chars().count() <= 80));
    assert!(
        !stdout.contains("ciphertext"),
        "no raw bundle text on screen"
    );

    // Scanned in any order, as arguments.
    let mut shuffled: Vec<&str> = texts.iter().map(String::as_str).collect();
    shuffled.reverse();
    shuffled.swap(0, n / 2);
    let out = d.join("rebuilt.bundle");
    let (ok, stderr) = join(d, &shuffled, &out);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), original);
    assert_eq!(
        credshift::fsutil::mode_of(&out),
        Some(0o600),
        "written private"
    );

    // As files: one part per file, and several parts in one file.
    let first = d.join("first.txt");
    std::fs::write(&first, format!("{}\n", texts[0])).unwrap();
    let rest = d.join("rest.txt");
    std::fs::write(&rest, texts[1..].join("\n")).unwrap();
    let out2 = d.join("rebuilt2.bundle");
    let (ok, stderr) = join(d, &[rest.to_str().unwrap(), first.to_str().unwrap()], &out2);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&out2).unwrap(), original);

    // And the rebuilt bundle opens.
    let (o, stdout, stderr) = run(credshift(&d.join("state"))
        .args(["inventory", "--from"])
        .arg(format!("bundle:{}", out.display()))
        .args(["--passphrase-env", "P"])
        .env("P", "qr test passphrase"));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("(12 items)"), "{stdout}");
}

#[test]
fn join_refuses_missing_duplicated_and_foreign_parts_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours = bundle(d, "ours.bundle", 6);
    let theirs = bundle(d, "theirs.bundle", 6);
    let (_, a) = draw(d, &ours, &d.join("a"));
    let (_, b) = draw(d, &theirs, &d.join("b"));
    let n = a.len();
    assert!(n >= 3);
    let out = d.join("out.bundle");

    let missing: Vec<&str> = a
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, t)| t.as_str())
        .collect();
    let (ok, stderr) = join(d, &missing, &out);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("missing part 2 of {n}")),
        "{stderr}"
    );

    let mut dup: Vec<&str> = a.iter().map(String::as_str).collect();
    dup.push(a[2].as_str());
    let (ok, stderr) = join(d, &dup, &out);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("part 3/{n} is given twice")),
        "{stderr}"
    );

    let mut foreign: Vec<&str> = a.iter().map(String::as_str).collect();
    foreign[1] = b[1].as_str();
    let (ok, stderr) = join(d, &foreign, &out);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "part 2/{n} (argument 2) belongs to another bundle"
        )),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written on a refusal");
}

#[test]
fn qr_refuses_a_file_that_is_not_a_sealed_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = d.join("secrets.env");
    std::fs::write(
        &plain,
        "OPENAI_API_KEY=sk-proj-plaintext-never-in-a-qr-code\n",
    )
    .unwrap();
    let (o, stdout, stderr) = run(credshift(&d.join("state"))
        .args(["qr", "--bundle"])
        .arg(&plain)
        .arg("--png")
        .arg(d.join("png")));
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("secrets.env"), "{stderr}");
    assert!(!stderr.contains("plaintext-never") && !stdout.contains("plaintext-never"));
    assert!(stdout.is_empty());
    assert!(!d.join("png").exists());
}

#[test]
fn qr_needs_a_bundle_or_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _, stderr) = run(credshift(dir.path()).arg("qr"));
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let (o, _, _) = run(credshift(dir.path()).args(["qr", "--bundle", "x", "--join", "y"]));
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 23, points 3 and 4: `qr --bundle` refuses a bundle sealed with
/// fewer than 100,000 iterations and says it cannot check the passphrase;
/// `qr --join` refuses an absurd part count at once with a short message
/// (on 232bd74: `1/18446744073709551615` exhausted memory, `1/3000000`
/// printed a 25 MB error, a weak bundle was drawn without a word).
#[test]
fn qr_refuses_weak_bundles_and_absurd_part_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weak = d.join("weak.bundle");
    let creds = vec![Credential::new(
        CredentialId::new("openai", "api_key"),
        Kind::ApiKey,
        "sk-weak-0123456789abcdef",
    )];
    let sealed = seal_credentials(
        &creds,
        &KeySource::Passphrase(Secret::new("qr test passphrase")),
        99_999,
    )
    .unwrap();
    std::fs::write(&weak, sealed).unwrap();
    let (o, stdout, stderr) = run(credshift(&d.join("state"))
        .args(["qr", "--bundle"])
        .arg(&weak)
        .arg("--png")
        .arg(d.join("png")));
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("weak.bundle") && stderr.contains("99999 PBKDF2 iterations"),
        "{stderr}"
    );
    assert!(stdout.is_empty() && !d.join("png").exists());

    let good = bundle(d, "good.bundle", 1);
    let (o, _, stderr) = run(credshift(&d.join("state"))
        .args(["qr", "--bundle"])
        .arg(&good));
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot check this bundle's passphrase")
            && stderr.contains("at least 8 characters"),
        "{stderr}"
    );

    let out = d.join("out.bundle");
    for count in ["18446744073709551615", "3000000", "4097"] {
        let part = format!("CSQR1:0123456789ABCDEF:1/{count}:AAAA");
        let (o, _, stderr) = run(credshift(&d.join("state"))
            .args(["qr", "--out"])
            .arg(&out)
            .args(["--join", &part]));
        assert_eq!(o.status.code(), Some(1), "{count}: {stderr}");
        assert!(stderr.contains("at most 4096"), "{count}: {stderr}");
        assert!(
            stderr.len() < 2000,
            "{count}: a {}-byte message",
            stderr.len()
        );
    }
    let part = "CSQR1:0123456789ABCDEF:2/4096:AAAA";
    let (o, _, stderr) = run(credshift(&d.join("state"))
        .args(["qr", "--out"])
        .arg(&out)
        .args(["--join", part]));
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing parts 1, 3-4096 of 4096"),
        "{stderr}"
    );
    assert!(!out.exists());
}
