//! When selection rounds happen and how many matrices each adds per group: the released
//! epoch-granular dynamic schedule (`bert/trainer_bert.py:974-980,1006-1015`; BART
//! `bart/trainer_bart.py:914-920,946-955`; spec §4.1–4.2) and the paper's step-granular one
//! (paper Algorithm 1 lines 9–16; spec §4.3).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SelectError;

/// A selection schedule. `top_n` (N) is always the per-group total it aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// One round before training (epoch 0) selecting N per group (no `--dynamic_decom`).
    #[default]
    Static,
    /// The released dynamic schedule (`--dynamic_decom --split_num=s`): split_topN = ⌊N/s⌋ per
    /// round, split_epoch = ⌈E/s⌉, rounds at the start of epochs {0, split_epoch,
    /// 2·split_epoch, …} < E. Can select fewer than N (see [`Plan::warnings`]). `s = 1` is
    /// static.
    EpochRounds {
        /// `s`, the intended number of rounds; 1 ≤ s ≤ N.
        split_num: usize,
    },
    /// The paper's dynamic schedule: after every `every_steps` optimizer steps (t) add
    /// `per_round` (n) per group until N are selected (the last round adds the remainder when n
    /// does not divide N). Rounds at step k·t for k ≥ 1 (the Taylor score needs t steps of
    /// accumulation first) and k·t < total steps.
    StepRounds {
        /// t, optimizer steps between rounds.
        every_steps: usize,
        /// n, matrices per group per round; 1 ≤ n ≤ N.
        per_round: usize,
    },
}

/// How long training runs, for [`Schedule::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Horizon {
    /// E = ⌈num_train_epochs⌉ (or derived from `max_steps`), for [`Schedule::EpochRounds`].
    pub epochs: usize,
    /// Total optimizer steps, for [`Schedule::StepRounds`].
    pub total_steps: usize,
}

/// When a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundAt {
    /// At the start of this epoch (from 0), before its first step.
    Epoch(usize),
    /// After this many completed optimizer steps.
    Step(usize),
}

/// One selection round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// Round number, from 0.
    pub index: usize,
    /// When it runs.
    pub at: RoundAt,
    /// The `top_n` to pass to [`crate::select`] in this round.
    pub per_group: usize,
}

/// A schedule resolved against `top_n` and a [`Horizon`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The schedule.
    pub schedule: Schedule,
    /// N per group aimed for.
    pub top_n: usize,
    /// The horizon it was planned for.
    pub horizon: Horizon,
    /// The rounds, in time order.
    pub rounds: Vec<Round>,
}

/// A reason a [`Plan`] selects fewer than `top_n` per group (bug 6 fix: the released code
/// does so silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleWarning {
    /// `top_n` is not a multiple of `split_num`, so ⌊N/s⌋ per round drops N mod s.
    FloorDivision {
        /// N.
        top_n: usize,
        /// s.
        split_num: usize,
        /// ⌊N/s⌋.
        per_round: usize,
        /// What the whole plan selects per group.
        selected: usize,
    },
    /// ⌈E/split_epoch⌉ < s: fewer epoch rounds fit than `split_num`.
    EpochRoundsCapped {
        /// E.
        epochs: usize,
        /// s.
        split_num: usize,
        /// ⌈E/s⌉.
        split_epoch: usize,
        /// Rounds that fit.
        rounds: usize,
        /// N.
        top_n: usize,
        /// What the whole plan selects per group.
        selected: usize,
    },
    /// Not all ⌈N/n⌉ step rounds fit before training ends.
    StepRoundsCapped {
        /// Total optimizer steps.
        total_steps: usize,
        /// t.
        every_steps: usize,
        /// ⌈N/n⌉.
        needed: usize,
        /// Rounds that fit.
        rounds: usize,
        /// N.
        top_n: usize,
        /// What the whole plan selects per group.
        selected: usize,
    },
}

