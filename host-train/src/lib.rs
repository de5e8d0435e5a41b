//! mlff host library.
