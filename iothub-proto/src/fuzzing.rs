//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus
//! replay test. Not a public API.
