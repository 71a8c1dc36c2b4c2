//! `actionhost plugin new NAME --lang rust|python|js` and
//! `actionhost plugin build`: a working plugin skeleton per language, and one
//! build command that installs the language's pinned tools in the plugin's
//! folder and writes `dist/NAME.wasm`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use super::CliError;

/// The languages a skeleton can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built by cargo for wasm32-wasip2.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with ComponentizeJS.
    Js,
}

/// The newest contract, written into every skeleton's `wit/` folder.
const WIT: &[(&str, &str)] = &[
    (
        "executor.wit",
        include_str!("../../../wit/since_v0.1.3/executor.wit"),
    ),
    (
        "deps/cli.wit",
        include_str!("../../../wit/since_v0.1.3/deps/cli.wit"),
    ),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/since_v0.1.3/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/since_v0.1.3/deps/filesystem.wit"),
    ),
    (
        "deps/http.wit",
        include_str!("../../../wit/since_v0.1.3/deps/http.wit"),
    ),
    (
        "deps/io.wit",
        include_str!("../../../wit/since_v0.1.3/deps/io.wit"),
    ),
    (
        "deps/random.wit",
        include_str!("../../../wit/since_v0.1.3/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/since_v0.1.3/deps/sockets.wit"),
    ),
];

const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    (".gitignore", "/target\n/dist\n"),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt"),
    ),
    (".gitignore", "/.venv\n/dist\n__pycache__/\n"),
];

const JS: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../templates/js/package-lock.json"),
    ),
    ("build.mjs", include_str!("../../templates/js/build.mjs")),
    (
        "src/index.js",
        include_str!("../../templates/js/src/index.js"),
    ),
    (".gitignore", "/node_modules\n/dist\n"),
];

const CASES: &[(&str, &str)] = &[
    (
        "tests/basic.case.json",
        include_str!("../../templates/case.json"),
    ),
    (
        "tests/blank-name.case.json",
        include_str!("../../templates/case-blank.json"),
    ),
];

/// Writes a new plugin skeleton into `dir` (default: `./NAME`).
pub fn new_plugin(name: &str, lang: Lang, dir: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(CliError::Usage(format!(
            "plugin name {name:?} must be kebab-case: a lowercase letter, then lowercase letters, digits and -"
        )));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::Usage(format!(
            "{} already exists and is not empty; nothing was written",
            dir.display()
        )));
    }
    let snake = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &snake)
            .replace("{{action}}", &snake)
    };
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    let write = |relative: &str, text: &str| -> Result<(), CliError> {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| CliError::Failed(format!("creating {}: {err}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|err| CliError::Failed(format!("writing {}: {err}", path.display())))
    };
    for (relative, text) in files.iter().chain(CASES) {
        write(relative, &fill(text))?;
    }
    for (relative, text) in WIT {
        write(&format!("wit/{relative}"), text)?;
    }
    let lang_name = match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    };
    // `plugin build` names the component after the folder.
    let output = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name)
        .to_owned();
    println!(
        "wrote a {lang_name} plugin in {dir}\n\nnext:\n  cd {dir}\n  actionhost plugin build\n  actionhost plugin test dist/{output}.wasm --case tests/basic.case.json --case tests/blank-name.case.json",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Which toolchain builds the plugin in `dir`, from the files it has.
fn detect(dir: &Path) -> Result<Lang, CliError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Js)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else {
        Err(CliError::Usage(format!(
            "{} is not a plugin folder: it has no Cargo.toml (Rust), package.json (JavaScript) or app.py (Python); \
             `actionhost plugin new NAME --lang ...` writes one",
            dir.display()
        )))
    }
}

