//! `slipway fmt [FILE...] [--check]`

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::Global;
use crate::error::Error;
use crate::source::{SourceFile, SourceMap};

#[derive(Args, Debug)]
pub(crate) struct FmtArgs {
    /// Files to format (default: the single `*.pipeline` here, or `slipway.pipeline`).
    /// `-` reads standard input and writes the result to standard output.
    files: Vec<PathBuf>,

    /// Change nothing; print a diff and exit 1 if any file is not formatted.
    #[arg(long)]
    check: bool,
}

enum Outcome {
    Unchanged,
    Changed,
    Invalid,
}

pub(crate) fn run(args: &FmtArgs, global: &Global) -> Result<(), Error> {
    let files = if args.files.is_empty() {
        vec![super::find_pipeline(None)?]
    } else {
        args.files.clone()
    };
    let mut invalid = false;
    let mut changed = false;
    for path in &files {
        match one(path, args.check, global)? {
            Outcome::Unchanged => {}
            Outcome::Changed => changed = true,
            Outcome::Invalid => invalid = true,
        }
    }
    if invalid {
        Err(Error::Invalid)
    } else if changed && args.check {
        Err(Error::Failed)
    } else {
        Ok(())
    }
}

fn one(path: &Path, check: bool, global: &Global) -> Result<Outcome, Error> {
    let stdin = path == Path::new("-");
    let text = if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| Error::Io {
                action: "read standard input".into(),
                source,
            })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            help: None,
            source,
        })?
    };
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let mut sources = SourceMap::default();
    let id = sources.add(SourceFile::new(path.to_path_buf(), name.clone(), text));
    let (ast, diags) = crate::syntax::parse_with(id, &sources.get(id).text, global.parse);
    if !diags.is_empty() {
        let out =
            crate::report::diagnostics::render(&diags, &sources, global.diagnostics, global.color);
        eprint!("{out}");
        return Ok(Outcome::Invalid);
    }
    let original = &sources.get(id).text;
    let formatted = crate::format::format(&ast, original);
    if stdin {
        super::write_stdout(&formatted)?;
        return Ok(if formatted == *original {
            Outcome::Unchanged
        } else {
            Outcome::Changed
        });
    }
    if formatted == *original {
        return Ok(Outcome::Unchanged);
    }
    if check {
        let diff = similar::TextDiff::from_lines(original.as_str(), formatted.as_str());
        let shown = diff
            .unified_diff()
            .context_radius(3)
            .header(&name, &format!("{name} (formatted)"))
            .to_string();
        eprintln!("would reformat {name}");
        super::write_stdout(&shown)?;
        return Ok(Outcome::Changed);
    }
    // Write beside the file and rename, so an interrupted write never leaves
    // half a pipeline.
    let tmp = path.with_extension("pipeline.fmt-tmp");
    std::fs::write(&tmp, &formatted)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                action: format!("write `{name}`"),
                source,
            }
        })?;
    eprintln!("formatted {name}");
    Ok(Outcome::Changed)
}
