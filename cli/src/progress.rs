//! A job's progress on standard error: on a terminal a live line
//! (indicatif) with the elapsed time, the latest step and a bar once the
//! job reports a percentage; otherwise one plain line per step, which is
//! what scripts and logs want.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::time::Duration;

/// The line of one running job.
pub struct JobProgress {
    job: String,
    bar: Option<ProgressBar>,
    percent_shown: bool,
}

const SPINNER: &str = "{spinner} {prefix} [{elapsed}] {wide_msg}";
const WITH_BAR: &str = "{spinner} {prefix} [{elapsed}] {bar:24} {pos:>3} % {wide_msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A step as people read it: the topic and, when it has one, the pool or
/// volume it is about.
pub fn step_text(progress: &Value) -> String {
    let topic = progress["topic"].as_str().unwrap_or("?");
    let data = &progress["data"];
    let what = ["pool", "volume", "step"]
        .iter()
        .find_map(|k| data[*k].as_str())
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!("{topic}{what}")
}

/// The percentage a step carries (`data.percent`), if any.
pub fn percent(progress: &Value) -> Option<u64> {
    let p = progress["data"]["percent"].as_f64()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(p.clamp(0.0, 100.0) as u64)
}

impl JobProgress {
    /// Shows that `method` started as job `job`.
    pub fn start(job: &str, method: &str) -> JobProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(style(SPINNER));
            b.set_prefix(format!("{method} (job {job})"));
            b.set_message("started");
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if bar.is_none() {
            eprintln!("job {job}: {method} started");
        }
        JobProgress {
            job: job.to_string(),
            bar,
            percent_shown: false,
        }
    }

    /// Shows a new step of the job (`progress` as `job.wait` reports it).
    pub fn step(&mut self, progress: &Value) {
        let Some(b) = &self.bar else {
            eprintln!(
                "job {}: {} {}",
                self.job,
                progress["topic"].as_str().unwrap_or("?"),
                progress["data"]
            );
            return;
        };
        if let Some(p) = percent(progress) {
            if !self.percent_shown {
                b.set_style(style(WITH_BAR));
                b.set_length(100);
                self.percent_shown = true;
            }
            b.set_position(p);
        }
        b.set_message(step_text(progress));
    }

    /// Ends the line: the job's outcome stays on the screen.
    pub fn finish(&self, outcome: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(outcome.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_read_as_topic_and_object_with_their_percentage() {
        let p = json!({"topic": "pool.progress", "data": {"pool": "p1", "percent": 42.7}});
        assert_eq!(step_text(&p), "pool.progress p1");
        assert_eq!(percent(&p), Some(42));
        let p = json!({"topic": "pool.created", "data": {"controller": "A"}});
        assert_eq!(step_text(&p), "pool.created");
        assert_eq!(percent(&p), None);
        assert_eq!(percent(&json!({"data": {"percent": 250}})), Some(100));
    }
}
