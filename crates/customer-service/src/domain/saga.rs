//! A saga: a change that other services must make too, tracked until each of them has
//! confirmed it. One subject (a customer), one step per participant; each step is asked
//! with a random token and answered with it. Unanswered steps are asked again with
//! back-off; a `failed` answer or the deadline ends the saga `failed`; every step confirmed
//! ends it `completed`; an operator may retry or cancel it.
//!
//! Pure state transitions: the caller passes `now` and persists the result (with a
//! compare-and-set on [`Saga::version`]); each [`Effect`] becomes one event of the saga,
//! which its definition words (see `application/sagas.rs`).

use std::time::Duration;

use super::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaState {
    Open,
    Completed,
    Failed,
    Cancelled,
}

impl SagaState {
    pub const ALL: [SagaState; 4] = [
        SagaState::Open,
        SagaState::Completed,
        SagaState::Failed,
        SagaState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Open => "open",
            SagaState::Completed => "completed",
            SagaState::Failed => "failed",
            SagaState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<SagaState> {
        SagaState::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether an operator may still act on it (`retry`, `cancel`).
    pub fn is_actionable(self) -> bool {
        matches!(self, SagaState::Open | SagaState::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Asked (perhaps several times), no answer yet.
    Requested,
    Confirmed,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Requested => "requested",
            StepState::Confirmed => "confirmed",
            StepState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<StepState> {
        [
            StepState::Requested,
            StepState::Confirmed,
            StepState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One participant's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub state: StepState,
    /// The token of the current request; an answer must carry it.
    pub token: String,
    /// Requests sent with the current token (1: the first).
    pub attempts: i64,
    pub first_asked_at: Timestamp,
    pub last_asked_at: Timestamp,
    /// When it is asked again if still unanswered.
    pub next_ask_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    /// The participant's reason, with a `failed` answer.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// 0 until stored.
    pub id: i64,
    /// Which definition (`erasure`).
    pub kind: String,
    /// The customer it is about.
    pub subject_id: i64,
    pub state: SagaState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Events of this saga so far (its own numbering: `metadata.sequence`).
    pub sequence: i64,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    pub updated_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Compare-and-set counter of the stored row.
    pub version: i64,
    /// In the configured order.
    pub steps: Vec<Step>,
}

/// What a transition tells the world: each is one event of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Ask `steps[index]` (again).
    Ask(usize),
    /// Every step confirmed.
    Completed,
}

/// A participant's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
}

/// What became of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyDecision {
    /// Recorded; these effects follow.
    Applied(Vec<Effect>),
    /// The same answer was recorded before: nothing changes.
    Duplicate,
    /// Not an answer to an open request: nothing changes, and it is logged.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownSaga,
    UnknownParticipant,
    /// The token is not the one of the participant's current request.
    WrongToken,
    /// The step was answered differently before.
    AlreadyAnswered,
    /// The saga has ended.
    NotOpen(SagaState),
    /// Fields missing or not understood (an `outcome` other than the definition's words).
    Malformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownSaga => "no such saga",
            Refusal::UnknownParticipant => "not a participant of this saga",
            Refusal::WrongToken => "the token does not match an open request",
            Refusal::AlreadyAnswered => "the request was answered differently before",
            Refusal::NotOpen(SagaState::Completed) => "the saga has completed",
            Refusal::NotOpen(SagaState::Cancelled) => "the saga was cancelled",
            Refusal::NotOpen(_) => "the saga has failed",
            Refusal::Malformed => "the reply is malformed",
        }
    }
}

/// When unanswered requests are repeated: after `first`, then twice as long each time, at
/// most `max` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The pause after the `attempts`-th request.
    pub fn delay(self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.first
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max)
    }
}

fn after(at: Timestamp, pause: Duration) -> Timestamp {
    let ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(at.millis().saturating_add(ms))
}

/// Why an operator's action does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotActionable(pub SagaState);

