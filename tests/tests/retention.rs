//! Retention: execution records and finished actions past `[retention]`
//! are removed in the background, in batches, while the server goes on
//! serving; what is younger, or not finished, stays.

use std::time::{Duration, Instant};

use actionhost_tests::fixture;
use actionhost_tests::server::{Options, Server};
use serde_json::json;

fn execution_id(answer: &actionhost_tests::server::Answer) -> String {
    assert_eq!(answer.json["successful"], true, "{}", answer.text);
    answer.json["logId"]
        .as_str()
        .or_else(|| answer.json["log_id"].as_str())
        .unwrap_or_else(|| panic!("no logId: {}", answer.text))
        .to_owned()
}

#[test]
fn old_executions_and_finished_actions_go_in_batches_while_serving_goes_on() {
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop")]),
        env: vec![
            ("ACTIONHOST_RETENTION__EXECUTIONS".into(), "4s".into()),
            ("ACTIONHOST_RETENTION__ACTIONS".into(), "4s".into()),
            (
                "ACTIONHOST_RETENTION__SWEEP_INTERVAL".into(),
                "300ms".into(),
            ),
        ],
        ..Options::default()
    });
    let execute = |n: usize| {
        server.post(
            "/api/v2/actions/noop/execute",
            &json!({ "input": { "echo": format!("n{n}") } }),
        )
    };
    // Old: 1,100 executions (more than two batches of 500), 20 actions run
    // to success, 5 waiting for approval (not finished: never removed).
    let started = Instant::now();
    let old: Vec<String> = (0..1_100).map(|n| execution_id(&execute(n))).collect();
    let finished: Vec<String> = (0..20)
        .map(|_| {
            let created = server.post(
                "/v1/actions",
                &json!({ "type": "noop", "params": {}, "identity_id": "ops", "direct": true }),
            );
            assert!(created.status < 300, "{}", created.text);
            created.json["action_id"].as_str().expect("id").to_owned()
        })
        .collect();
    let waiting: Vec<String> = (0..5)
        .map(|_| {
            let created = server.post(
                "/v1/actions",
                &json!({ "type": "noop", "params": {}, "identity_id": "ops", "require_approval": true }),
            );
            created.json["action_id"].as_str().expect("id").to_owned()
        })
        .collect();
    for id in &finished {
        let action = server.get(&format!("/v1/actions/{id}"));
        assert_eq!(
            action.json["action"]["status"], "succeeded",
            "{}",
            action.text
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the old records took too long to write for this test's retention: {:?}",
        started.elapsed()
    );

    // Serving goes on while they age and the sweep removes them.
    let traffic = actionhost_tests::SteadyTraffic::start(&server);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server
        .get(&format!("/v1/executions/{}", old[old.len() - 1]))
        .status
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the old executions were not removed: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answered = traffic.finish();
    assert!(
        answered > 10,
        "{answered} requests answered during the sweep"
    );

    for id in old.iter().step_by(97) {
        assert_eq!(
            server.get(&format!("/v1/executions/{id}")).status,
            404,
            "{id}"
        );
    }
    for id in &finished {
        assert_eq!(server.get(&format!("/v1/actions/{id}")).status, 404, "{id}");
    }
    for id in &waiting {
        let action = server.get(&format!("/v1/actions/{id}"));
        assert_eq!(
            action.status, 200,
            "a waiting action is kept: {}",
            action.text
        );
    }
    // Younger than the retention: kept.
    let young = execution_id(&execute(9_999));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(server.get(&format!("/v1/executions/{young}")).status, 200);
    let listed = server.get("/v1/actions?limit=100");
    assert_eq!(
        listed.json["pagination"]["total_items"], 5,
        "{}",
        listed.text
    );

    // The log says what went, in counts.
    let log = server.log();
    let removed: usize = log
        .lines()
        .filter(|line| line.contains("retention: removed"))
        .filter_map(|line| {
            let at = line.find("executions=")? + "executions=".len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        removed >= old.len() + finished.len(),
        "the log counts {removed} executions removed:\n{log}"
    );
}
