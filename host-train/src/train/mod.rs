//! Training: configuration ([`config`]), data and splits ([`data`]), the loss and its exact
//! gradient ([`grad`]), the optimiser ([`optim`]), the training loop ([`run`]) and evaluation
//! ([`eval`]).

pub mod config;
pub mod data;
pub mod eval;
pub mod grad;
pub mod optim;
pub mod run;
