//! One module per subcommand.

pub mod apply;
pub mod demo;
mod desired;
pub mod diff;
pub mod lint;
pub mod plan;
pub mod proxy;
pub mod status;
pub mod submit;
pub mod window;
