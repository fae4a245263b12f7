//! The hand-written GLUE fixtures, materialised in the standard layout.
//!
//! They are stored as `tests/fixtures/glue/<TASK>/fixture-<split>.tsv` so that no file in the
//! repository looks like real GLUE data (`<TASK>/<split>.tsv`, which stays outside the repo);
//! [`glue_dir`] copies them once per test process into a temporary directory under the standard
//! names.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory with the fixtures in the GLUE layout (`<TASK>/<split>.tsv`).
pub fn glue_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glue");
        let dst = std::env::temp_dir().join(format!("opf-glue-fixtures-{}", std::process::id()));
        for task in std::fs::read_dir(&src).expect("fixture dir") {
            let task = task.expect("dir entry").path();
            let out = dst.join(task.file_name().expect("task dir name"));
            std::fs::create_dir_all(&out).expect("create fixture task dir");
            for file in std::fs::read_dir(&task).expect("task dir") {
                let file = file.expect("dir entry").path();
                let name = file.file_name().expect("file name").to_string_lossy();
                let name = name.strip_prefix("fixture-").expect("fixture- prefix");
                std::fs::copy(&file, out.join(name)).expect("copy fixture");
            }
        }
        dst
    })
}