/// One build step: announced, timed, its tool's output shown as it comes.
fn step(what: &str, command: &mut Command) -> Result<(), CliError> {
    println!("==> {what}");
    let started = Instant::now();
    let status = command.status().map_err(|err| {
        CliError::Failed(format!(
            "{what}: cannot run {:?}: {err}",
            command.get_program()
        ))
    })?;
    if !status.success() {
        return Err(CliError::Failed(format!("{what} failed ({status})")));
    }
    println!("    done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds the plugin in `dir` into `dir/dist/NAME.wasm`, NAME being the
/// folder's name.
pub fn build(dir: &Path) -> Result<ExitCode, CliError> {
    let dir = dir
        .canonicalize()
        .map_err(|err| CliError::Usage(format!("{}: {err}", dir.display())))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::Usage(format!("{} has no usable folder name", dir.display())))?
        .to_owned();
    let output = dir.join("dist").join(format!("{name}.wasm"));
    std::fs::create_dir_all(dir.join("dist"))
        .map_err(|err| CliError::Failed(format!("creating dist/: {err}")))?;
    let started = Instant::now();
    match detect(&dir)? {
        Lang::Rust => build_rust(&dir, &output)?,
        Lang::Python => build_python(&dir, &output)?,
        Lang::Js => build_js(&dir, &output)?,
    }
    let size = std::fs::metadata(&output)
        .map_err(|err| CliError::Failed(format!("the build wrote no {}: {err}", output.display())))?
        .len();
    println!(
        "built {} ({size} bytes) in {:.1} s",
        output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn build_rust(dir: &Path, output: &Path) -> Result<(), CliError> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        })
        .unwrap_or(true);
    if !installed {
        step(
            "installing the wasm32-wasip2 target",
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
        )?;
    }
    step(
        "cargo build --release --target wasm32-wasip2",
        Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(dir),
    )?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|err| CliError::Failed(format!("reading Cargo.toml: {err}")))?;
    // The `name` of the `[package]` table, as cargo names the library file.
    let mut section = "";
    let krate = manifest
        .lines()
        .find_map(|line| {
            let line = line.trim();
            if line.starts_with('[') {
                section = line;
                return None;
            }
            let (key, value) = line.split_once('=')?;
            (section == "[package]" && key.trim() == "name")
                .then(|| value.trim().trim_matches('"').replace('-', "_"))
        })
        .ok_or_else(|| CliError::Failed("Cargo.toml has no [package] name".into()))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let built = target.join(format!("wasm32-wasip2/release/{krate}.wasm"));
    std::fs::copy(&built, output)
        .map_err(|err| CliError::Failed(format!("copying {}: {err}", built.display())))?;
    Ok(())
}

fn build_python(dir: &Path, output: &Path) -> Result<(), CliError> {
    // An existing componentize-py (for instance a shared one in CI) wins;
    // otherwise the pinned one goes into the plugin's own .venv.
    let tool = match std::env::var_os("ACTIONHOST_COMPONENTIZE_PY") {
        Some(tool) => PathBuf::from(tool),
        None => {
            let venv = dir.join(".venv");
            let tool = venv.join("bin/componentize-py");
            let requirements = dir.join("requirements.txt");
            let stamp = venv.join(".requirements");
            let wanted = std::fs::read_to_string(&requirements).map_err(|err| {
                CliError::Failed(format!("reading {}: {err}", requirements.display()))
            })?;
            if !tool.is_file() || std::fs::read_to_string(&stamp).ok().as_ref() != Some(&wanted) {
                let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
                step(
                    "creating .venv",
                    Command::new(&python).args(["-m", "venv"]).arg(&venv),
                )?;
                step(
                    "installing requirements.txt into .venv",
                    Command::new(venv.join("bin/pip"))
                        .args(["install", "--disable-pip-version-check", "-r"])
                        .arg(&requirements),
                )?;
                std::fs::write(&stamp, wanted).map_err(|err| {
                    CliError::Failed(format!("writing {}: {err}", stamp.display()))
                })?;
            }
            tool
        }
    };
    step(
        "componentize-py (takes a few seconds)",
        Command::new(tool)
            .args(["-d", "wit", "-w", "executor", "componentize", "app", "-o"])
            .arg(output)
            .current_dir(dir),
    )
}

fn build_js(dir: &Path, output: &Path) -> Result<(), CliError> {
    let installed = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if !installed.is_file() || modified(&lock) > modified(&installed) {
        let verb = if lock.is_file() { "ci" } else { "install" };
        step(
            &format!("npm {verb} (the pinned ComponentizeJS)"),
            Command::new("npm")
                .args([verb, "--no-audit", "--no-fund"])
                .current_dir(dir),
        )?;
    }
    step(
        "componentize-js (takes a few seconds)",
        Command::new("node")
            .arg("build.mjs")
            .arg(output)
            .current_dir(dir),
    )
}
