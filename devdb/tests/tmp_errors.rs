use devdb::docker::{self, PgMajor};
#[tokio::test]
async fn errors() {
    let which = std::env::var("WHICH").unwrap();
    let t = std::time::Instant::now();
    let r: Result<String, docker::DockerError> = match which.as_str() {
        "present" => docker::image_present(PgMajor::V15)
            .await
            .map(|b| b.to_string()),
        "build" => docker::build(PgMajor::V15, true, &|l| {
            if !l.starts_with("I: ") {
                eprintln!("progress: {l}")
            }
        })
        .await
        .map(|_| "built".into()),
        "start" => docker::start(PgMajor::V15).await.map(|d| format!("{d:?}")),
        _ => unreachable!(),
    };
    match r {
        Ok(s) => eprintln!("OK {s} in {:?}", t.elapsed()),
        Err(e) => eprintln!("ERR in {:?}: {}", t.elapsed(), devdb::chain(&e)),
    }
}