impl fmt::Display for ScheduleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScheduleWarning::FloorDivision {
                top_n,
                split_num,
                per_round,
                selected,
            } => write!(
                f,
                "top_n {top_n} is not a multiple of split_num {split_num}: each round selects \
                 ⌊{top_n}/{split_num}⌋ = {per_round} per group, so {selected} of {top_n} per \
                 group will be selected"
            ),
            ScheduleWarning::EpochRoundsCapped {
                epochs,
                split_num,
                split_epoch,
                rounds,
                top_n,
                selected,
            } => write!(
                f,
                "split_num {split_num} over {epochs} epochs: split_epoch = ⌈{epochs}/{split_num}⌉ \
                 = {split_epoch} leaves room for only {rounds} rounds, so {selected} of {top_n} \
                 per group will be selected"
            ),
            ScheduleWarning::StepRoundsCapped {
                total_steps,
                every_steps,
                needed,
                rounds,
                top_n,
                selected,
            } => write!(
                f,
                "a round every {every_steps} steps fits only {rounds} of {needed} rounds in \
                 {total_steps} steps, so {selected} of {top_n} per group will be selected"
            ),
        }
    }
}

impl Schedule {
    /// Resolves the rounds for `top_n` per group over `horizon`.
    ///
    /// Errors: `split_num` of 0 or above `top_n` (the released `assert split_num <= topN`);
    /// `every_steps` of 0; `per_round` of 0 or above `top_n`.
    pub fn plan(self, top_n: usize, horizon: Horizon) -> Result<Plan, SelectError> {
        let rounds = match self {
            Schedule::Static => vec![(RoundAt::Epoch(0), top_n)],
            Schedule::EpochRounds { split_num } => {
                validate_split(split_num, top_n)?;
                let per_round = top_n / split_num;
                let split_epoch = horizon.epochs.div_ceil(split_num);
                (0..horizon.epochs)
                    .step_by(split_epoch.max(1))
                    .map(|e| (RoundAt::Epoch(e), per_round))
                    .collect()
            }
            Schedule::StepRounds {
                every_steps,
                per_round,
            } => {
                if every_steps == 0 {
                    return Err(SelectError::ZeroRoundInterval);
                }
                if per_round == 0 || per_round > top_n {
                    return Err(SelectError::BadPerRound { per_round, top_n });
                }
                (1..=top_n.div_ceil(per_round))
                    .map(|k| (k * every_steps, per_round.min(top_n - (k - 1) * per_round)))
                    .take_while(|(step, _)| *step < horizon.total_steps)
                    .map(|(step, n)| (RoundAt::Step(step), n))
                    .collect()
            }
        };
        Ok(Plan {
            schedule: self,
            top_n,
            horizon,
            rounds: rounds
                .into_iter()
                .enumerate()
                .map(|(index, (at, per_group))| Round {
                    index,
                    at,
                    per_group,
                })
                .collect(),
        })
    }
}

fn validate_split(split_num: usize, top_n: usize) -> Result<(), SelectError> {
    if split_num == 0 {
        Err(SelectError::SplitNumZero)
    } else if split_num > top_n {
        Err(SelectError::SplitNumExceedsTopN { split_num, top_n })
    } else {
        Ok(())
    }
}

impl Plan {
    /// Matrices per group the whole plan selects (when every pool is large enough).
    pub fn selected_per_group(&self) -> usize {
        self.rounds.iter().map(|r| r.per_group).sum()
    }

    /// The round that runs at `at`, if any.
    pub fn round_at(&self, at: RoundAt) -> Option<&Round> {
        self.rounds.iter().find(|r| r.at == at)
    }

    /// Epochs (or steps) at which rounds run, in order.
    pub fn round_points(&self) -> Vec<usize> {
        self.rounds
            .iter()
            .map(|r| match r.at {
                RoundAt::Epoch(e) => e,
                RoundAt::Step(s) => s,
            })
            .collect()
    }

