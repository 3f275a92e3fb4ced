//! The PostgreSQL wire proxy: pass-through, dual-read drift detection, and the pause that
//! holds traffic at transaction boundaries for the instant of a cutover.
//!
//! Lands with its own issue; the crate exists so the dependency direction of the workspace
//! (planner <- proxy <- cli, never proxy <-> engine) holds from the first commit.
