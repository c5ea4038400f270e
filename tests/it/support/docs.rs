//! Code blocks read from the project's documents, so that tests run the examples as
//! the documents have them.

use std::path::Path;

/// The text of the first fenced block of `file` (relative to the crate) after
/// `heading` that opens with `opening` (its fence line, a newline, and optionally the
/// block's first characters): from the line after the fence to the closing fence.
pub fn block(file: &str, heading: &str, opening: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let section = &text[text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in {file}"))..];
    let fence = opening
        .find('\n')
        .expect("the opening holds its fence line")
        + 1;
    let start = section
        .find(opening)
        .unwrap_or_else(|| panic!("no block opening {opening:?} after {heading} in {file}"))
        + fence;
    let len = section[start..]
        .find("\n```")
        .expect("the end of the block");
    section[start..start + len].to_string()
}