    /// Why this plan selects fewer than `top_n` per group; empty when it selects all N.
    pub fn warnings(&self) -> Vec<ScheduleWarning> {
        let (top_n, selected) = (self.top_n, self.selected_per_group());
        let mut warnings = Vec::new();
        match self.schedule {
            Schedule::Static => {}
            Schedule::EpochRounds { split_num } => {
                if top_n % split_num != 0 {
                    warnings.push(ScheduleWarning::FloorDivision {
                        top_n,
                        split_num,
                        per_round: top_n / split_num,
                        selected,
                    });
                }
                if self.rounds.len() < split_num {
                    warnings.push(ScheduleWarning::EpochRoundsCapped {
                        epochs: self.horizon.epochs,
                        split_num,
                        split_epoch: self.horizon.epochs.div_ceil(split_num),
                        rounds: self.rounds.len(),
                        top_n,
                        selected,
                    });
                }
            }
            Schedule::StepRounds {
                every_steps,
                per_round,
            } => {
                let needed = top_n.div_ceil(per_round);
                if self.rounds.len() < needed {
                    warnings.push(ScheduleWarning::StepRoundsCapped {
                        total_steps: self.horizon.total_steps,
                        every_steps,
                        needed,
                        rounds: self.rounds.len(),
                        top_n,
                        selected,
                    });
                }
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{Group, GroupRule, MatrixId, MatrixKind, ScoreTable, WeightTypes, select};

    fn epochs(epochs: usize) -> Horizon {
        Horizon {
            epochs,
            total_steps: 0,
        }
    }

    /// (E, s, N, round epochs, per round, total per group).
    type Case = (usize, usize, usize, &'static [usize], usize, usize);

    /// Spec §4.2 / §8 item 13: (E, s, N) → round epochs, per round, total.
    #[test]
    fn released_epoch_schedule_table() {
        let cases: [Case; 6] = [
            (3, 2, 6, &[0, 2], 3, 6),
            (10, 3, 9, &[0, 4, 8], 3, 9),
            (10, 4, 8, &[0, 3, 6, 9], 2, 8),
            (10, 6, 12, &[0, 2, 4, 6, 8], 2, 10),
            (3, 4, 8, &[0, 1, 2], 2, 6),
            (5, 2, 8, &[0, 3], 4, 8),
        ];
        for (e, s, n, points, per_round, total) in cases {
            let plan = Schedule::EpochRounds { split_num: s }
                .plan(n, epochs(e))
                .unwrap();
            assert_eq!(plan.round_points(), points, "E={e} s={s} N={n}");
            assert!(plan.rounds.iter().all(|r| r.per_group == per_round));
            assert!(
                plan.rounds
                    .iter()
                    .all(|r| matches!(r.at, RoundAt::Epoch(_)))
            );
            assert_eq!(plan.selected_per_group(), total);
            assert_eq!(plan.warnings().is_empty(), total == n, "E={e} s={s} N={n}");
        }
    }

    #[test]
    fn warnings_carry_the_numbers() {
        let plan = Schedule::EpochRounds { split_num: 6 }
            .plan(12, epochs(10))
            .unwrap();
        assert_eq!(
            plan.warnings(),
            [ScheduleWarning::EpochRoundsCapped {
                epochs: 10,
                split_num: 6,
                split_epoch: 2,
                rounds: 5,
                top_n: 12,
                selected: 10
            }]
        );
        assert_eq!(
            plan.warnings()[0].to_string(),
            "split_num 6 over 10 epochs: split_epoch = ⌈10/6⌉ = 2 leaves room for only 5 \
             rounds, so 10 of 12 per group will be selected"
        );
        let plan = Schedule::EpochRounds { split_num: 2 }
            .plan(9, epochs(10))
            .unwrap();
        assert_eq!(
            plan.warnings(),
            [ScheduleWarning::FloorDivision {
                top_n: 9,
                split_num: 2,
                per_round: 4,
                selected: 8
            }]
        );
        assert!(plan.warnings()[0].to_string().contains("8 of 9 per group"));
    }

    #[test]
    fn static_and_split_one_are_one_round_at_epoch_0() {
        let static_plan = Schedule::Static.plan(8, epochs(10)).unwrap();
        let split_one = Schedule::EpochRounds { split_num: 1 }
            .plan(8, epochs(10))
            .unwrap();
        assert_eq!(static_plan.rounds, split_one.rounds);
        assert_eq!(
            static_plan.rounds,
            [Round {
                index: 0,
                at: RoundAt::Epoch(0),
                per_group: 8
            }]
        );
        assert!(static_plan.warnings().is_empty() && split_one.warnings().is_empty());
        assert_eq!(
            static_plan.round_at(RoundAt::Epoch(0)).map(|r| r.per_group),
            Some(8)
        );
        assert_eq!(static_plan.round_at(RoundAt::Epoch(1)), None);
    }

    #[test]
    fn split_num_errors() {
        assert_eq!(
            Schedule::EpochRounds { split_num: 0 }.plan(8, epochs(10)),
            Err(SelectError::SplitNumZero)
        );
        assert_eq!(
            Schedule::EpochRounds { split_num: 9 }.plan(8, epochs(10)),
            Err(SelectError::SplitNumExceedsTopN {
                split_num: 9,
                top_n: 8
            })
        );
        let steps = Horizon {
            epochs: 0,
            total_steps: 1000,
        };
        assert_eq!(
            Schedule::StepRounds {
                every_steps: 0,
                per_round: 2
            }
            .plan(8, steps),
            Err(SelectError::ZeroRoundInterval)
        );
        assert_eq!(
            Schedule::StepRounds {
                every_steps: 10,
                per_round: 9
            }
            .plan(8, steps),
            Err(SelectError::BadPerRound {
                per_round: 9,
                top_n: 8
            })
        );
    }

    #[test]
    fn step_rounds_add_n_until_top_n() {
        let steps = |total_steps| Horizon {
            epochs: 0,
            total_steps,
        };
        // Paper BERT-base: N = 8, n = 2.
        let plan = Schedule::StepRounds {
            every_steps: 100,
            per_round: 2,
        }
        .plan(8, steps(1000))
        .unwrap();
        assert_eq!(plan.round_points(), [100, 200, 300, 400]);
        assert_eq!(plan.selected_per_group(), 8);
        assert!(plan.warnings().is_empty());
        // n does not divide N: the last round adds the remainder.
        let plan = Schedule::StepRounds {
            every_steps: 100,
            per_round: 3,
        }
        .plan(8, steps(1000))
        .unwrap();
        let per: Vec<usize> = plan.rounds.iter().map(|r| r.per_group).collect();
        assert_eq!(per, [3, 3, 2]);
        // Training too short: a round at the very last step is useless, so it is dropped.
        let plan = Schedule::StepRounds {
            every_steps: 100,
            per_round: 3,
        }
        .plan(8, steps(300))
        .unwrap();
        assert_eq!(plan.round_points(), [100, 200]);
        assert_eq!(
            plan.warnings(),
            [ScheduleWarning::StepRoundsCapped {
                total_steps: 300,
                every_steps: 100,
                needed: 3,
                rounds: 2,
                top_n: 8,
                selected: 6
            }]
        );
    }

    /// §8 item 13, last clause: matrices decomposed in round k are never re-selected, even when
    /// they would still score highest.
    #[test]
    fn multi_round_never_reselects() {
        let plan = Schedule::EpochRounds { split_num: 4 }
            .plan(8, epochs(10))
            .unwrap();
        for rule in [GroupRule::Strict, GroupRule::CompatMixedPool] {
            let mut already: BTreeSet<MatrixId> = BTreeSet::new();
            for round in &plan.rounds {
                // Scores change between rounds; layer 0 always scores highest.
                let table: ScoreTable = (0..12)
                    .flat_map(|l| MatrixKind::ENCODER_LAYER.map(|k| MatrixId::encoder(l, k)))
                    .map(|id| {
                        let jitter =
                            ((id.layer * 7 + round.index * 5 + id.kind as usize) % 11) as f64;
                        (id, if id.layer == 0 { 100.0 } else { jitter })
                    })
                    .collect();
                let sel = select(
                    &table,
                    rule,
                    round.per_group,
                    WeightTypes::default(),
                    &already,
                )
                .unwrap();
                let chosen = sel.matrices();
                assert!(
                    chosen.is_disjoint(&already),
                    "{rule:?} round {}",
                    round.index
                );
                if rule == GroupRule::Strict {
                    assert_eq!(chosen.len(), 6 * round.per_group);
                }
                already.extend(chosen);
            }
            if rule == GroupRule::Strict {
                assert_eq!(already.len(), 6 * 8);
                for group in &Group::ALL[..6] {
                    let n = already
                        .iter()
                        .filter(|m| Group::of_kind(m.kind) == *group)
                        .count();
                    assert_eq!(n, 8);
                }
            }
        }
    }

    #[test]
    fn schedule_serde() {
        let s = Schedule::EpochRounds { split_num: 3 };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"epoch_rounds","split_num":3}"#);
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
    }
}
