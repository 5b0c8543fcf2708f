//! The jobs table (pure): methods the catalogue marks `job` run in the
//! background under an id, so no caller holds a connection open for a
//! pool creation or a failover. Jobs live in the memory of the router
//! that runs them, the newest [`KEEP`] of them; a router restart forgets
//! them (the methods' own results stay: the pool exists or not, the
//! timeline has the failover). The partner answers `job.get` for this
//! controller's jobs over the peer link, and says `failed` with the
//! reason when this controller does not answer.

use duplex_api::methods::job::{Job, JobState, Progress};
use duplex_services::rpc::RpcError;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// Jobs kept (running ones are never dropped; past this many running,
/// `job.start` is refused).
pub const KEEP: usize = 256;
/// The longest one `job.wait` call waits.
pub const MAX_WAIT_MS: u64 = 30_000;

/// This controller's jobs, oldest first.
#[derive(Debug, Default)]
pub struct Jobs {
    items: VecDeque<Job>,
}

/// A job id: `<controller>:<action_id>`.
pub fn job_id(controller: &str, action_id: &str) -> String {
    format!("{controller}:{action_id}")
}

/// The controller part of a job id, if it has one.
pub fn controller_of(job: &str) -> Option<&str> {
    job.split_once(':')
        .map(|(c, _)| c)
        .filter(|c| !c.is_empty())
}

impl Jobs {
    /// Records a started job; refused when [`KEEP`] jobs are running.
    pub fn start(
        &mut self,
        id: String,
        controller: &str,
        method: &str,
        caller: &str,
        now_ms: u64,
    ) -> Result<(), RpcError> {
        let running = self
            .items
            .iter()
            .filter(|j| j.state == JobState::Running)
            .count();
        if running >= KEEP {
            return Err(RpcError::unavailable(format!(
                "{running} jobs are running on this controller, the most it runs at once"
            )));
        }
        while self.items.len() >= KEEP {
            // The oldest finished job goes; running ones stay.
            match self.items.iter().position(|j| j.state != JobState::Running) {
                Some(i) => {
                    self.items.remove(i);
                }
                None => break,
            }
        }
        self.items.push_back(Job {
            job: id,
            controller: controller.to_string(),
            method: method.to_string(),
            caller: caller.to_string(),
            state: JobState::Running,
            started_ms: now_ms,
            ended_ms: None,
            progress: None,
            result: None,
            error: None,
        });
        Ok(())
    }

    /// Records the method's answer.
    pub fn finish(&mut self, id: &str, result: Result<Value, RpcError>, now_ms: u64) {
        if let Some(j) = self.items.iter_mut().find(|j| j.job == id) {
            j.ended_ms = Some(now_ms);
            match result {
                Ok(v) => {
                    j.state = JobState::Succeeded;
                    j.result = Some(v);
                }
                Err(e) => {
                    j.state = JobState::Failed;
                    j.error = Some(json!(e));
                }
            }
        }
    }

    /// Notes an event published under `action_id` as the progress of the
    /// running job of that action, if there is one.
    pub fn progress(
        &mut self,
        controller: &str,
        action_id: &str,
        topic: &str,
        data: &Value,
        now_ms: u64,
    ) {
        let id = job_id(controller, action_id);
        if let Some(j) = self
            .items
            .iter_mut()
            .find(|j| j.job == id && j.state == JobState::Running)
        {
            j.progress = Some(Progress {
                topic: topic.to_string(),
                data: data.clone(),
                time_ms: now_ms,
            });
        }
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<&Job> {
        self.items.iter().find(|j| j.job == id)
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<Job> {
        self.items.iter().rev().cloned().collect()
    }
}

/// What a controller answers for a job of a partner that does not
/// answer: failed, with the reason, since nobody can say it finished.
pub fn partner_gone(id: &str, partner: &str, why: &str) -> Job {
    Job {
        job: id.to_string(),
        controller: partner.to_string(),
        method: String::new(),
        caller: String::new(),
        state: JobState::Failed,
        started_ms: 0,
        ended_ms: None,
        progress: None,
        result: None,
        error: Some(json!(RpcError::unavailable(format!(
            "controller {partner}, which ran the job, does not answer ({why}); \
             its outcome is unknown: check the objects it changed"
        ))
        .with_data("reason", "controller_gone".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_services::rpc::ErrorCode;

    #[test]
    fn a_job_runs_reports_progress_and_ends() {
        let mut j = Jobs::default();
        let id = job_id("A", "act1");
        assert_eq!(controller_of(&id), Some("A"));
        assert_eq!(controller_of("nocolon"), None);
        j.start(id.clone(), "A", "pool.create", "client(pid=1)", 10)
            .unwrap();
        assert_eq!(j.get(&id).unwrap().state, JobState::Running);
        j.progress("A", "act1", "pool.progress", &json!({"percent": 40}), 11);
        j.progress("A", "other", "pool.progress", &json!({"percent": 99}), 11);
        assert_eq!(
            j.get(&id).unwrap().progress.as_ref().unwrap().data["percent"],
            40
        );
        j.finish(&id, Err(RpcError::new(ErrorCode::Conflict, "exists")), 12);
        let done = j.get(&id).unwrap();
        assert_eq!(done.state, JobState::Failed);
        assert_eq!(done.ended_ms, Some(12));
        assert_eq!(done.error.as_ref().unwrap()["message"], "exists");
        // Progress after the end changes nothing.
        j.progress("A", "act1", "pool.progress", &json!({"percent": 50}), 13);
        assert_eq!(
            j.get(&id).unwrap().progress.as_ref().unwrap().data["percent"],
            40
        );
    }

    #[test]
    fn finished_jobs_make_room_and_running_ones_are_capped() {
        let mut j = Jobs::default();
        for i in 0..KEEP {
            j.start(job_id("A", &format!("a{i}")), "A", "pool.create", "c", 1)
                .unwrap();
        }
        let e = j.start(job_id("A", "one-more"), "A", "pool.create", "c", 1);
        assert!(e.unwrap_err().message.contains("jobs are running"));
        j.finish(&job_id("A", "a3"), Ok(json!({})), 2);
        j.start(job_id("A", "one-more"), "A", "pool.create", "c", 3)
            .unwrap();
        assert!(j.get(&job_id("A", "a3")).is_none(), "the finished one went");
        assert_eq!(j.list().len(), KEEP);
        assert_eq!(j.list()[0].job, job_id("A", "one-more"));
        let gone = partner_gone("B:x", "B", "peer link down");
        assert_eq!(gone.state, JobState::Failed);
        let e = gone.error.unwrap();
        assert_eq!(e["data"]["reason"], "controller_gone");
        assert_eq!(e["code"], RpcError::unavailable("x").code);
    }
}
