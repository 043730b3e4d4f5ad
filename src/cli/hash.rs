//! `auth-service hash calibrate`: find the argon2 memory cost that hits a target hash time
//! on this machine.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::config::Layers;

#[derive(Subcommand)]
pub enum HashCommand {
    /// Report Argon2id parameters whose hash time is closest to the target on this machine.
    Calibrate {
        /// Target time of one hash, e.g. 50ms.
        #[arg(long, default_value = "50ms", value_parser = crate::config::parse_duration)]
        target: Duration,
        /// Time cost (iterations) to keep fixed while memory is searched.
        #[arg(long, default_value_t = 2)]
        iterations: u32,
    },
}

fn time_one(memory_kib: u32, iterations: u32) -> anyhow::Result<Duration> {
    let params = argon2::Params::new(memory_kib, iterations, 1, None).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        crate::passwords::hash_with(&params, "calibration password")?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

pub fn run(_layers: &Layers, cmd: HashCommand) -> anyhow::Result<ExitCode> {
    let HashCommand::Calibrate { target, iterations } = cmd;
    let owasp_min = 19_456u32;
    let mut memory = 8_192u32;
    let mut last = (memory, time_one(memory, iterations)?);
    println!("{:>12} {:>10} {:>12}", "memory_kib", "t_cost", "hash_ms");
    println!("{:>12} {:>10} {:>12.2}", last.0, iterations, last.1.as_secs_f64() * 1e3);
    while last.1 < target && memory < 4 * 1024 * 1024 {
        memory *= 2;
        last = (memory, time_one(memory, iterations)?);
        println!("{:>12} {:>10} {:>12.2}", last.0, iterations, last.1.as_secs_f64() * 1e3);
    }
    // Interpolate linearly between the last two points: hash time grows with memory.
    let per_kib = last.1.as_secs_f64() / f64::from(last.0);
    let suggested = ((target.as_secs_f64() / per_kib) as u32).max(owasp_min);
    let check = time_one(suggested, iterations)?;
    println!();
    println!("suggested: ARGON2_MEMORY_KIB={suggested} ARGON2_ITERATIONS={iterations} ARGON2_PARALLELISM=1");
    println!(
        "measured: {:.2} ms per hash (target {:.0} ms; OWASP minimum is m=19456 t=2 p=1)",
        check.as_secs_f64() * 1e3,
        target.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}
