//! A run as a JUnit XML report (quick-junit): one test suite for the
//! pipeline, one test case per stage.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::plan::Plan;
use crate::run::{RunSummary, StageStatus};

pub fn junit(plan: &Plan, summary: &RunSummary) -> Result<String, String> {
    let mut suite = TestSuite::new(plan.pipeline.as_str());
    for r in &summary.stages {
        let status = match &r.status {
            Err(reason) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(reason.as_str());
                s
            }
            Ok(StageStatus::Succeeded | StageStatus::FailedAllowed | StageStatus::Cached) => {
                TestCaseStatus::success()
            }
            Ok(StageStatus::WaitingForApproval) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message("waiting for approval");
                s
            }
            Ok(st @ (StageStatus::Failed | StageStatus::TimedOut | StageStatus::Cancelled)) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type(match st {
                    StageStatus::TimedOut => "timed out",
                    StageStatus::Cancelled => "cancelled",
                    _ => "failed",
                });
                s.set_message(r.message.clone().unwrap_or_else(|| "failed".into()));
                s
            }
        };
        let mut case = TestCase::new(r.name.as_str(), status);
        case.set_classname(plan.pipeline.as_str());
        case.set_time(r.duration);
        if r.status == Ok(StageStatus::FailedAllowed) {
            case.set_system_out("failed; the stage has allow-failure");
        }
        if r.status == Ok(StageStatus::Cached) {
            case.add_property(quick_junit::Property::new("slipway.cached", "true"));
        }
        suite.add_test_case(case);
    }
    suite.set_time(summary.duration);
    let mut report = Report::new(format!("slipway {}", plan.pipeline));
    report.set_time(summary.duration);
    report.add_test_suite(suite);
    report.to_string().map_err(|e| e.to_string())
}
