//! Every fuzz target over its seed corpus (`fuzz/corpus/NAME/`): the short
//! form of the fuzzing that `reliability/run` does for minutes per target.

use std::path::Path;

#[test]
fn every_seed_of_every_target_is_handled_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    for (name, target) in actionhost_fuzz_targets::TARGETS {
        let folder = corpus.join(name);
        let mut seeds = 0;
        for entry in
            std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("reads a seed");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(
                outcome.is_ok(),
                "{name}: the seed {} panicked",
                path.display()
            );
            seeds += 1;
        }
        assert!(
            seeds >= 3,
            "{name}: only {seeds} seeds in {}",
            folder.display()
        );
        eprintln!("{name}: {seeds} seeds");
    }
}
