//! The browser keychain page and QR transfer: `web` and `qr`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::{CliError, CliResult, interactive};

pub fn cmd_web(port: Option<u16>, state_dir: &std::path::Path) -> CliResult {
    let port = port.unwrap_or_else(credshift::web::default_port);
    // Exit 2: another process on the port is a refusal, not a failure.
    let listeners = credshift::web::bind(port).map_err(|e| match e {
        credshift::web::BindError::Taken { .. } => CliError::usage(e.to_string()),
        _ => CliError::failed(e.to_string()),
    })?;
    let url = credshift::web::url(&listeners).map_err(|e| CliError::failed(e.to_string()))?;
    let state = credshift::web::WebState {
        dir: credshift::web::state_dir(state_dir),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| CliError::failed(format!("cannot watch for Ctrl-C: {e}")))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{url}")
            .and_then(|_| out.flush())
            .map_err(CliError::stdout)?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!(
            "serving the browser keychain page on the loopback addresses only (127.0.0.1 and \
             [::1]); open the URL above, always the same for you; Ctrl-C stops it"
        );
    }
    credshift::web::serve(listeners, state, stop)
        .map_err(|e| CliError::failed(format!("serving: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_qr_draw(bundle: &std::path::Path, png_dir: Option<&std::path::Path>) -> CliResult {
    let location = bundle.display().to_string();
    let bytes = std::fs::read(bundle)
        .map_err(|e| CliError::failed(credshift::error::StoreError::io(bundle, e).to_string()))?;
    // Only a sealed credshift bundle goes into a QR code, never a file of
    // clear text given by mistake.
    let env = credshift::crypto::envelope::Envelope::parse(&bytes, &location, true)?;
    credshift::qr::check_size(&bytes).map_err(|e| CliError::usage(format!("{location}: {e}")))?;
    // A photo of the codes is a copy of the bundle: a weak key derivation
    // is refused here even where reading it is allowed.
    let min = credshift::crypto::envelope::MIN_ITERATIONS;
    if let credshift::crypto::envelope::KdfParams::Pbkdf2 { iterations, .. } = env.params()
        && *iterations < min
    {
        return Err(CliError::usage(format!(
            "{location}: sealed with only {iterations} PBKDF2 iterations (fewer than {min}); \
             whoever sees the codes could try passphrases fast. Seal it again with credshift's \
             default first (credshift migrate --from bundle:OLD --to bundle:NEW)"
        )));
    }
    let parts = credshift::qr::split(&bytes);
    let total = parts.len();
    let id = credshift::qr::bundle_id(&bytes);
    if let Some(dir) = png_dir {
        credshift::fsutil::ensure_private_dir(dir)?;
    }
    let pause = interactive() && std::io::stdout().is_terminal() && total > 1;
    let mut out = std::io::stdout().lock();
    let io_err = CliError::stdout;
    for (i, text) in parts.iter().enumerate() {
        let code =
            credshift::qr::encode(text, i + 1).map_err(|e| CliError::failed(e.to_string()))?;
        if let Some(dir) = png_dir {
            let path = dir.join(credshift::qr::png_name(i + 1, total));
            credshift::fsutil::atomic_write(&path, &credshift::qr::to_png(&code))?;
        }
        writeln!(out, "credshift bundle {id}, part {} of {total}", i + 1).map_err(io_err)?;
        writeln!(out, "{}", credshift::qr::to_terminal(&code)).map_err(io_err)?;
        if pause && i + 1 < total {
            write!(out, "Enter for part {} of {total}... ", i + 2).map_err(io_err)?;
            out.flush().map_err(io_err)?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::failed(format!("reading stdin: {e}")))?;
        }
    }
    if let Some(dir) = png_dir {
        writeln!(out, "{total} PNG files in {}", dir.display()).map_err(io_err)?;
    }
    match env.params() {
        credshift::crypto::envelope::KdfParams::None => eprintln!(
            "warning: this bundle is sealed with a key file; the other device needs that key file too"
        ),
        credshift::crypto::envelope::KdfParams::Pbkdf2 { .. } => eprintln!(
            "warning: credshift cannot check this bundle's passphrase from the file; the codes \
             are only as safe as it is ({})",
            credshift::keys::PASSPHRASE_RULE
        ),
    }
    out.flush().map_err(io_err)?;
    Ok(ExitCode::SUCCESS)
}

/// Part texts from `--join` arguments: a text that starts with the part
/// marker is a part; anything else is a file holding one part per line.
fn qr_part_texts(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut texts = Vec::new();
    for (n, arg) in args.iter().enumerate() {
        if arg.trim_start().starts_with(credshift::qr::PREFIX) {
            texts.push((format!("argument {}", n + 1), arg.clone()));
            continue;
        }
        let path = std::path::Path::new(arg);
        let content = credshift::fsutil::read_text(path)?;
        let mut found = false;
        for (l, line) in content.lines().enumerate() {
            if !line.trim().is_empty() {
                texts.push((
                    format!("{} line {}", path.display(), l + 1),
                    line.to_string(),
                ));
                found = true;
            }
        }
        if !found {
            return Err(CliError::usage(format!(
                "{}: holds no QR part",
                path.display()
            )));
        }
    }
    Ok(texts)
}

pub fn cmd_qr_join(args: &[String], out: Option<&std::path::Path>) -> CliResult {
    let texts = qr_part_texts(args)?;
    let bundle = credshift::qr::join(texts.iter().map(|(o, t)| (o.clone(), t.as_str())))
        .map_err(|e| CliError::failed(e.to_string()))?;
    match out {
        Some(path) => {
            credshift::fsutil::atomic_write(path, &bundle)?;
            eprintln!(
                "rebuilt bundle {} ({} bytes) in {}",
                credshift::qr::bundle_id(&bundle),
                bundle.len(),
                path.display()
            );
        }
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(&bundle)
                .and_then(|_| so.flush())
                .map_err(CliError::stdout)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
