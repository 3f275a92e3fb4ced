//! One module per subcommand.

pub mod apply;
pub mod approve;
pub mod audit;
pub mod check;
pub mod demo;
mod desired;
pub mod dev_image;
pub mod diff;
pub mod keys;
pub mod lint;
pub mod plan;
pub mod policy;
pub mod proxy;
pub mod secrets;
pub mod status;
pub mod submit;
pub mod window;
