//! The gateway as an operator runs it: the command line, `gatehouse demo`, SIGHUP reload,
//! resource limits, the shipped Prometheus files, and the shape of the code.

mod access_log;
mod architecture;
mod certs;
mod cli;
mod demo;
mod deploy;
mod env_overrides;
mod first_run;
mod limits;
mod prometheus;
mod readiness;
mod reload;