impl Saga {
    /// A new saga asking every participant once: one [`Effect::Ask`] per step.
    pub fn start(
        kind: &str,
        subject_id: i64,
        participants: &[String],
        mut token: impl FnMut() -> String,
        now: Timestamp,
        deadline: Duration,
        policy: RetryPolicy,
    ) -> (Saga, Vec<Effect>) {
        let steps: Vec<Step> = participants
            .iter()
            .map(|name| Step {
                name: name.clone(),
                state: StepState::Requested,
                token: token(),
                attempts: 1,
                first_asked_at: now,
                last_asked_at: now,
                next_ask_at: after(now, policy.delay(1)),
                answered_at: None,
                reason: None,
            })
            .collect();
        let effects = (0..steps.len()).map(Effect::Ask).collect();
        let saga = Saga {
            id: 0,
            kind: kind.to_owned(),
            subject_id,
            state: SagaState::Open,
            reason: None,
            sequence: 0,
            started_at: now,
            deadline: after(now, deadline),
            updated_at: now,
            ended_at: None,
            version: 0,
            steps,
        };
        (saga, effects)
    }

    /// When [`Saga::on_timer`] has something to do: the next reminder or the deadline.
    pub fn next_due(&self) -> Option<Timestamp> {
        if self.state != SagaState::Open {
            return None;
        }
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Requested)
            .map(|s| s.next_ask_at)
            .chain([self.deadline])
            .min()
    }

    /// Whether more than half of the time to its deadline has passed (an open saga).
    pub fn past_half_deadline(&self, now: Timestamp) -> bool {
        self.state == SagaState::Open
            && (now.millis() - self.started_at.millis()) * 2
                > self.deadline.millis() - self.started_at.millis()
    }

    /// Records `participant`'s answer carrying `token`.
    pub fn on_reply(
        &mut self,
        participant: &str,
        token: &str,
        outcome: Outcome,
        reason: Option<&str>,
        now: Timestamp,
    ) -> ReplyDecision {
        let Some(index) = self.steps.iter().position(|s| s.name == participant) else {
            return ReplyDecision::Refused(Refusal::UnknownParticipant);
        };
        let step = &self.steps[index];
        if step.token != token {
            return ReplyDecision::Refused(Refusal::WrongToken);
        }
        match (step.state, outcome) {
            (StepState::Confirmed, Outcome::Done) | (StepState::Failed, Outcome::Failed) => {
                return ReplyDecision::Duplicate
            }
            (StepState::Confirmed | StepState::Failed, _) => {
                return ReplyDecision::Refused(Refusal::AlreadyAnswered)
            }
            (StepState::Requested, _) => {}
        }
        if self.state != SagaState::Open {
            return ReplyDecision::Refused(Refusal::NotOpen(self.state));
        }
        self.updated_at = now;
        let step = &mut self.steps[index];
        step.answered_at = Some(now);
        match outcome {
            Outcome::Done => {
                step.state = StepState::Confirmed;
                if self.steps.iter().all(|s| s.state == StepState::Confirmed) {
                    self.state = SagaState::Completed;
                    self.ended_at = Some(now);
                    return ReplyDecision::Applied(vec![Effect::Completed]);
                }
            }
            Outcome::Failed => {
                let reason = reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or("no reason given");
                step.state = StepState::Failed;
                step.reason = Some(reason.to_owned());
                self.state = SagaState::Failed;
                self.reason = Some(format!("{participant} answered failed: {reason}"));
                self.ended_at = Some(now);
            }
        }
        ReplyDecision::Applied(Vec::new())
    }

    /// What time brings: the deadline (failed), or reminders of the requests due.
    pub fn on_timer(&mut self, now: Timestamp, policy: RetryPolicy) -> Vec<Effect> {
        if self.state != SagaState::Open {
            return Vec::new();
        }
        if now >= self.deadline {
            let silent: Vec<&str> = self
                .steps
                .iter()
                .filter(|s| s.state != StepState::Confirmed)
                .map(|s| s.name.as_str())
                .collect();
            self.state = SagaState::Failed;
            self.reason = Some(format!(
                "the deadline passed before {} confirmed",
                silent.join(", ")
            ));
            self.ended_at = Some(now);
            self.updated_at = now;
            return Vec::new();
        }
        let mut effects = Vec::new();
        for (index, step) in self.steps.iter_mut().enumerate() {
            if step.state == StepState::Requested && step.next_ask_at <= now {
                step.attempts += 1;
                step.last_asked_at = now;
                step.next_ask_at = after(now, policy.delay(step.attempts));
                effects.push(Effect::Ask(index));
            }
        }
        if !effects.is_empty() {
            self.updated_at = now;
        }
        effects
    }

    /// An operator's retry: every step not confirmed is asked again with a new token, and
    /// the saga is open again with a new deadline.
    pub fn retry(
        &mut self,
        mut token: impl FnMut() -> String,
        now: Timestamp,
        deadline: Duration,
        policy: RetryPolicy,
    ) -> Result<Vec<Effect>, NotActionable> {
        if !self.state.is_actionable() {
            return Err(NotActionable(self.state));
        }
        let mut effects = Vec::new();
        for (index, step) in self.steps.iter_mut().enumerate() {
            if step.state != StepState::Confirmed {
                step.state = StepState::Requested;
                step.token = token();
                step.attempts = 1;
                step.last_asked_at = now;
                step.next_ask_at = after(now, policy.delay(1));
                step.answered_at = None;
                step.reason = None;
                effects.push(Effect::Ask(index));
            }
        }
        self.state = SagaState::Open;
        self.reason = None;
        self.ended_at = None;
        self.deadline = after(now, deadline);
        self.updated_at = now;
        Ok(effects)
    }

    /// An operator's cancel: ends the saga `cancelled`; answers are refused from then on.
    pub fn cancel(&mut self, reason: &str, now: Timestamp) -> Result<(), NotActionable> {
        if !self.state.is_actionable() {
            return Err(NotActionable(self.state));
        }
        self.state = SagaState::Cancelled;
        self.reason = Some(reason.to_owned());
        self.ended_at = Some(now);
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        first: Duration::from_secs(10),
        max: Duration::from_secs(60),
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn saga() -> Saga {
        let mut n = 0;
        let (saga, effects) = Saga::start(
            "erasure",
            5,
            &["billing".to_owned(), "email".to_owned()],
            || {
                n += 1;
                format!("t{n}")
            },
            at(0),
            Duration::from_secs(1000),
            POLICY,
        );
        assert_eq!(effects, vec![Effect::Ask(0), Effect::Ask(1)]);
        saga
    }

    #[test]
    fn every_confirmation_completes_it_once() {
        let mut saga = saga();
        let first = saga.on_reply("billing", "t1", Outcome::Done, None, at(1));
        assert_eq!(first, ReplyDecision::Applied(vec![]));
        assert_eq!(
            saga.on_reply("billing", "t1", Outcome::Done, None, at(2)),
            ReplyDecision::Duplicate
        );
        assert_eq!(
            saga.on_reply("email", "t2", Outcome::Done, None, at(3)),
            ReplyDecision::Applied(vec![Effect::Completed])
        );
        assert_eq!(saga.state, SagaState::Completed);
        assert_eq!(saga.ended_at, Some(at(3)));
        assert_eq!(
            saga.on_reply("email", "t2", Outcome::Done, None, at(4)),
            ReplyDecision::Duplicate
        );
        assert_eq!(saga.steps[0].answered_at, Some(at(1)));
    }

    #[test]
    fn wrong_tokens_and_strangers_are_refused() {
        let mut saga = saga();
        let before = saga.clone();
        assert_eq!(
            saga.on_reply("billing", "t2", Outcome::Done, None, at(1)),
            ReplyDecision::Refused(Refusal::WrongToken)
        );
        assert_eq!(
            saga.on_reply("crm", "t1", Outcome::Done, None, at(1)),
            ReplyDecision::Refused(Refusal::UnknownParticipant)
        );
        assert_eq!(saga, before);
    }

    #[test]
    fn a_failed_answer_fails_it_and_a_retry_asks_the_unconfirmed_with_new_tokens() {
        let mut saga = saga();
        saga.on_reply("email", "t2", Outcome::Done, None, at(1));
        saga.on_reply(
            "billing",
            "t1",
            Outcome::Failed,
            Some("ledger locked"),
            at(2),
        );
        assert_eq!(saga.state, SagaState::Failed);
        assert_eq!(
            saga.reason.as_deref(),
            Some("billing answered failed: ledger locked")
        );
        // A late confirmation of the old request changes nothing.
        assert_eq!(
            saga.on_reply("billing", "t1", Outcome::Done, None, at(3)),
            ReplyDecision::Refused(Refusal::AlreadyAnswered)
        );
        let effects = saga
            .retry(|| "t9".to_owned(), at(100), Duration::from_secs(50), POLICY)
            .unwrap();
        assert_eq!(effects, vec![Effect::Ask(0)]);
        assert_eq!(saga.state, SagaState::Open);
        assert_eq!(saga.deadline, at(150));
        assert_eq!(saga.steps[0].token, "t9");
        assert_eq!(saga.steps[1].state, StepState::Confirmed);
        assert_eq!(
            saga.on_reply("billing", "t1", Outcome::Done, None, at(101)),
            ReplyDecision::Refused(Refusal::WrongToken)
        );
        assert_eq!(
            saga.on_reply("billing", "t9", Outcome::Done, None, at(102)),
            ReplyDecision::Applied(vec![Effect::Completed])
        );
        assert_eq!(
            saga.retry(|| "x".into(), at(103), Duration::from_secs(1), POLICY),
            Err(NotActionable(SagaState::Completed))
        );
    }

    #[test]
    fn silent_steps_are_asked_again_with_back_off_until_the_deadline() {
        let mut saga = saga();
        assert_eq!(saga.next_due(), Some(at(10)));
        assert_eq!(saga.on_timer(at(9), POLICY), vec![]);
        saga.on_reply("email", "t2", Outcome::Done, None, at(5));
        assert_eq!(saga.on_timer(at(10), POLICY), vec![Effect::Ask(0)]);
        assert_eq!(saga.steps[0].attempts, 2);
        assert_eq!(saga.steps[0].token, "t1", "a reminder keeps the token");
        assert_eq!(saga.next_due(), Some(at(30)));
        assert_eq!(saga.on_timer(at(29), POLICY), vec![]);
        assert_eq!(saga.on_timer(at(30), POLICY), vec![Effect::Ask(0)]);
        assert_eq!(saga.next_due(), Some(at(70)));
        saga.on_timer(at(70), POLICY);
        assert_eq!(saga.next_due(), Some(at(130)), "at most `max` apart");
        assert!(saga.past_half_deadline(at(501)));
        assert!(!saga.past_half_deadline(at(499)));
        assert_eq!(saga.on_timer(at(1000), POLICY), vec![]);
        assert_eq!(saga.state, SagaState::Failed);
        assert_eq!(
            saga.reason.as_deref(),
            Some("the deadline passed before billing confirmed")
        );
        assert_eq!(saga.next_due(), None);
        assert_eq!(
            saga.on_reply("billing", "t1", Outcome::Done, None, at(1001)),
            ReplyDecision::Refused(Refusal::NotOpen(SagaState::Failed))
        );
    }

    #[test]
    fn a_cancelled_saga_takes_no_more_answers() {
        let mut saga = saga();
        saga.cancel("customer asked twice", at(3)).unwrap();
        assert_eq!(
            saga.on_reply("billing", "t1", Outcome::Done, None, at(4)),
            ReplyDecision::Refused(Refusal::NotOpen(SagaState::Cancelled))
        );
        assert_eq!(
            saga.cancel("again", at(5)),
            Err(NotActionable(SagaState::Cancelled))
        );
        assert_eq!(saga.on_timer(at(10_000), POLICY), vec![]);
    }
}
