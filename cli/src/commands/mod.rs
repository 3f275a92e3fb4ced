//! One module per subcommand.

pub mod demo;
mod desired;
pub mod diff;
pub mod lint;
pub mod plan;
