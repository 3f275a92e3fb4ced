use devdb::docker::{self, PgMajor};
#[tokio::test]
async fn errors() {
    let major: PgMajor = std::env::var("MAJOR").unwrap().parse().unwrap();
    let t = std::time::Instant::now();
    let progress = |l: &str| {
        if !l.starts_with("I: ") {
            eprintln!("progress [{:?}]: {l}", t.elapsed())
        }
    };
    match docker::build(major, true, &progress).await {
        Ok(()) => eprintln!("OK built in {:?}", t.elapsed()),
        Err(e) => eprintln!("ERR in {:?}: {}", t.elapsed(), devdb::chain(&e)),
    }
}
